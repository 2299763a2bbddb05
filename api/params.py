"""Request values the API accepts: time ranges and filters, parsed once with clear errors.

Everything here is data; nothing becomes SQL. `queries.py` turns these into SQL with
identifiers from allow-lists and values as bound parameters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from api.errors import ApiError

MAX_RANGE = timedelta(days=400)
_RELATIVE = re.compile(r"^now(?:-(\d+)([smhdwMy]))?(?:/[smhdwMy])?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "M": 30 * 86400, "y": 365 * 86400}


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def ms(self) -> tuple[int, int]:
        return int(self.start.timestamp() * 1000), int(self.end.timestamp() * 1000)

    def whole_seconds(self) -> TimeRange:
        """Both bounds rounded up to whole seconds, so that equal requests within a second are equal
        (the rollups do the same at minutes): the newest edge may take in the current second."""
        def up(t: datetime) -> datetime:
            return t if t.microsecond == 0 else t.replace(microsecond=0) + timedelta(seconds=1)

        return TimeRange(up(self.start), up(self.end))


def parse_time(value: Any, field: str, now: datetime | None = None) -> datetime:
    """ISO-8601, epoch milliseconds, or Grafana's relative `now-6h`."""
    now = now or datetime.now(UTC)
    if isinstance(value, bool):
        raise ApiError(400, f"bad time range: {field} must be an ISO-8601 time or epoch milliseconds")
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > 1e14:
            raise ApiError(400, f"bad time range: {field} is out of range")
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        s = value.strip()
        m = _RELATIVE.match(s)
        if m:
            n, unit = m.groups()
            return now - timedelta(seconds=int(n) * _UNITS[unit]) if n else now
        if s.isdigit():
            return parse_time(int(s), field, now)
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ApiError(400, f"bad time range: {field}={value!r} is not an ISO-8601 time, epoch "
                                "milliseconds or now-N[smhdwMy]") from None
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    raise ApiError(400, f"bad time range: {field} must be a string or a number")


def time_range(start: Any, end: Any, default: timedelta = timedelta(hours=24)) -> TimeRange:
    now = datetime.now(UTC)
    t1 = parse_time(end, "to", now) if end not in (None, "") else now
    t0 = parse_time(start, "from", now) if start not in (None, "") else t1 - default
    if t0.year < 1971 or t1.year > 2200:
        raise ApiError(400, "bad time range: times must lie between 1971 and 2200")
    if t0 >= t1:
        raise ApiError(400, f"bad time range: from ({t0.isoformat()}) must be before to ({t1.isoformat()})")
    if t1 - t0 > MAX_RANGE:
        raise ApiError(400, f"bad time range: at most {MAX_RANGE.days} days per query")
    return TimeRange(t0, t1)


# -- filters -----------------------------------------------------------------------------

# Public filter keys (ad hoc filters, payload filters, REST parameters) and their aliases.
FILTER_KEYS = ("model", "provider", "agent", "name", "user_id", "session_id", "release", "version", "tag",
               "type", "project")
ALIASES = {"agent_id": "agent", "agents": "agent", "models": "model", "providers": "provider", "user": "user_id",
           "users": "user_id", "session": "session_id", "sessions": "session_id", "names": "name",
           "releases": "release", "versions": "version", "tags": "tag", "project_id": "project",
           "projects": "project", "event_type": "type"}
OPERATORS = ("=", "!=", "=~", "!~")
ALL_VALUES = {"", "*", "$__all", "All", "all", ".*"}


@dataclass(frozen=True)
class Filter:
    key: str
    op: str
    values: tuple[str, ...]


def filter_key(key: Any) -> str:
    if not isinstance(key, str):
        raise ApiError(400, "bad filter: key must be a string")
    k = ALIASES.get(key, key)
    if k not in FILTER_KEYS:
        raise ApiError(400, f"bad filter: unknown key {key!r}; known keys: {', '.join(FILTER_KEYS)}")
    return k


def _values(value: Any) -> tuple[str, ...] | None:
    """A value, a list, or Grafana's `{a,b}` multi-value form; None means "all"."""
    if value is None:
        return None
    if isinstance(value, bool):
        value = str(value).lower()
    if isinstance(value, int | float):
        value = str(value)
    if isinstance(value, str):
        v = value.strip()
        if v.startswith("{") and v.endswith("}") and "," in v:
            items = [x.strip() for x in v[1:-1].split(",")]
        else:
            items = [v]
    elif isinstance(value, list):
        items = []
        for x in value:
            if isinstance(x, dict):
                x = x.get("value", x.get("text"))
            if isinstance(x, str | int | float) and not isinstance(x, bool):
                items.append(str(x))
            else:
                raise ApiError(400, "bad filter: list values must be strings")
    else:
        raise ApiError(400, "bad filter: value must be a string or a list of strings")
    if not items or any(x in ALL_VALUES for x in items):
        return None
    if len(items) > 200:
        raise ApiError(400, "bad filter: at most 200 values per filter")
    if any(len(x) > 1024 for x in items):
        raise ApiError(400, "bad filter: values are at most 1024 characters")
    return tuple(items)


def make_filter(key: Any, value: Any, op: Any = "=") -> Filter | None:
    k = filter_key(key)
    if op not in OPERATORS:
        raise ApiError(400, f"bad filter: operator {op!r} on {key!r} is not one of {', '.join(OPERATORS)}")
    vals = _values(value)
    if vals is None:
        return None
    if op in ("=~", "!~"):
        for v in vals:
            try:
                re.compile(v)
            except re.error:
                raise ApiError(400, f"bad filter: {v!r} is not a valid regular expression") from None
    return Filter(k, op, vals)


def adhoc_filters(raw: Any) -> list[Filter]:
    """Grafana's ad hoc filters: [{key, operator, value}]."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, list):
        raise ApiError(400, "bad filter: filters must be a list of {key, operator, value}")
    out = []
    for f in raw:
        if not isinstance(f, dict):
            raise ApiError(400, "bad filter: each filter is an object {key, operator, value}")
        flt = make_filter(f.get("key"), f.get("value"), f.get("operator", "="))
        if flt:
            out.append(flt)
    return out


def payload_filters(payload: dict[str, Any]) -> list[Filter]:
    """Filters given as payload entries (`model`, `agent`, …), template variables expanded by Grafana."""
    out = []
    for key, value in payload.items():
        k = ALIASES.get(key, key)
        if k in FILTER_KEYS:
            flt = make_filter(k, value)
            if flt:
                out.append(flt)
    extra = payload.get("filters")
    if extra is not None:
        out.extend(adhoc_filters(extra))
    return out

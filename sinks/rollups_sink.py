"""Minute rollups -> `rollups_1m`, then the hours and days they touch are recomputed inside ClickHouse.

`rollups_1m` is ReplacingMergeTree(version): a replay or late correction replaces its row. Hour and
day rows are rebuilt from `rollups_1m FINAL` (resp. `rollups_1h FINAL`) for the touched range, so a
replaced minute is counted once; sketches merge with sumMap, keeping percentiles exact to the sketch.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import orjson
from confluent_kafka import Message
from pydantic import ValidationError

from agenttrace.clickhouse import ClickHouse
from schemas.rollups import Rollup
from sinks.clickhouse_io import insert_rows
from sinks.metrics import JOB_DURATION
from sinks.rows import Poison

log = logging.getLogger("sinks.rollups")

_COLUMNS = ("window_start", "window_end", "project_id", "agent_id", "provider", "model", "calls", "errors",
            "error_events", "tokens_in", "tokens_out", "tokens_cached", "cost_usd", "latency_ms_sum",
            "latency_ms_max", "latency_sketch", "ttft_sketch", "version", "replay")


def _rebuild_sql(db: str, source: str, target: str, bucket: str, seconds: int) -> str:
    # version = recompute time (µs): the newest recompute started after every insert it must see.
    return f"""
INSERT INTO {db}.{target} ({", ".join(_COLUMNS)})
SELECT {bucket}(window_start) AS ws, ws + {seconds}, project_id, agent_id, provider, model,
       sum(calls), sum(errors), sum(error_events), sum(tokens_in), sum(tokens_out), sum(tokens_cached),
       sum(cost_usd), sum(latency_ms_sum), max(latency_ms_max), sumMap(latency_sketch), sumMap(ttft_sketch),
       toUInt64(toUnixTimestamp64Micro(now64(6))), max(replay)
FROM {db}.{source} FINAL
WHERE project_id = {{p:String}} AND window_start >= {{lo:DateTime}} AND window_start < {{hi:DateTime}}
GROUP BY ws, project_id, agent_id, provider, model"""


def _ch_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def rebuild(client: ClickHouse, project_id: str, lo: datetime, hi: datetime) -> None:
    """Recompute the hours covering [lo, hi) and then the days covering them."""
    db = client.database
    h_lo = lo.replace(minute=0, second=0, microsecond=0)
    h_hi = hi.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    client.command(_rebuild_sql(db, "rollups_1m", "rollups_1h", "toStartOfHour", 3600),
                   {"p": project_id, "lo": _ch_time(h_lo), "hi": _ch_time(h_hi)})
    d_lo = h_lo.replace(hour=0)
    d_hi = (h_hi - timedelta(seconds=1)).replace(hour=0, minute=0, second=0) + timedelta(days=1)
    client.command(_rebuild_sql(db, "rollups_1h", "rollups_1d", "toStartOfDay", 86400),
                   {"p": project_id, "lo": _ch_time(d_lo), "hi": _ch_time(d_hi)})


class RollupsHandler:
    name = "rollups"

    def on_assign(self) -> None:
        pass

    def decode(self, msg: Message) -> Rollup:
        if not msg.value():
            raise Poison("empty", "message has no value")
        try:
            return Rollup.model_validate_json(msg.value())
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first["loc"]) or "value"
            raise Poison("invalid_rollup", f"{field}: {first['msg']}") from None

    def write(self, client: ClickHouse, items: list[Rollup], token: str) -> None:
        rows = [orjson.dumps(r.model_dump(mode="json", include=set(_COLUMNS))) for r in items]
        insert_rows(client, "rollups_1m", rows, token)
        with JOB_DURATION.labels("rollups_rebuild").time():
            for project, lo, hi in touched_ranges(items):
                rebuild(client, project, lo, hi)


def touched_ranges(items: list[Rollup]) -> list[tuple[str, datetime, datetime]]:
    """Per project, runs of consecutive touched hours: a replayed window weeks back next to a live
    one rebuilds two short ranges, not everything in between."""
    hours: dict[str, set[datetime]] = {}
    for r in items:
        hours.setdefault(r.project_id, set()).add(r.window_start.replace(minute=0, second=0, microsecond=0))
    out = []
    for project, hs in hours.items():
        run: list[datetime] = []
        for h in sorted(hs):
            if run and h - run[-1] > timedelta(hours=1):
                out.append((project, run[0], run[-1]))
                run = []
            run.append(h)
        out.append((project, run[0], run[-1]))
    return out

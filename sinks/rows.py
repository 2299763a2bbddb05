"""Event bytes from the log -> rows of `events`, `spans`, `scores` and `agents` (JSONEachRow).

The topic already holds normalized events whose field names are the `events` columns, so a good
event goes to ClickHouse as its own bytes (plus partition/offset) and ClickHouse does the parsing;
Python only checks what would make the whole insert fail and builds the few typed side rows.
Full pydantic validation per event would cost ~10x more and was already done at the edge.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson

from schemas.events import EVENT_TYPES

# Settings of every JSONEachRow insert: ISO times with zone, unknown fields ignored, objects into String.
INSERT_SETTINGS: dict[str, Any] = {
    "date_time_input_format": "best_effort",
    "input_format_skip_unknown_fields": 1,
    "input_format_json_read_objects_as_strings": 1,
}
# `events` is read with FINAL only, so twins within one block need not be folded at insert (the
# ReplacingMergeTree does it at merge): that pass was ~10% of the insert's CPU.
EVENTS_INSERT_SETTINGS: dict[str, Any] = {**INSERT_SETTINGS, "optimize_on_insert": 0}


class Poison(ValueError):
    """A message that cannot become a row; `reason` is the DLQ reason header."""

    def __init__(self, reason: str, error: str):
        self.reason = reason
        super().__init__(error)


_UUID_PATTERN = "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\\Z"
_UUID = re.compile(_UUID_PATTERN).match


def _need_str(d: dict[str, Any], name: str) -> str:
    v = d.get(name)
    if not isinstance(v, str) or not v:
        raise Poison("invalid_event", f"{name}: required non-empty string")
    return v


class EventRows(msgspec.Struct, gc=False):
    """The rows of one event: the events row always, a span or score row for those types."""

    event: bytes
    project_id: str
    agent_id: str
    timestamp: str
    type: str
    span: bytes | None = None
    score: bytes | None = None
    registration: dict[str, Any] | None = None


_Text = Annotated[str, msgspec.Meta(min_length=1)]


class _Plain(msgspec.Struct, gc=False):
    """What a normalized plain event (the bulk of the log) must look like to take the fast path.

    msgspec checks it in C straight from the bytes and skips the other fields without building
    objects: ~1 us an event against ~4 us for a full parse, which was the largest cost of landing.
    Anything else fails this decode and takes the full parse, which gives the same rows or the
    Poison with its reason.
    """

    type: Literal["llm_call", "error", "heartbeat"]  # no side rows beyond `agents`
    event_id: Annotated[str, msgspec.Meta(pattern=_UUID_PATTERN)]
    project_id: _Text
    agent_id: _Text
    timestamp: _Text
    received_at: Any  # present: the bytes go to ClickHouse as they are
    status: Any = None
    kafka_partition: msgspec.UnsetType = msgspec.UNSET  # absent: appended below
    kafka_offset: msgspec.UnsetType = msgspec.UNSET


_plain = msgspec.json.Decoder(_Plain).decode


def event_rows(value: bytes | None, partition: int, offset: int) -> EventRows:
    if value:
        try:
            h = _plain(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        else:
            if h.status != "registered":  # (a registration heartbeat carries an agents row)
                # A decoded JSON object: its bytes end with "}" (after any trailing whitespace).
                return EventRows(value.rstrip()[:-1] + b',"kafka_partition":%d,"kafka_offset":%d}' % (partition, offset),
                                 h.project_id, h.agent_id, h.timestamp, h.type)
    return _event_rows_full(value, partition, offset)


def _event_rows_full(value: bytes | None, partition: int, offset: int) -> EventRows:
    if not value:
        raise Poison("empty", "message has no value")
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Poison("invalid_json", f"value: {exc}") from None
    if not isinstance(d, dict):
        raise Poison("invalid_event", "value: must be a JSON object")
    typ = d.get("type")
    if typ not in EVENT_TYPES:
        raise Poison("invalid_event", f"type: must be one of {', '.join(EVENT_TYPES)}, got {typ!r}")
    event_id, project_id, agent_id, ts = d.get("event_id"), d.get("project_id"), d.get("agent_id"), d.get("timestamp")
    if not (isinstance(project_id, str) and isinstance(agent_id, str) and isinstance(ts, str)
            and project_id and agent_id and ts):
        for name in ("project_id", "agent_id", "timestamp"):
            _need_str(d, name)
    if not (isinstance(event_id, str) and _UUID(event_id)):
        raise Poison("invalid_event", f"event_id: not a UUID: {str(event_id)[:64]!r}")
    if "received_at" in d and not ("kafka_partition" in d or "kafka_offset" in d):
        body = value.rstrip()
        if not body.endswith(b"}"):
            raise Poison("invalid_json", "value: trailing bytes after the object")
        row = b"%s,\"kafka_partition\":%d,\"kafka_offset\":%d}" % (body[:-1], partition, offset)
    else:
        d.setdefault("received_at", ts)
        d["kafka_partition"], d["kafka_offset"] = partition, offset
        row = orjson.dumps(d)
    out = EventRows(row, project_id, agent_id, ts, typ)
    if typ == "span":
        out.span = orjson.dumps({
            "event_id": event_id, "project_id": project_id, "agent_id": agent_id,
            "trace_id": d.get("trace_id") or "", "span_id": d.get("span_id") or event_id,
            "parent_span_id": d.get("parent_span_id") or "", "name": d.get("name") or "span",
            "kind": d.get("kind") or "internal", "start_time": ts, "end_time": d.get("end_time"),
            "duration_ms": d.get("duration_ms"), "status": d.get("status") or "unset",
            "status_message": d.get("status_message") or "", "attributes": d.get("attributes") or {},
        })
    elif typ == "score":
        out.score = orjson.dumps({
            "event_id": event_id, "project_id": project_id, "agent_id": agent_id, "timestamp": ts,
            "trace_id": d.get("trace_id") or "", "name": d.get("name") or "score", "value": d.get("value"),
            "string_value": d.get("string_value") or "", "passed": d.get("passed"),
            "evaluator": d.get("evaluator") or "", "comment": d.get("comment") or "",
        })
    elif typ == "heartbeat" and d.get("status") == "registered":
        out.registration = {"name": d.get("name") or agent_id, "registered_at": ts,
                            "metadata": d.get("metadata") or {}}
    return out


def parse_ts(ts: str) -> datetime:
    t = datetime.fromisoformat(ts)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def ts_text(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

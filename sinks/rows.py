"""Event bytes from the log -> rows of `events`, `spans`, `scores` and `agents` (JSONEachRow).

The topic already holds normalized events whose field names are the `events` columns, so a good
event goes to ClickHouse as its own bytes (plus partition/offset) and ClickHouse does the parsing;
Python only checks what would make the whole insert fail and builds the few typed side rows.
Full pydantic validation per event would cost ~10x more and was already done at the edge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.events import EVENT_TYPES

# Settings of every JSONEachRow insert: ISO times with zone, unknown fields ignored, objects into String.
INSERT_SETTINGS: dict[str, Any] = {
    "date_time_input_format": "best_effort",
    "input_format_skip_unknown_fields": 1,
    "input_format_json_read_objects_as_strings": 1,
}


class Poison(ValueError):
    """A message that cannot become a row; `reason` is the DLQ reason header."""

    def __init__(self, reason: str, error: str):
        self.reason = reason
        super().__init__(error)


_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}").fullmatch


def _need_str(d: dict[str, Any], name: str) -> str:
    v = d.get(name)
    if not isinstance(v, str) or not v:
        raise Poison("invalid_event", f"{name}: required non-empty string")
    return v


@dataclass(slots=True)
class EventRows:
    """The rows of one event: the events row always, a span or score row for those types."""

    event: bytes
    project_id: str
    agent_id: str
    timestamp: str
    type: str
    span: bytes | None = None
    score: bytes | None = None
    registration: dict[str, Any] | None = field(default=None)


def event_rows(value: bytes | None, partition: int, offset: int) -> EventRows:
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

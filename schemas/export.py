"""JSON Schema export: one schema per topic value, for Redpanda Console, kcat users and other languages."""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import TypeAdapter

from schemas.alerts import Alert, AlertRule
from schemas.events import Event
from schemas.rollups import Rollup
from schemas.topics import ALERT_RULES, ALERTS, EVENTS, ROLLUPS

SCHEMAS = {
    EVENTS: TypeAdapter(Event),
    ROLLUPS: TypeAdapter(Rollup),
    ALERTS: TypeAdapter(Alert),
    ALERT_RULES: TypeAdapter(AlertRule),
}


def json_schemas() -> dict[str, dict]:
    out = {}
    for topic, adapter in SCHEMAS.items():
        schema = adapter.json_schema(mode="serialization")
        schema["$id"] = f"https://agenttrace.dev/schemas/{topic}.json"
        schema["title"] = topic
        out[topic] = schema
    return out


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for topic, schema in json_schemas().items():
        path = directory / f"{topic}.schema.json"
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        written.append(path)
    return written

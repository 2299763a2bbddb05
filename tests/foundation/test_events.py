from datetime import UTC, datetime

import jsonschema_rs
import orjson
import pytest

from schemas.events import EventValidationError, event_from_json, parse_event
from schemas.export import json_schemas
from schemas.normalize import normalize_event
from schemas.topics import EVENTS

SAMPLES = [
    {"type": "llm_call", "agent_id": "a1", "provider": "openai", "model": "gpt-4o-2024-08-06",
     "tokens_in": 1000, "tokens_out": 200, "tokens_cached": 400, "latency_ms": 812.5, "ttft_ms": 90,
     "status_code": 200, "source": "proxy", "trace_id": "t1", "tags": ["prod", "team:a"],
     "metadata": {"k": [1, 2]}},
    {"type": "error", "agent_id": "a1", "error_type": "ValueError", "message": "boom", "stack": "Traceback..."},
    {"type": "heartbeat", "agent_id": "a2", "status": "ok"},
    {"type": "span", "agent_id": "a3", "trace_id": "t", "span_id": "s2", "parent_span_id": "s1",
     "name": "planning", "duration_ms": 12.0, "status": "ok", "attributes": {"x": "y"}},
    {"type": "score", "agent_id": "a3", "name": "faithfulness", "value": 0.9, "passed": True, "evaluator": "judge"},
]


@pytest.mark.parametrize("raw", SAMPLES, ids=[s["type"] for s in SAMPLES])
def test_every_type_round_trips_through_json_and_its_schema(raw):
    event = normalize_event(parse_event(raw), "proj")
    data = event.to_json()
    again = event_from_json(data)
    assert again == event
    assert again.type == raw["type"]
    validator = jsonschema_rs.validator_for(json_schemas()[EVENTS])
    validator.validate(orjson.loads(data))


def test_schema_rejects_a_wrong_value():
    validator = jsonschema_rs.validator_for(json_schemas()[EVENTS])
    doc = orjson.loads(normalize_event(parse_event(SAMPLES[0]), "p").to_json())
    doc["tokens_in"] = "many"
    assert not validator.is_valid(doc)


def test_seed_field_names_are_accepted():
    e = parse_event({"agent_id": "my-agent", "event_type": "llm_call", "provider": "openai", "model": "gpt-4o",
                     "tokens_in": 150, "tokens_out": 50, "latency_ms": 1200, "status_code": 200,
                     "source": "sdk", "timestamp": "2025-01-15T10:30:00.000Z"})
    assert (e.type, e.tokens_in, e.tokens_out, e.status_code) == ("llm_call", 150, 50, 200)
    assert e.timestamp == datetime(2025, 1, 15, 10, 30, tzinfo=UTC)
    sdk = parse_event({"event_type": "llm_call", "agent_id": "x", "tokens": {"input": 5, "output": 7}, "status": 429})
    assert (sdk.tokens_in, sdk.tokens_out, sdk.status_code, sdk.is_error) == (5, 7, 429, True)


@pytest.mark.parametrize("raw,field", [
    ({"type": "llm_call", "agent_id": "a", "tokens_in": -1}, "tokens_in"),
    ({"type": "llm_call", "agent_id": "a", "tokens_out": "lots"}, "tokens_out"),
    ({"type": "llm_call", "agent_id": "a", "tokens_in": 10**30}, "tokens_in"),
    ({"type": "llm_call"}, "agent_id"),
    ({"type": "llm_call", "agent_id": ""}, "agent_id"),
    ({"type": "llm_call", "agent_id": "a", "timestamp": "yesterday"}, "timestamp"),
    ({"type": "nope", "agent_id": "a"}, "type"),
    ({"agent_id": "a"}, "type"),
    ({"type": "span", "agent_id": "a", "status": "weird"}, "status"),
    ({"type": "score", "agent_id": "a", "value": "high"}, "value"),
])
def test_bad_events_name_the_field(raw, field):
    with pytest.raises(EventValidationError) as exc:
        parse_event(raw)
    assert field in [e["field"] for e in exc.value.errors]
    assert field in str(exc.value)


def test_non_object_is_rejected():
    with pytest.raises(EventValidationError, match="JSON object"):
        parse_event([1, 2])


def test_project_always_comes_from_the_key():
    e = normalize_event(parse_event({"type": "heartbeat", "agent_id": "a", "project_id": "other"}), "mine")
    assert e.project_id == "mine"
    assert e.received_at is not None


def test_naive_timestamps_are_utc():
    e = parse_event({"type": "heartbeat", "agent_id": "a", "timestamp": "2025-01-15T10:30:00"})
    assert e.timestamp.tzinfo is not None and e.timestamp.utcoffset().total_seconds() == 0

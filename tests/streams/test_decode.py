"""The streams' fast event decode agrees with the full parse (pure Python, no broker)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from bench.ingest import realistic_event
from schemas.events import EventBase, EventValidationError, event_from_json, parse_event
from schemas.normalize import normalize_event
from streams.decode import StreamEvent, decode_event
from streams.windows import Outcome, PartitionWindows

FIELDS = ("type", "project_id", "agent_id", "provider", "model", "tokens_in", "tokens_out", "tokens_cached",
          "latency_ms", "ttft_ms", "status_code", "cost_usd")


def topic_values(n: int) -> list[bytes]:
    """Events as the gateway puts them on the log, times spread over a few minutes."""
    rng = random.Random(3)
    t0 = datetime.now(UTC).replace(microsecond=0)
    out = []
    for i in range(n):
        raw = realistic_event(rng)
        raw["timestamp"] = (t0 + timedelta(seconds=i * 0.37)).isoformat()
        if i % 7 == 0:
            raw["ttft_ms"] = rng.uniform(10, 900)
        out.append(normalize_event(parse_event(raw), "p1").to_json())
    return out


def test_fast_decode_reads_the_same_fields_as_the_full_parse():
    for value in topic_values(2000):
        fast, full = decode_event(value), event_from_json(value)
        assert isinstance(fast, StreamEvent)  # the log's normal events all take the fast path
        for name in FIELDS:
            if hasattr(full, name):  # provider, tokens... exist on llm calls only; the windows read them there
                assert getattr(fast, name) == getattr(full, name), name
        assert fast.timestamp.timestamp() == full.timestamp.timestamp()
        if full.type == "llm_call":
            assert fast.is_error == full.is_error


def windows_of(values: list[bytes], decode) -> tuple[dict, list]:
    w = PartitionWindows(60, wait=2, lateness=3600)
    out = Outcome()
    for v in values:
        assert w.add(decode(v), out)
    w.flush(out, everything=True)
    return {k: agg.__getstate__() for k, agg in w.windows.items()}, sorted(out.rollups)


def test_windows_fed_by_either_decode_are_identical():
    values = topic_values(3000)
    fast_state, fast_rollups = windows_of(values, decode_event)
    full_state, full_rollups = windows_of(values, event_from_json)
    assert fast_state == full_state and fast_rollups == full_rollups
    assert len(fast_rollups) > 10


def event(**over) -> bytes:
    doc = {"type": "llm_call", "event_id": "6f1c8e0e-3c1b-4d7e-9a59-2b6f0f3c1d2e", "project_id": "p1",
           "agent_id": "a1", "timestamp": "2026-11-23T10:00:00.123Z", "provider": "openai", "model": "gpt-4o",
           "tokens_in": 10, "tokens_out": 5, "latency_ms": 120.0, "status_code": 200}
    doc.update(over)
    return orjson.dumps({k: v for k, v in doc.items() if v is not None})


@pytest.mark.parametrize("over", [
    {"timestamp": "2026-11-23T10:00:00"},  # no zone: the envelope reads it as UTC
    {"timestamp": 1795000000},  # epoch seconds
    {"agent_id": "  a1  "},  # the envelope strips whitespace
    {"event_id": "6f1c8e0e3c1b4d7e9a592b6f0f3c1d2e"},  # a UUID without dashes
    {"tokens_in": "12"},  # a numeric string
])
def test_what_the_fast_path_is_unsure_of_takes_the_full_parse(over):
    ev = decode_event(event(**over))
    assert isinstance(ev, EventBase)
    assert ev == event_from_json(event(**over))


@pytest.mark.parametrize("over,field", [
    ({"tokens_in": -1}, "tokens_in"),
    ({"latency_ms": 1e12}, "latency_ms"),
    ({"agent_id": ""}, "agent_id"),
    ({"type": "bogus"}, "type"),
    ({"status_code": 1000}, "status_code"),
])
def test_invalid_events_raise_the_full_parse_error(over, field):
    with pytest.raises(EventValidationError) as exc:
        decode_event(event(**over))
    assert any(field in e["field"] or e["field"] == "event" for e in exc.value.errors)


def test_not_json_raises_a_validation_error():
    with pytest.raises(EventValidationError):
        decode_event(b"{not json")

"""The gateway's msgspec fast path writes exactly the record of the full pydantic path, or declines.

For every input: either `fast_record` returns None (the full path then decides), or the full path
accepts the event and publishes the very same key, value bytes and headers.
"""

from __future__ import annotations

import copy
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from agenttrace.kafka import event_record
from bench.ingest import bodies
from ingest import batch as batch_module
from ingest.batch import build_batch
from ingest.fastrecord import fast_record
from schemas.events import EventValidationError, parse_event
from schemas.normalize import normalize_event
from tests.ingest.test_fast_paths import EDGE_EVENTS

NOW = datetime.now(UTC).replace(microsecond=123456)


def full_record(raw: Any, project: str = "proj") -> Any:
    """The full path's record, or its EventValidationError (or the error it raised)."""
    try:
        event = parse_event(copy.deepcopy(raw))
    except (EventValidationError, OverflowError) as exc:
        return exc
    return event_record(normalize_event(event, project, NOW))


def check(raw: Any) -> bool:
    """Asserts fast == full whenever the fast path takes the event; returns whether it did."""
    before = copy.deepcopy(raw)
    fast = fast_record(raw, "proj", NOW)
    assert raw == before, "the fast path must not change its input"
    if fast is None:
        return False
    full = full_record(raw)
    assert not isinstance(full, (EventValidationError, OverflowError)), (raw, full)
    if isinstance(raw, dict) and "timestamp" not in raw:
        # Both paths stamp "now" when the client sent no time; compare the rest.
        fast_doc, full_doc = orjson.loads(fast[1]), orjson.loads(full[1])
        stamped = datetime.fromisoformat(fast_doc.pop("timestamp"))
        assert abs(stamped - datetime.fromisoformat(full_doc.pop("timestamp"))) < timedelta(seconds=5)
        assert list(fast_doc) == list(full_doc) and fast_doc == full_doc
        assert fast[0] == full[0] and fast[2] == full[2]
        return True
    assert fast == full, raw
    return True


def with_id(raw: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), **raw}


def test_realistic_batches_take_the_fast_path_with_identical_records() -> None:
    _, docs = bodies(3, 500)
    raws = [with_id(raw) for doc in docs for raw in doc]
    assert all(check(raw) for raw in raws)


def test_edge_events_agree() -> None:
    taken = [check(with_id(raw)) for raw in EDGE_EVENTS]
    # Exact seed-shaped and canonical events are taken; coerced values ("12", naive times, tag maps) are not.
    assert taken[6] and taken[7]
    assert not taken[1]


def test_sdk_shapes_take_the_fast_path() -> None:
    ts = "2026-11-23T10:00:00.250000+00:00"
    shapes = [
        {"type": "llm_call", "agent_id": "a", "timestamp": ts, "provider": "openai", "model": "gpt-4o-2024-08-06",
         "tokens": {"input": 1200, "output": 300, "cached": 200}, "status": 200, "latency_ms": 812.5},
        {"type": "error", "agent_id": "a", "timestamp": ts, "error_type": "ValueError", "message": "boom",
         "stack": "Traceback...\n  line 1\nValueError: boom", "status": 500},
        {"type": "heartbeat", "agent_id": "a", "timestamp": ts, "status": "registered", "name": "a",
         "metadata": {"host": "h1", "n": [1, 2.5, None, {"x": True}]}},
        {"type": "span", "agent_id": "a", "timestamp": ts, "trace_id": "t", "span_id": "s", "parent_span_id": "p",
         "name": "tool", "end_time": "2026-11-23T10:00:01.5+00:00", "duration_ms": 1500, "status": "ok",
         "attributes": {"k": "v"}},
        {"type": "score", "agent_id": "a", "timestamp": ts, "name": "helpfulness", "value": 1, "passed": True},
        {"type": "llm_call", "agent_id": "a", "model": "claude-sonnet-4-5", "input_tokens": 10, "output_tokens": 5},
    ]
    for raw in shapes:
        assert check(with_id(raw)), raw


# -- randomized events, seed names and edge values included -----------------------------------------

_STRINGS = ["a", "agent-7", "", " a", "a ", "\ta", "a\n", "\u00a0a", "a\u2028", "a\u3000", "\x1fa", "a\x00b",
            "é😀", "x" * 64, "x" * 65, "y" * 200, "y" * 201, "z" * 256, "z" * 257, "A\u200bB"]
_TIMES = ["2026-11-23T10:00:00Z", "2026-11-23T10:00:00+00:00", "2026-11-23T10:00:00.5-03:30",
          "2026-11-23T10:00:00.123456789Z", "2026-11-23T10:00:00.1234567+01:00", "2026-11-23 10:00:00Z",
          "2026-11-23t10:00:00z", "2026-11-23T10:00:00", "2026-11-23T10:00Z", "2026-11-23", "20261123T100000Z",
          "2026-11-23T23:59:60Z", "2026-02-30T10:00:00Z", "2026-11-23T10:00:00+24:00", "2026-11-23T10:00:00+0100",
          "2026-11-23T10:00:00.Z", " 2026-11-23T10:00:00Z", "2026-11-23T10:00:00-00:00", "0001-01-01T00:00:00Z",
          "9999-12-31T23:59:59.999999+00:00", "0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00", "2026-11-23T10:00:00,5Z", 1763891000, 1763891000.5, 1763891000123,
          None, True, "now", "2026-11-23T10:00:00.000000Z", "2026-11-23T10:00:00.000Z"]
_IDS = [lambda: str(uuid.uuid4()), lambda: str(uuid.uuid4()).upper(), lambda: uuid.uuid4().hex,
        lambda: "{" + str(uuid.uuid4()) + "}", lambda: "urn:uuid:" + str(uuid.uuid4()), lambda: " " + str(uuid.uuid4()),
        lambda: str(uuid.uuid4())[:-1], lambda: 12, lambda: str(uuid.UUID(int=0)), lambda: uuid.uuid4().hex.upper()]
_NUMBERS = [0, 1, -1, 12, 999, 1000, 10**9, 10**9 + 1, 2**63 - 1, 2**64 - 1, 0.0, -0.0, 2.5, 3.0, 1e-7, 1e16, 1e300,
            604_800_000.0, 604_800_000.5, True, False, "12", "1.5", None, [1], {"a": 1}]
_KEYS = ["k", " k", "k ", "", "é", "a.b"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if kind < 0.3:
        return rng.choice(_STRINGS)
    if kind < 0.6:
        return rng.choice(_NUMBERS)
    if kind < 0.8 and depth < 2:
        return {rng.choice(_KEYS): _value(rng, depth + 1) for _ in range(rng.randrange(3))}
    if depth < 2:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return None


_FIELDS: dict[str, list[Any]] = {
    "agent_id": _STRINGS + [None, 5], "project_id": _STRINGS + [None], "trace_id": _STRINGS + [None, 1],
    "span_id": _STRINGS, "parent_span_id": _STRINGS, "session_id": _STRINGS, "user_id": _STRINGS, "release": _STRINGS,
    "version": _STRINGS, "name": _STRINGS + [None], "received_at": _TIMES, "end_time": _TIMES,
    "provider": ["openai", "OpenAI", "azure", "vertex_ai", "someone", "", " openai", None, "unknown"],
    "model": ["gpt-4o", "gpt-4o-2024-08-06", "models/gemini-2.5-flash-preview-05-20", "claude-3-5-sonnet-20241022",
              "anthropic.claude-3-haiku-20240307-v1:0", "their-model", "", None, "GPT-4O"],
    "model_family": ["x", None, 3], "pricing_version": ["v", None], "pricing_status": ["priced", "nope", None],
    "tokens_in": _NUMBERS, "tokens_out": _NUMBERS, "tokens_cached": _NUMBERS, "input_tokens": _NUMBERS,
    "output_tokens": _NUMBERS, "latency_ms": _NUMBERS, "ttft_ms": _NUMBERS, "duration_ms": _NUMBERS,
    "status_code": _NUMBERS, "cost_usd": _NUMBERS, "value": _NUMBERS, "stream": [True, False, None, 1, "true"],
    "passed": [True, False, None, 0], "source": ["sdk", "proxy", "otlp", "other", " sdk", None],
    "status": ["ok", "error", "unset", "registered", "x" * 65, 200, 503, 1000, -1, True, None, " ok"],
    "kind": ["internal", "client", "x" * 33], "error_type": _STRINGS, "message": _STRINGS, "stack": _STRINGS,
    "finish_reason": _STRINGS, "status_message": _STRINGS, "string_value": _STRINGS, "evaluator": _STRINGS,
    "comment": _STRINGS,
    "tags": [[], ["a", "b"], [" a"], ["x" * 201], ["t"] * 65, {"k": "v"}, "a", [1], None, ["é", ""]],
    "tokens": [{"input": 10, "output": 5}, {"input": 10, "output": 5, "cached": 20}, {"input": None},
               {"input": "10"}, {"output": -1}, [10, 5], "lots", {"other": 1}, None],
    "extra_field": _STRINGS + _NUMBERS,
}


def random_event(rng: random.Random) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    kind = rng.choice(["llm_call", "error", "heartbeat", "span", "score", "llm_call", "nope", None, 3])
    where = rng.random()
    if where < 0.45:
        raw["type"] = kind
    elif where < 0.9:
        raw["event_type"] = kind
    elif where < 0.95:
        raw["type"], raw["event_type"] = kind, rng.choice(["span", "x"])
    raw["event_id"] = rng.choice(_IDS)() if rng.random() < 0.3 else str(uuid.uuid4())
    raw["agent_id"] = "agent-1"
    if rng.random() < 0.9:
        raw["timestamp"] = rng.choice(_TIMES) if rng.random() < 0.5 else "2026-11-23T10:00:00.250+00:00"
    for name in rng.sample(sorted(_FIELDS), rng.randrange(0, 10)):
        raw[name] = rng.choice(_FIELDS[name])
    if rng.random() < 0.3:
        raw["metadata"] = {rng.choice(_KEYS): _value(rng) for _ in range(rng.randrange(4))}
    if rng.random() < 0.2:
        raw["attributes"] = {rng.choice(_KEYS): _value(rng) for _ in range(rng.randrange(4))}
    return raw


def test_randomized_events_agree() -> None:
    rng = random.Random(20261123)
    taken = sum(check(random_event(rng)) for _ in range(6000))
    assert taken > 500  # the fast path is exercised, not just declining


@pytest.mark.parametrize("seed", [1, 2])
def test_build_batch_is_the_same_with_and_without_the_fast_path(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    rng = random.Random(seed)
    _, docs = bodies(1, 200, seed=seed)
    raws = [random_event(rng) if rng.random() < 0.5 else raw for raw in docs[0]]
    # Times that overflow in UTC make the whole batch fail in either mode (test below): left out here.
    raws = [raw for raw in raws if not isinstance(full_record(raw), OverflowError)]
    raws += [{"type": "span", "agent_id": "a", "attributes": {"big": "x" * 1_100_000}}, "not an object", 7]
    for raw in raws:
        if isinstance(raw, dict) and raw.get("event_id") is None:
            raw["event_id"] = str(uuid.uuid4())
        if isinstance(raw, dict) and "timestamp" not in raw:
            raw["timestamp"] = "2026-11-23T10:00:00Z"
    fast = build_batch(copy.deepcopy(raws), "proj", NOW)
    monkeypatch.setattr(batch_module, "fast_record", lambda raw, project_id, received_at: None)
    full = build_batch(copy.deepcopy(raws), "proj", NOW)
    assert fast.records == full.records
    assert fast.rejected == full.rejected
    assert fast.types == full.types
    assert fast.accepted > 0 and fast.rejected


def test_assigned_ids_and_realistic_batches_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    _, docs = bodies(1, 500, seed=3)
    taken: list[bool] = []

    def counting(raw: Any, project_id: str, received_at: datetime) -> Any:
        record = fast_record(raw, project_id, received_at)
        taken.append(record is not None)
        return record

    monkeypatch.setattr(batch_module, "fast_record", counting)
    batch = build_batch(docs[0], "proj", NOW)  # no event ids: the gateway assigns them
    assert batch.accepted == 500 and all(taken) and len(taken) == 500
    for _, value, _ in batch.records:
        assert str(uuid.UUID(orjson.loads(value)["event_id"])) == orjson.loads(value)["event_id"]


@pytest.mark.parametrize("field", ["timestamp", "received_at"])
def test_times_that_overflow_in_utc_are_left_to_the_full_path(field: str) -> None:
    raw = {"type": "heartbeat", "agent_id": "a", "event_id": str(uuid.uuid4()), field: "0001-01-01T00:30:00+01:00"}
    assert fast_record(raw, "proj", NOW) is None
    with pytest.raises(OverflowError):
        build_batch([raw], "proj", NOW)  # as before the fast path

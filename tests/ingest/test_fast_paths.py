"""The gateway's fast paths agree with the plain ones they replace (same events, bytes, errors and costs)."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import datetime

import orjson

from agenttrace.kafka import event_record
from bench.ingest import bodies
from ingest.batch import build_batch
from schemas.events import EventValidationError, LlmCall, parse_event, parse_events
from schemas.normalize import normalize_event
from schemas.pricing import PRICING_VERSION, cost_usd, model_family, normalize_provider, price_event


def _pydantic_json(event) -> bytes:
    # The encoding events had before the orjson fast path.
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))


EDGE_EVENTS = [
    {"type": "span", "agent_id": " a ", "timestamp": "2026-11-23T10:00:00+02:00",
     "attributes": {"x": None, "f": 1e-7, "g": 1e300, "h": -0.0, "i": 2**63 - 1, "u": "é\u2028😀", "n": float("nan")}},
    {"type": "llm_call", "agent_id": "a", "timestamp": "2026-11-23T10:00:00.5", "tokens_in": "12", "latency_ms": 3,
     "model": "claude-3-5-sonnet-20241022", "provider": "Anthropic", "tags": {"k": "v", "n": 1}},
    {"type": "score", "agent_id": "a", "timestamp": 1763891000, "value": True, "metadata": {"big": 2**60}},
    {"type": "error", "agent_id": "a", "timestamp": "2026-11-23T10:00:00.000001Z", "message": "x",
     "metadata": {"d": dt.datetime(2026, 1, 1), "b": b"xy", "t": (1, 2),
                  "dz": dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5)))}},
    {"type": "heartbeat", "agent_id": "a", "timestamp": dt.datetime(2026, 11, 23, 10, 0, 0, 123, tzinfo=dt.UTC),
     "metadata": {"s": {1, 2}, "u": uuid.UUID(int=7)}},
    {"type": "llm_call", "agent_id": "a", "tokens_in": 3, "tokens_cached": 9, "model": "gpt-4o", "cost_usd": 0.1,
     "metadata": {"k": [None, {"a": None}], "d": dt.date(2026, 1, 2), "t": dt.time(1, 2, 3)}},
    {"event_type": "llm_call", "agent_id": "a", "provider": "vertex_ai", "model": "models/gemini-2.5-flash-preview-05-20",
     "tokens": {"input": 100, "output": 7, "cached": 50}, "status": 503},
    {"type": "llm_call", "agent_id": "a", "provider": "someone", "model": "their-model", "tokens_out": 1},
]


def test_to_json_writes_what_pydantic_wrote() -> None:
    _, docs = bodies(4, 500)
    events = [normalize_event(parse_event(raw), "p") for doc in docs for raw in doc]
    events += [normalize_event(parse_event(raw), "p") for raw in EDGE_EVENTS]
    for event in events:
        fast = event.to_json()
        assert fast == _pydantic_json(event), event
        doc = orjson.loads(fast)
        assert doc["timestamp"].endswith("Z") and doc["received_at"].endswith("Z")
        assert None not in doc.values()


def test_to_json_falls_back_for_values_orjson_cannot_encode() -> None:
    event = normalize_event(parse_event({"type": "span", "agent_id": "a", "attributes": {"raw": b"\x01", "set": {3}}}), "p")
    assert event.to_json() == _pydantic_json(event)
    assert orjson.loads(event.to_json())["attributes"] == {"raw": "\x01", "set": [3]}


def test_parse_events_matches_parse_event_on_a_mixed_batch() -> None:
    _, docs = bodies(1, 50)
    good = docs[0]
    bad = [
        "not an object",
        {"agent_id": "a"},  # no type
        {"type": "nope", "agent_id": "a"},
        {"type": ["llm_call"], "agent_id": "a"},
        {"type": "llm_call", "agent_id": "a", "tokens_in": -1, "latency_ms": "slow"},
        {"type": "span", "timestamp": "yesterday-ish"},
        {"event_type": "score", "agent_id": "a", "value": "high"},
    ]
    # Fixed ids and times, so that defaults drawn at parse time do not differ between the two parses.
    edge = [{"event_id": str(uuid.uuid4()), "timestamp": "2026-11-23T10:00:00Z", **raw} for raw in EDGE_EVENTS]
    good = [{"event_id": str(uuid.uuid4()), **raw} for raw in good]
    mixed = good[:10] + bad + good[10:] + edge
    for batch in (good + edge, mixed):
        fast = parse_events(batch)
        assert len(fast) == len(batch)
        for raw, got in zip(batch, fast, strict=True):
            try:
                expected = parse_event(raw)
            except EventValidationError as exc:
                assert isinstance(got, EventValidationError), raw
                assert got.errors == exc.errors
            else:
                assert not isinstance(got, EventValidationError), raw
                assert type(got) is type(expected)
                assert got.model_dump() == expected.model_dump()
    errors = [r for r in parse_events(mixed) if isinstance(r, EventValidationError)]
    assert [e.errors[0]["field"] for e in errors] == ["event", "type", "type", "type", "tokens_in", "timestamp", "value"]


def test_build_batch_keeps_good_events_and_reports_bad_ones_by_index() -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    raws = [{"type": "heartbeat", "agent_id": "a", "event_id": ids[0], "timestamp": "2026-11-23T10:00:00Z"},
            {"type": "llm_call", "agent_id": "b", "tokens_in": "many"},
            {"type": "span", "agent_id": "c", "event_id": ids[2], "name": "s", "timestamp": "2026-11-23T10:00:01+01:00"}]
    batch = build_batch(raws, "proj")
    assert [orjson.loads(r[1])["event_id"] for r in batch.records] == [ids[0], ids[2]]
    assert [(r["index"], r["errors"][0]["field"]) for r in batch.rejected] == [(1, "tokens_in")]
    # The records are exactly `event_record` of the normalized events (key, value, headers).
    received = datetime.fromisoformat(orjson.loads(batch.records[0][1])["received_at"])
    expected = [event_record(normalize_event(parse_event(raws[i]), "proj", received)) for i in (0, 2)]
    assert [(k, v, list(h)) for k, v, h in batch.records] == expected
    assert batch.types == {"heartbeat": 1, "span": 1}


def test_price_event_matches_the_pricing_functions() -> None:
    cases = [("openai", "gpt-4o-2024-08-06", 1200, 300, 200), ("Anthropic", "claude-3-5-sonnet-20241022", 5, None, None),
             ("vertex_ai", "models/gemini-2.5-flash", None, None, None), ("", "gpt-4o-mini", 10, 10, 20),
             ("acme", "rocket-1", 10, 10, 0)]
    for _ in range(2):  # the second round is served from the memo
        for provider, model, tin, tout, cached in cases:
            event = LlmCall(agent_id="a", provider=provider, model=model, tokens_in=tin, tokens_out=tout,
                            tokens_cached=cached)
            price_event(event)
            want_provider = normalize_provider(provider, model)
            want_family = model_family(want_provider, model)
            want_cost, want_status = cost_usd(want_provider, want_family, tin, tout, cached)
            assert (event.provider, event.model_family, event.cost_usd, event.pricing_status, event.pricing_version) == \
                (want_provider, want_family, want_cost, want_status, PRICING_VERSION)
            assert {"provider", "model_family", "cost_usd", "pricing_status", "pricing_version"} <= event.model_fields_set


def test_assigned_event_ids_are_distinct_version_4_uuids() -> None:
    batch = build_batch([{"type": "heartbeat", "agent_id": f"a{i}"} for i in range(2000)], "p")
    ids = [uuid.UUID(orjson.loads(value)["event_id"]) for _, value, _ in batch.records]
    assert len(set(ids)) == 2000
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in ids)
    assert all(str(u) == orjson.loads(value)["event_id"] for u, (_, value, _) in zip(ids, batch.records, strict=True))

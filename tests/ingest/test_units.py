"""Unit tests of the gateway's pure parts: rate-limit bucket, body decoding, OTLP value mapping, rule edits."""

from __future__ import annotations

import gzip
import zlib

import pytest
from fastapi import HTTPException

from ingest import ratelimit
from ingest.body import decode
from ingest.otlp import any_value, span_events
from ingest.rules import RuleInputError, new_rule, toggled_rule, updated_rule


def test_rate_limit_bucket_refills_over_time(monkeypatch: pytest.MonkeyPatch):
    clock = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: clock[0])
    rl = ratelimit.RateLimiter(60)  # one event per second
    assert rl.take("k", 60) == 0
    wait = rl.take("k", 5)
    assert wait == 5  # five events need five seconds of refill
    clock[0] += 5
    assert rl.take("k", 5) == 0
    assert rl.take("other", 10) == 0  # buckets are per key
    assert rl.take("default", 40) == 0 and rl.take("default", 40) > 0  # the default bucket holds 60...
    assert rl.take("override", 40, per_minute=600) == 0 and rl.take("override", 40, per_minute=600) == 0  # ...600
    clock[0] += 1
    assert rl.take("big", 500, per_minute=120) == 0  # a batch larger than the bucket passes when it is full...
    assert rl.take("big", 1, per_minute=120) >= 1  # ...and then the key is in debt


def test_decode_gzip_deflate_and_limits():
    raw = b'{"events": []}' * 100
    assert decode(gzip.compress(raw), "gzip", 10_000) == raw
    assert decode(zlib.compress(raw), "deflate", 10_000) == raw
    assert decode(raw, None, 10_000) == raw
    with pytest.raises(HTTPException) as e:
        decode(gzip.compress(b"0" * 100_000), "gzip", 10_000)
    assert e.value.status_code == 413
    with pytest.raises(HTTPException) as e:
        decode(b"not gzip", "gzip", 10_000)
    assert e.value.status_code == 400
    with pytest.raises(HTTPException) as e:
        decode(raw, "br", 10_000)
    assert e.value.status_code == 415


def test_otlp_any_value_and_genai_legacy_names():
    assert any_value({"intValue": "42"}) == 42
    assert any_value({"arrayValue": {"values": [{"stringValue": "a"}, {"boolValue": True}]}}) == ["a", True]
    assert any_value({"kvlistValue": {"values": [{"key": "k", "value": {"doubleValue": 1.5}}]}}) == {"k": 1.5}
    span = {"traceId": "AB" * 16, "spanId": "CD" * 8, "name": "chat", "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000000250000000", "kind": "SPAN_KIND_CLIENT",
            "attributes": [{"key": "gen_ai.system", "value": {"stringValue": "openai"}},
                           {"key": "gen_ai.response.model", "value": {"stringValue": "gpt-4o-mini-2024-07-18"}},
                           {"key": "gen_ai.usage.prompt_tokens", "value": {"intValue": "100"}},
                           {"key": "gen_ai.usage.completion_tokens", "value": {"intValue": "7"}},
                           {"key": "http.response.status_code", "value": {"intValue": "429"}}]}
    ev_span, call = span_events({"service.name": "svc"}, {}, span)
    assert ev_span.kind == "client" and ev_span.trace_id == "ab" * 16 and ev_span.duration_ms == 250
    assert call.model == "gpt-4o-mini-2024-07-18" and call.tokens_in == 100 and call.tokens_out == 7
    assert call.status_code == 429 and call.latency_ms == 250 and call.agent_id == "svc"
    # The same span always maps to the same event ids (exporter retries are recognisable).
    again = span_events({"service.name": "svc"}, {}, span)
    assert [e.event_id for e in again] == [ev_span.event_id, call.event_id]


def test_rule_edits_keep_identity_and_name_bad_fields():
    rule = new_rule({"type": "error_rate", "threshold": 5, "email": "a@x.io, b@x.io", "id": "mine"}, "p1")
    assert rule.id != "mine" and rule.project_id == "p1" and rule.email_to == ["a@x.io", "b@x.io"]
    upd = updated_rule(rule, {"threshold": 9, "project_id": "p2"})
    assert (upd.id, upd.project_id, upd.created_at, upd.threshold) == (rule.id, "p1", rule.created_at, 9)
    assert toggled_rule(upd, None).enabled is False and toggled_rule(upd, True).enabled is True
    with pytest.raises(RuleInputError) as e:
        updated_rule(rule, {"window_minutes": 0})
    assert e.value.errors[0]["field"] == "window_minutes"

"""The Python SDK against the real gateway: every kind of event, trace ids, and delivery across a restart."""

from __future__ import annotations

import time
from collections import Counter

import orjson

from ingest.sdk import AgentTrace
from schemas.settings import Settings
from schemas.topics import EVENTS
from tests.ingest.conftest import GatewayProc
from tests.support import free_port, read_topic


def topic_docs(settings: Settings, expect: int | None = None) -> list[dict]:
    return [orjson.loads(m.value()) for m in read_topic(settings.kafka_bootstrap, settings.topic(EVENTS), expect=expect)]


def test_sdk_records_calls_errors_heartbeats_and_traces(gateway: GatewayProc, kafka_settings: Settings):
    at = AgentTrace.init(api_key=gateway.key("p1"), agent_id="sdk-agent", endpoint=f"{gateway.url}/api/events",
                         flush_interval=0.2)
    call_id = at.track(provider="openai", model="gpt-4o", tokens={"input": 150, "output": 50}, latency_ms=1200, status=200)
    try:
        raise ValueError("could not parse the plan")
    except ValueError as exc:
        at.error(exc)
    at.heartbeat()
    trace = at.start_trace()
    span = trace.start_span("planning")
    child = span.start_span("tool-call")
    at.track(provider="anthropic", model="claude-sonnet-4-20250514", trace_id=trace.traceId, span_id=child.spanId,
             parent_span_id=child.parentSpanId, tokens={"input": 500, "output": 200}, latency_ms=3000, status=200)
    child.end()
    span.end()
    at.track({"type": "llm_call", "tokens_in": -1})  # invalid: refused by the gateway, never raised
    at.heartbeat(metadata={"odd": object()})  # not JSON: sent as text, not a dead sender thread
    assert at.flush(timeout=20)
    assert at.shutdown(timeout=5)
    assert at.sent == 7 and at.dropped == 1

    docs = topic_docs(kafka_settings, expect=7)
    by_type = Counter(d["type"] for d in docs)
    assert by_type == {"llm_call": 2, "error": 1, "heartbeat": 2, "span": 2}
    assert any("object" in str(d.get("metadata", {}).get("odd")) for d in docs)
    assert all(d["agent_id"] == "sdk-agent" and d["project_id"] == "p1" for d in docs)
    first = next(d for d in docs if d["event_id"] == call_id)
    assert first["tokens_in"] == 150 and first["status_code"] == 200 and first["cost_usd"] > 0
    err = next(d for d in docs if d["type"] == "error")
    assert err["error_type"] == "ValueError" and "could not parse" in err["message"] and "Traceback" in err["stack"]
    spans = {d["name"]: d for d in docs if d["type"] == "span"}
    assert spans["tool-call"]["parent_span_id"] == spans["planning"]["span_id"]
    assert spans["planning"]["trace_id"] == trace.trace_id and "parent_span_id" not in spans["planning"]
    traced = next(d for d in docs if d["type"] == "llm_call" and d.get("trace_id"))
    assert traced["span_id"] == child.span_id and traced["parent_span_id"] == span.span_id


def test_sdk_delivers_across_a_gateway_restart(gateway: GatewayProc, kafka_settings: Settings):
    at = AgentTrace.init(gateway.key("p1"), "restart-agent", gateway.url, flush_interval=0.1, max_backoff=0.5)
    ids = [at.track(model="gpt-4o", tokens_in=10, tokens_out=1) for _ in range(20)]
    assert at.flush(timeout=20)
    gateway.stop()
    ids += [at.track(model="gpt-4o", tokens_in=10, tokens_out=1) for _ in range(30)]
    ids.append(at.heartbeat())
    assert not at.flush(timeout=1.5)  # the gateway is down: nothing can be delivered yet, nothing raised
    gateway.start()
    assert at.flush(timeout=30)
    at.shutdown(timeout=5)
    assert at.dropped == 0 and at.sent == 51
    docs = topic_docs(kafka_settings, expect=51)
    seen = Counter(d["event_id"] for d in docs)
    assert all(seen[i] == 1 for i in ids), seen


def test_sdk_never_raises_and_bounds_its_queue():
    port = free_port()  # nothing listens here
    at = AgentTrace.init("sk-at-x", "lonely", f"http://127.0.0.1:{port}", max_queue=10, batch_size=1)
    for _ in range(25):
        at.track(model="gpt-4o")
    at.track(object())  # not a dict: swallowed
    # At most the queue (10) plus the one batch being retried are held; the rest is dropped, not blocked on.
    assert at.dropped >= 14
    t = time.monotonic()
    assert at.shutdown(timeout=1) is False
    assert time.monotonic() - t < 5
    assert at.track(model="x") is None  # after shutdown: dropped, not raised

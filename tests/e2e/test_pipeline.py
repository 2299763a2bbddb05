"""End to end: SDK, HTTP batch, OTLP and proxy traffic in -> the same numbers in the rollups, in
ClickHouse, in the API and on the overview page; an alert rule fires and its webhook arrives."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from ingest.sdk import AgentTrace
from schemas.pricing import cost_usd, model_family
from schemas.rollups import Rollup
from schemas.topics import ROLLUPS
from tests.e2e.pipeline import Pipeline
from tests.e2e.receivers import USAGE, WebhookReceiver, fake_openai
from tests.support import read_topic, wait_for

STREAM_ENV = {"AGENTTRACE_STREAM_WINDOW_SECONDS": "5", "AGENTTRACE_STREAM_WAIT_SECONDS": "1",
              "AGENTTRACE_STREAM_TICK_SECONDS": "0.5", "AGENTTRACE_STREAM_EPOCH_SECONDS": "1",
              "AGENTTRACE_DELIVERY_RETRY_DELAYS": "[0.2, 0.4, 0.8]"}


def _cost(provider: str, model: str, tin: int, tout: int) -> float:
    return cost_usd(provider, model_family(provider, model), tin, tout)[0]


@pytest.fixture
def pipeline(tmp_path, kafka_bootstrap):
    p = Pipeline(tmp_path, kafka_bootstrap, extra_env=STREAM_ENV)
    try:
        p.start()
        yield p
    finally:
        p.stop_all()


def chdb_totals(p: Pipeline, with_ids: bool = False) -> dict:
    """Totals read from ClickHouse itself, after the store process stopped."""
    ev, ro, ids = p.query_store(
        "SELECT count() AS calls, uniqExact(event_id) AS uniq_ids, sum(cost_usd) AS cost "
        "FROM {db}.events FINAL WHERE type = 'llm_call'",
        "SELECT sum(calls) AS calls, sum(cost_usd) AS cost FROM {db}.rollups_1m FINAL",
        "SELECT event_id FROM {db}.events FINAL" if with_ids else "SELECT 1 WHERE 0")
    return {"events": ev[0], "rollups": ro[0], "ids": [r["event_id"] for r in ids]}


def overview_numbers(p: Pipeline) -> dict[str, str]:
    """Render the overview page in headless Chromium and read the numbers it shows."""
    url = f"{p.url('store')}/?key={p.token}"
    out = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={p.root / 'chromium'}", "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(re.findall(r'id="(stat-[a-z0-9-]+)" data-value="([^"]*)"', out.stdout))


def test_all_sources_give_the_same_numbers_everywhere(pipeline: Pipeline):
    p = pipeline
    hook = WebhookReceiver()
    upstream = fake_openai()
    gw = httpx.Client(base_url=p.url("gateway"), headers=p.auth, timeout=10)
    rule = gw.post("/api/alerts", json={"type": "error_rate", "name": "e2e errors", "threshold": 10,
                                        "window_minutes": 1, "min_calls": 5, "webhook_url": hook.url})
    assert rule.status_code in (200, 201), rule.text

    expected_calls, expected_cost = 0, 0.0
    now = datetime.now(UTC)
    # 1. HTTP batch: 60 good calls, 20 failing calls of agent "flaky"
    batch = []
    for i in range(80):
        provider, model = [("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku-20241022")][i % 2]
        status = 500 if i >= 60 else 200
        agent = "flaky" if i >= 60 else f"batch-{i % 4}"
        batch.append({"event_type": "llm_call", "agent_id": agent, "provider": provider, "model": model,
                      "tokens_in": 100 + i, "tokens_out": 10 + i, "latency_ms": 200 + i, "status_code": status,
                      "timestamp": (now - timedelta(seconds=1)).isoformat()})
        expected_calls += 1
        expected_cost += _cost(provider, model, 100 + i, 10 + i)
    r = gw.post("/api/events", json={"events": batch})
    assert r.status_code == 200 and r.json()["accepted"] == 80, r.text

    # 2. SDK
    sdk = AgentTrace.init(p.token, "sdk-agent", p.url("gateway"))
    for i in range(25):
        sdk.track(provider="google", model="gemini-2.0-flash", tokens={"input": 1000, "output": 100 * i},
                  latency_ms=300, status=200)
        expected_calls += 1
        expected_cost += _cost("google", "gemini-2.0-flash", 1000, 100 * i)
    assert sdk.shutdown(timeout=20)

    # 3. OTLP from the real OpenTelemetry exporter
    provider = TracerProvider(resource=Resource.create({"service.name": "otlp-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{p.url('gateway')}/v1/traces",
                                                                     headers={"x-api-key": p.token})))
    tracer = provider.get_tracer("e2e")
    for _ in range(5):
        with tracer.start_as_current_span("chat gpt-4o", attributes={
                "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 500, "gen_ai.usage.output_tokens": 50}):
            pass
        expected_calls += 1
        expected_cost += _cost("openai", "gpt-4o", 500, 50)
    provider.shutdown()
    otel_trace._TRACER_PROVIDER = None

    # 4. proxy, forwarding to the fake provider
    for _ in range(10):
        resp = httpx.post(f"{p.url('proxy')}/v1/chat/completions", timeout=10,
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                          headers={"authorization": "Bearer sk-upstream-secret", "x-agenttrace-key": p.token,
                                   "x-agenttrace-agent": "proxy-agent",
                                   "x-target-url": f"http://127.0.0.1:{upstream.server_address[1]}"})
        assert resp.status_code == 200 and resp.json()["usage"]["prompt_tokens"] == USAGE["prompt_tokens"]
        expected_calls += 1
        expected_cost += _cost("openai", "gpt-4o-mini", USAGE["prompt_tokens"], USAGE["completion_tokens"])

    api = httpx.Client(base_url=p.url("store"), headers=p.auth, timeout=10)
    window = {"from": (now - timedelta(hours=1)).isoformat(), "to": (now + timedelta(hours=1)).isoformat()}

    def summary():
        doc = api.get("/api/stats/summary", params=window).json()
        return doc if doc.get("calls") == expected_calls else None

    doc = wait_for(summary, timeout=90, interval=1, what=f"{expected_calls} calls in the API")
    assert doc["cost_usd"] == pytest.approx(expected_cost, rel=1e-9)
    assert doc["errors"] == 20

    # the rollups on the topic: the highest version of each window and dimensions
    latest: dict[str, Rollup] = {}
    for m in read_topic(p.settings.kafka_bootstrap, p.settings.topic(ROLLUPS)):
        r = Rollup.model_validate_json(m.value())
        if r.key() not in latest or r.version >= latest[r.key()].version:
            latest[r.key()] = r
    assert sum(r.calls for r in latest.values()) == expected_calls
    assert sum(r.cost_usd for r in latest.values()) == pytest.approx(expected_cost, rel=1e-9)

    # the alert fired for the flaky agent and its webhook arrived
    wait_for(lambda: any(h.get("agent_id") == "flaky" and h.get("rule_type") == "error_rate" for h in hook.received),
             timeout=60, what="error_rate webhook for agent flaky")

    # the overview page shows the same numbers
    shown = overview_numbers(p)
    assert int(float(shown["stat-calls"])) == expected_calls
    assert float(shown["stat-cost"]) == pytest.approx(expected_cost, rel=1e-9)

    # no provider key anywhere in what the pipeline stored
    events = api.get("/api/events", params={**window, "limit": 1000}).json()["events"]
    assert "sk-upstream-secret" not in json.dumps(events)

    # ClickHouse itself, read after the store process stopped
    p.kill("store", sig=15)
    totals = chdb_totals(p)
    assert totals["events"]["calls"] == expected_calls
    assert totals["rollups"]["calls"] == expected_calls
    assert totals["events"]["cost"] == pytest.approx(expected_cost, rel=1e-9)

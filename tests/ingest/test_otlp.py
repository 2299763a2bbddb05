"""OTLP/HTTP: the conformance example, and the real OpenTelemetry SDK exporter pointed at the gateway."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import orjson
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode

from schemas.settings import Settings
from schemas.topics import EVENTS
from tests.ingest.conftest import GatewayProc
from tests.support import read_topic

CONFORMANCE = Path("/work/shared/conformance/otlp/trace.json")


def events_by_type(settings: Settings, expect: int) -> dict[str, list[dict]]:
    msgs = read_topic(settings.kafka_bootstrap, settings.topic(EVENTS), expect=expect)
    out: dict[str, list[dict]] = {}
    for m in msgs:
        doc = orjson.loads(m.value())
        assert m.key() == f"{doc['project_id']}/{doc['agent_id']}".encode()
        out.setdefault(doc["type"], []).append(doc)
    return out


def test_conformance_example_becomes_a_span_event(gateway: GatewayProc, kafka_settings: Settings):
    token = gateway.key("p1")
    r = httpx.post(f"{gateway.url}/v1/traces", content=CONFORMANCE.read_bytes(),
                   headers={"content-type": "application/json", "x-api-key": token})
    assert r.status_code == 200, r.text
    assert r.json() == {}
    evs = events_by_type(kafka_settings, 1)
    assert list(evs) == ["span"]
    span = evs["span"][0]
    assert span["agent_id"] == "my.service" and span["project_id"] == "p1"
    assert span["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert span["span_id"] == "eee19b7ec3c1b174" and span["parent_span_id"] == "eee19b7ec3c1b173"
    assert span["name"] == "I'm a server span" and span["kind"] == "server"
    assert span["duration_ms"] == 1000.0
    assert span["attributes"] == {"my.span.attr": "some value"}


def _provider(exporter: SpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot", "service.version": "1.2.3"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _emit(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("agent.run") as root:
        root.set_attribute("session.id", "sess-1")
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attribute("gen_ai.system", "openai")
            span.set_attribute("gen_ai.request.model", "gpt-4o")
            span.set_attribute("gen_ai.usage.input_tokens", 1000)
            span.set_attribute("gen_ai.usage.output_tokens", 200)
            span.set_attribute("gen_ai.response.finish_reasons", ["stop"])
            time.sleep(0.01)
        with tracer.start_as_current_span("chat claude") as span:
            span.set_attribute("gen_ai.provider.name", "anthropic")
            span.set_attribute("gen_ai.request.model", "claude-sonnet-4-5")
            span.set_attribute("gen_ai.usage.input_tokens", 10)
            span.set_attribute("agenttrace.agent_id", "named-agent")
            span.set_status(Status(StatusCode.ERROR, "overloaded"))


def _check_exported(settings: Settings) -> None:
    evs = events_by_type(settings, 5)
    assert len(evs["span"]) == 3 and len(evs["llm_call"]) == 2
    spans = {s["name"]: s for s in evs["span"]}
    root = spans["agent.run"]
    assert root["agent_id"] == "support-bot" and root["version"] == "1.2.3" and root["session_id"] == "sess-1"
    assert "parent_span_id" not in root
    child = spans["chat gpt-4o"]
    assert child["parent_span_id"] == root["span_id"] and child["trace_id"] == root["trace_id"]
    assert len(child["trace_id"]) == 32 and len(child["span_id"]) == 16
    calls = {c["model"]: c for c in evs["llm_call"]}
    gpt = calls["gpt-4o"]
    assert gpt["provider"] == "openai" and gpt["source"] == "otlp" and gpt["agent_id"] == "support-bot"
    assert gpt["tokens_in"] == 1000 and gpt["tokens_out"] == 200 and gpt["finish_reason"] == "stop"
    assert gpt["span_id"] == child["span_id"] and gpt["latency_ms"] >= 10
    assert abs(gpt["cost_usd"] - (1000 * 2.5 + 200 * 10.0) / 1e6) < 1e-9
    claude = calls["claude-sonnet-4-5"]
    assert claude["provider"] == "anthropic" and claude["agent_id"] == "named-agent"
    assert claude["status_code"] == 500
    assert spans["chat claude"]["status"] == "error" and spans["chat claude"]["status_message"] == "overloaded"


def test_real_exporter_protobuf_gzip(gateway: GatewayProc, kafka_settings: Settings):
    token = gateway.key("p1")
    exporter = OTLPSpanExporter(endpoint=f"{gateway.url}/v1/traces", headers={"x-api-key": token},
                                compression=Compression.Gzip, timeout=10)
    provider = _provider(exporter)
    _emit(provider)
    provider.shutdown()
    _check_exported(kafka_settings)


class JsonExporter(SpanExporter):
    """OTLP/JSON over HTTP: the SDK's own encoding of the spans, written in the OTLP/JSON mapping (hex ids)."""

    def __init__(self, url: str, token: str):
        self.url, self.token, self.statuses = url, token, []

    def export(self, spans) -> SpanExportResult:
        doc = MessageToDict(encode_spans(spans))
        for rs in doc["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    for k in ("traceId", "spanId", "parentSpanId"):
                        if k in s:
                            s[k] = base64.b64decode(s[k]).hex()
        r = httpx.post(self.url, content=orjson.dumps(doc),
                       headers={"content-type": "application/json", "x-api-key": self.token})
        self.statuses.append(r.status_code)
        return SpanExportResult.SUCCESS if r.status_code == 200 else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


def test_otlp_json_from_the_sdk_encoding(gateway: GatewayProc, kafka_settings: Settings):
    exporter = JsonExporter(f"{gateway.url}/v1/traces", gateway.key("p1"))
    provider = _provider(exporter)
    _emit(provider)
    provider.shutdown()
    assert exporter.statuses == [200, 200, 200]
    _check_exported(kafka_settings)


def test_otlp_bad_requests(gateway: GatewayProc):
    token = gateway.key("p1")
    url = f"{gateway.url}/v1/traces"
    assert httpx.post(url, content=b"x", headers={"content-type": "application/x-protobuf"}).status_code == 401
    r = httpx.post(url, content=b"\xff\xff\xff", headers={"content-type": "application/x-protobuf", "x-api-key": token})
    assert r.status_code == 400
    r = httpx.post(url, content=b"{}", headers={"content-type": "text/plain", "x-api-key": token})
    assert r.status_code == 415
    # A span without ids is reported through OTLP partial success; the good one is kept.
    doc = orjson.loads(CONFORMANCE.read_bytes())
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({**spans[0], "spanId": ""})
    r = httpx.post(url, content=orjson.dumps(doc), headers={"content-type": "application/json", "x-api-key": token})
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedSpans"] == 1

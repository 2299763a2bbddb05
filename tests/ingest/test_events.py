"""POST /api/events against the real broker: mixed batches, auth, project from the key, limits."""

from __future__ import annotations

import gzip
import time
import uuid
from datetime import UTC, datetime

import httpx
import orjson

from ingest.auth import Authenticator
from schemas.settings import Settings
from schemas.topics import EVENTS
from tests.ingest.conftest import GatewayProc, make_gateway
from tests.support import read_topic


def now() -> str:
    return datetime.now(UTC).isoformat()


def llm(agent: str = "agent-1", **kw) -> dict:
    return {"agent_id": agent, "event_type": "llm_call", "provider": "openai", "model": "gpt-4o",
            "tokens": {"input": 1000, "output": 500}, "latency_ms": 1200, "status": 200, "timestamp": now(), **kw}


def test_mixed_batch_keeps_good_events_and_reports_bad_ones(gateway: GatewayProc, kafka_settings: Settings):
    token = gateway.key("p1")
    good_id = str(uuid.uuid4())
    events = [
        llm(event_id=good_id, project_id="someone-else"),             # project must come from the key
        {"agent_id": "agent-1", "type": "llm_call", "tokens_in": -5},  # bad field
        {"agent_id": "agent-2", "type": "error", "message": "boom", "error_type": "ValueError", "timestamp": now()},
        {"type": "heartbeat"},                                          # no agent_id
        {"agent_id": "agent-3", "type": "nonsense"},                    # unknown type
        "not an object",
        {"agent_id": "agent-3", "type": "score", "name": "helpfulness", "value": 0.9, "timestamp": now()},
        {"agent_id": "agent-4", "type": "heartbeat", "metadata": {"blob": "z" * 1_100_000}},  # over the topic limit
    ]
    r = httpx.post(f"{gateway.url}/api/events", json={"events": events}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["accepted"] == 3 and body["rejected"] == 5
    by_index = {e["index"]: e for e in body["errors"]}
    assert set(by_index) == {1, 3, 4, 5, 7}
    assert by_index[7]["errors"][0]["field"] == "event" and "too large" in by_index[7]["reason"]
    assert by_index[1]["errors"][0]["field"] == "tokens_in"
    assert by_index[3]["errors"][0]["field"] == "agent_id"
    assert by_index[4]["errors"][0]["field"] == "type"
    assert by_index[5]["errors"][0]["field"] == "event"

    msgs = read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(EVENTS), expect=3)
    assert len(msgs) == 3
    docs = {orjson.loads(m.value())["type"]: m for m in msgs}
    call = orjson.loads(docs["llm_call"].value())
    assert call["event_id"] == good_id
    assert call["project_id"] == "p1"
    assert docs["llm_call"].key() == b"p1/agent-1"
    assert dict(docs["llm_call"].headers()) == {"event_type": b"llm_call", "schema_version": b"1",
                                                 "content-type": b"application/json"}
    # gpt-4o: 2.50 $/M input, 10.00 $/M output
    assert abs(call["cost_usd"] - (1000 * 2.5 + 500 * 10.0) / 1e6) < 1e-9
    assert call["tokens_in"] == 1000 and call["status_code"] == 200 and call["received_at"]
    err = orjson.loads(docs["error"].value())
    assert uuid.UUID(err["event_id"]) and err["project_id"] == "p1" and docs["error"].key() == b"p1/agent-2"


def test_all_good_is_200_and_all_bad_is_400(gateway: GatewayProc, kafka_settings: Settings):
    token = gateway.key("p1")
    r = httpx.post(f"{gateway.url}/api/events", json={"events": [llm(), llm("agent-2")]}, headers={"x-api-key": token})
    assert r.status_code == 200 and r.json()["accepted"] == 2
    r = httpx.post(f"{gateway.url}/api/events", json={"events": [{"type": "llm_call"}]}, headers={"x-api-key": token})
    assert r.status_code == 400 and r.json()["accepted"] == 0
    assert r.json()["errors"][0]["errors"][0]["field"] == "agent_id"
    r = httpx.post(f"{gateway.url}/api/events", content=b"{not json", headers={"x-api-key": token})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = httpx.post(f"{gateway.url}/api/events", json={"events": []}, headers={"x-api-key": token})
    assert r.status_code == 400 and "events" in r.json()["error"]
    assert len(read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(EVENTS))) == 2


def test_auth_failures_are_401_and_project_follows_the_key(gateway: GatewayProc, kafka_settings: Settings):
    url = f"{gateway.url}/api/events"
    payload = {"events": [llm()]}
    assert httpx.post(url, json=payload).status_code == 401
    assert httpx.post(url, json=payload, headers={"x-api-key": "sk-at-nope"}).status_code == 401
    assert httpx.post(url, json=payload, headers={"Authorization": "Basic abc"}).status_code == 401
    token, key = gateway.keys.create("p2")
    assert httpx.post(url, json={"events": [llm(project_id="p1")]}, headers={"x-api-key": token}).status_code == 200
    gateway.keys.revoke(key.id)
    time.sleep(Authenticator.CACHE_SECONDS + 0.3)  # verified keys are remembered that long
    assert httpx.post(url, json=payload, headers={"x-api-key": token}).status_code == 401
    msgs = read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(EVENTS))
    assert [m.key() for m in msgs] == [b"p2/agent-1"]
    assert orjson.loads(msgs[0].value())["project_id"] == "p2"


def test_rate_limit_per_key_is_429_with_retry_after(gateway: GatewayProc):
    limited = gateway.key("p1", rate_limit=10)
    other = gateway.key("p1")
    url = f"{gateway.url}/api/events"
    assert httpx.post(url, json={"events": [llm() for _ in range(8)]}, headers={"x-api-key": limited}).status_code == 200
    r = httpx.post(url, json={"events": [llm() for _ in range(5)]}, headers={"x-api-key": limited})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    # The other key has its own bucket (default 1000/min).
    assert httpx.post(url, json={"events": [llm() for _ in range(5)]}, headers={"x-api-key": other}).status_code == 200
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert "rate_limited_total 1.0" in metrics


def test_body_and_batch_limits_and_gzip(kafka_settings: Settings):
    gw = make_gateway(kafka_settings, AGENTTRACE_MAX_BODY_BYTES="20000", AGENTTRACE_MAX_BATCH_EVENTS="10")
    gw.start()
    try:
        token = gw.key("p1")
        url = f"{gw.url}/api/events"
        h = {"x-api-key": token}
        r = httpx.post(url, json={"events": [llm() for _ in range(11)]}, headers=h)
        assert r.status_code == 413 and "at most 10" in r.json()["error"]
        big = {"events": [llm(metadata={"pad": "x" * 25_000})]}
        assert httpx.post(url, json=big, headers=h).status_code == 413
        # gzip: compressed body accepted; a compressed body that inflates past the limit is refused.
        packed = gzip.compress(orjson.dumps({"events": [llm(metadata={"pad": "y" * 5000}) for _ in range(3)]}))
        r = httpx.post(url, content=packed, headers={**h, "content-encoding": "gzip", "content-type": "application/json"})
        assert r.status_code == 200 and r.json()["accepted"] == 3
        bomb = gzip.compress(orjson.dumps(big))
        assert len(bomb) < 20000
        r = httpx.post(url, content=bomb, headers={**h, "content-encoding": "gzip"})
        assert r.status_code == 413
        msgs = read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(EVENTS))
        assert len(msgs) == 3 and all(orjson.loads(m.value())["metadata"]["pad"] == "y" * 5000 for m in msgs)
    finally:
        gw.stop()


def test_health_and_metrics(gateway: GatewayProc):
    token = gateway.key("p1")
    assert httpx.get(f"{gateway.url}/readyz").json()["checks"]["kafka"]["status"] == "healthy"
    assert httpx.get(f"{gateway.url}/version").json()["service"] == "gateway"
    httpx.post(f"{gateway.url}/api/events", json={"events": [llm(), {"type": "x"}]}, headers={"x-api-key": token})
    text = httpx.get(f"{gateway.url}/metrics").text
    assert 'events_ingested_total{type="llm_call"} 1.0' in text
    assert 'events_rejected_total{reason="validation"} 1.0' in text
    assert 'http_requests_total{method="POST",path="/api/events",status="207"} 1.0' in text
    assert "http_request_duration_seconds_bucket" in text and "http_request_size_bytes" in text
    assert "kafka_producer_errors_total" in text

"""Agent registration/heartbeat events, and alert-rule edits on the compacted rules topic."""

from __future__ import annotations

import httpx
import orjson

from schemas.alerts import AlertRule
from schemas.settings import Settings
from schemas.topics import ALERT_RULES, EVENTS
from tests.ingest.conftest import GatewayProc
from tests.support import read_topic


def test_register_and_heartbeat_publish_heartbeat_events(gateway: GatewayProc, kafka_settings: Settings):
    token = gateway.key("p1")
    h = {"x-api-key": token}
    r = httpx.post(f"{gateway.url}/api/agents/register", json={"agent_id": "bot-1", "name": "Bot One",
                                                              "metadata": {"team": "support"}}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "registered"
    assert httpx.post(f"{gateway.url}/api/agents/heartbeat", json={"agent_id": "bot-1"}, headers=h).status_code == 200
    r = httpx.post(f"{gateway.url}/api/agents/heartbeat", json={"agent_id": "bot-1", "status": "degraded"}, headers=h)
    assert r.status_code == 200
    r = httpx.post(f"{gateway.url}/api/agents/register", json={"name": "no id"}, headers=h)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "agent_id"
    assert httpx.post(f"{gateway.url}/api/agents/heartbeat", json={"agent_id": "x"}).status_code == 401
    msgs = read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(EVENTS), expect=3)
    docs = [orjson.loads(m.value()) for m in msgs]
    assert all(d["type"] == "heartbeat" and d["project_id"] == "p1" for d in docs)
    assert all(m.key() == b"p1/bot-1" and dict(m.headers())["event_type"] == b"heartbeat" for m in msgs)
    reg = next(d for d in docs if d["status"] == "registered")
    assert reg["name"] == "Bot One" and reg["metadata"] == {"team": "support"}
    assert sorted(d["status"] for d in docs) == ["degraded", "ok", "registered"]


def rules_on_topic(settings: Settings) -> list:
    return read_topic(settings.kafka_bootstrap, settings.topic(ALERT_RULES))


def test_alert_rule_lifecycle(gateway: GatewayProc, kafka_settings: Settings):
    h = {"x-api-key": gateway.key("p1")}
    url = f"{gateway.url}/api/alerts"
    r = httpx.post(url, json={"type": "error_rate", "threshold": 10, "window_minutes": 15, "project_id": "evil",
                              "webhook_url": "http://127.0.0.1:9/hook", "email_to": ["ops@example.com"]}, headers=h)
    assert r.status_code == 201, r.text
    rule = r.json()
    rid = rule["id"]
    assert rule["project_id"] == "p1" and rule["enabled"] is True
    r = httpx.post(url, json={"type": "agent_down", "duration_minutes": 3, "agent_id": "bot-1"}, headers=h)
    assert r.status_code == 201
    down_id = r.json()["id"]

    r = httpx.put(f"{url}/{rid}", json={"threshold": 25, "name": "errors"}, headers=h)
    assert r.status_code == 200 and r.json()["threshold"] == 25 and r.json()["window_minutes"] == 15
    r = httpx.patch(f"{url}/{rid}/toggle", headers=h)
    assert r.status_code == 200 and r.json()["enabled"] is False
    r = httpx.patch(f"{url}/{rid}/toggle", json={"enabled": False}, headers=h)
    assert r.status_code == 200 and r.json()["enabled"] is False
    r = httpx.patch(f"{url}/{rid}/toggle", headers=h)
    assert r.json()["enabled"] is True
    assert httpx.delete(f"{url}/{down_id}", headers=h).status_code == 200
    assert httpx.delete(f"{url}/{down_id}", headers=h).status_code == 404

    msgs = rules_on_topic(kafka_settings)
    assert [m.key().decode() for m in msgs] == [rid, down_id, rid, rid, rid, rid, down_id]
    assert msgs[-1].value() is None  # tombstone
    last = AlertRule.model_validate_json(msgs[-2].value())
    assert last.id == rid and last.project_id == "p1" and last.threshold == 25 and last.enabled is True
    assert last.name == "errors" and str(last.webhook_url) == "http://127.0.0.1:9/hook"
    assert last.email_to == ["ops@example.com"]
    assert last.created_at.isoformat() == rule["created_at"].replace("Z", "+00:00")


def test_alert_rule_validation_and_project_isolation(gateway: GatewayProc, kafka_settings: Settings):
    h1 = {"x-api-key": gateway.key("p1")}
    h2 = {"x-api-key": gateway.key("p2")}
    url = f"{gateway.url}/api/alerts"
    cases = [
        ({"type": "budget"}, "threshold"),
        ({"type": "error_rate", "threshold": 150}, "threshold"),
        ({"type": "latency_p95", "threshold": -1}, "threshold"),
        ({"type": "nope", "threshold": 1}, "type"),
        ({"type": "budget", "threshold": 5, "webhook_url": "not a url"}, "webhook_url"),
        ({"type": "budget", "threshold": 5, "email_to": ["bad"]}, "email_to.0"),
        ({"type": "agent_down", "duration_minutes": 0}, "duration_minutes"),
        ({"type": "budget", "threshold": 5, "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        r = httpx.post(url, json=body, headers=h1)
        assert r.status_code == 400, (body, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.json())
    r = httpx.post(url, json={"type": "budget", "threshold": 5}, headers=h1)
    rid = r.json()["id"]
    # Another project's key cannot see, change, toggle or delete it.
    assert httpx.put(f"{url}/{rid}", json={"threshold": 1}, headers=h2).status_code == 404
    assert httpx.patch(f"{url}/{rid}/toggle", headers=h2).status_code == 404
    assert httpx.delete(f"{url}/{rid}", headers=h2).status_code == 404
    assert httpx.put(f"{url}/{rid}", json={"threshold": -3}, headers=h1).status_code == 400
    assert httpx.put(f"{url}/{rid}", json={"threshold": 6}, headers={}).status_code == 401
    msgs = rules_on_topic(kafka_settings)
    assert len(msgs) == 1 and AlertRule.model_validate_json(msgs[0].value()).threshold == 5


def test_rules_survive_a_gateway_restart(gateway: GatewayProc, kafka_settings: Settings):
    """The gateway keeps no rule state of its own: a new process reads the compacted topic."""
    h = {"x-api-key": gateway.key("p1")}
    rid = httpx.post(f"{gateway.url}/api/alerts", json={"type": "budget", "threshold": 5}, headers=h).json()["id"]
    gateway.stop()
    gateway.start()
    r = httpx.patch(f"{gateway.url}/api/alerts/{rid}/toggle", headers=h)
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["threshold"] == 5


def test_two_worker_processes_share_rules_and_metrics(kafka_settings: Settings):
    """With several workers, an edit may land on a worker that did not create the rule."""
    from tests.ingest.conftest import make_gateway

    gw = make_gateway(kafka_settings, AGENTTRACE_GATEWAY_WORKERS="2")
    gw.start()
    try:
        h = {"x-api-key": gw.key("p1")}
        url = f"{gw.url}/api/alerts"
        for _ in range(3):
            # fresh connections spread over both workers
            rid = httpx.post(url, json={"type": "latency_p95", "threshold": 800}, headers=h).json()["id"]
            for enabled in (False, True, False):
                r = httpx.patch(f"{url}/{rid}/toggle", headers=h)
                assert r.status_code == 200 and r.json()["enabled"] is enabled
            assert httpx.delete(f"{url}/{rid}", headers=h).status_code == 200
        for _ in range(6):
            assert httpx.post(f"{gw.url}/api/events", json={"events": [{"agent_id": "a", "type": "heartbeat"}]},
                              headers=h).status_code == 200
        text = httpx.get(f"{gw.url}/metrics").text
        assert 'events_ingested_total{type="heartbeat"} 6.0' in text
        assert len(read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(EVENTS), expect=6)) == 6
    finally:
        gw.stop()

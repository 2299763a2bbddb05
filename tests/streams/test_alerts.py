"""Alerts from the live dataflow (a real `agenttrace stream` process and the real broker): each rule
type fires once and resolves once, with rules created, changed and deleted while it runs."""

from __future__ import annotations

import re
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import orjson

from schemas.alerts import Alert, AlertRule
from schemas.events import Heartbeat, LlmCall
from schemas.topics import ALERT_RULES, ALERTS
from tests.streams.helpers import StreamProcess, produce, produce_raw, read_after
from tests.support import wait_for


def put_rule(settings, rule: AlertRule | None, rule_id: str) -> None:
    produce_raw(settings, settings.topic(ALERT_RULES), rule_id.encode(), rule.model_dump_json().encode() if rule else None)


def calls(agent: str, t: datetime, n: int, *, errors: int = 0, latency: float = 100.0, cost: float = 0.0) -> list:
    # Failures first, so the rate seen by any batch split is at least the final one.
    return [LlmCall(timestamp=t + timedelta(milliseconds=i), project_id="p1", agent_id=agent, provider="openai",
                    model="gpt-4o", latency_ms=latency, status_code=500 if i < errors else 200, cost_usd=cost)
            for i in range(n)]


def alerts_now(settings) -> list[Alert]:
    return [Alert.model_validate_json(m.value()) for m in read_after(settings, settings.topic(ALERTS))]


def test_each_alert_type_fires_once_and_resolves_once(kafka_settings):
    s = kafka_settings
    proc = StreamProcess(s)
    try:
        wait_for(lambda: _up(proc), timeout=30, what="stream /livez")
        rules = {
            "r-err": AlertRule(id="r-err", project_id="p1", type="error_rate", threshold=10, window_minutes=15,
                               min_calls=10, webhook_url="http://127.0.0.1:9/hook", email_to=["ops@example.com"]),
            "r-lat": AlertRule(id="r-lat", project_id="p1", type="latency_p95", threshold=1000, window_minutes=5),
            "r-bud": AlertRule(id="r-bud", project_id="p1", type="budget", threshold=1.0, agent_id="spender"),
            "r-down": AlertRule(id="r-down", project_id="p1", type="agent_down", agent_id="quiet", duration_minutes=3),
        }
        for rid, rule in rules.items():
            put_rule(s, rule, rid)
        t1 = datetime.now(UTC) - timedelta(minutes=10)
        produce(s, calls("bad", t1, 20, errors=5) + calls("slow", t1, 12, latency=2000.0)
                + calls("spender", t1, 2, cost=0.6)
                + [Heartbeat(timestamp=t1, project_id="p1", agent_id="quiet")])

        def fired() -> list[Alert]:
            got = alerts_now(s)
            return got if len({a.rule_id for a in got if a.state == "fired"}) == 4 else []

        got = wait_for(fired, timeout=30, what="four alerts fired")
        by_rule = {a.rule_id: a for a in got}
        err = by_rule["r-err"]
        assert err.subject == "bad" and err.rule_type == "error_rate" and not err.replay
        assert re.fullmatch(r'Agent "bad" error rate is \d+\.\d% \(\d+/\d+\) over the last 15m \(threshold: 10%\)',
                            err.message), err.message
        assert err.webhook_url == "http://127.0.0.1:9/hook" and err.email_to == ["ops@example.com"]
        assert by_rule["r-lat"].subject == "slow" and by_rule["r-lat"].value > 1000
        assert by_rule["r-bud"].subject == "spender" and abs(by_rule["r-bud"].value - 1.2) < 1e-9
        assert by_rule["r-bud"].message == 'Agent "spender" spend today is $1.20 (threshold: $1)'
        assert by_rule["r-down"].subject == "quiet" and "no heartbeat" in by_rule["r-down"].message

        # Clear every condition: healthy calls, fast calls later on, a higher budget, a heartbeat.
        t2 = datetime.now(UTC) - timedelta(minutes=2)
        produce(s, calls("bad", t1 + timedelta(seconds=1), 100) + calls("slow", t2, 12, latency=50.0)
                + [Heartbeat(timestamp=t2, project_id="p1", agent_id="quiet")])
        put_rule(s, rules["r-bud"].model_copy(update={"threshold": 100.0}), "r-bud")

        def resolved() -> list[Alert]:
            got = alerts_now(s)
            return got if len({a.rule_id for a in got if a.state == "resolved"}) == 4 else []

        wait_for(resolved, timeout=30, what="four alerts resolved")
        for rid in rules:  # deleted while running; nothing fires afterwards
            put_rule(s, None, rid)
        time.sleep(4)  # longer than agent_down's 3 (test) minutes of silence
        final = alerts_now(s)
        for rid in rules:
            states = [a.state for a in sorted((a for a in final if a.rule_id == rid), key=lambda a: a.timestamp)]
            assert states == ["fired", "resolved"], (rid, states)
        assert len({a.alert_id for a in final}) == len(final) == 8
        assert re.match(r'Resolved: Agent "bad" error rate is 4\.2% \(5/120\)', next(
            a for a in final if a.rule_id == "r-err" and a.state == "resolved").message)
        assert proc.metric('alerts_emitted_total{rule_type="error_rate",state="fired"}') == 1
        assert proc.metric("stream_events_processed_total") == 148
        health = orjson.loads(urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/health", timeout=5).read())
        assert health["status"] == "healthy"
    finally:
        proc.kill()


def test_deleting_a_firing_rule_resolves_it(kafka_settings):
    s = kafka_settings
    proc = StreamProcess(s)
    try:
        wait_for(lambda: _up(proc), timeout=30, what="stream /livez")
        put_rule(s, AlertRule(id="r1", project_id="p1", type="budget", threshold=0.5, scope="project"), "r1")
        produce(s, calls("a", datetime.now(UTC) - timedelta(minutes=1), 1, cost=0.3)
                + calls("b", datetime.now(UTC) - timedelta(minutes=1), 1, cost=0.3))
        got = wait_for(lambda: alerts_now(s), timeout=30, what="project budget fired")
        assert got[0].subject == "p1" and got[0].agent_id is None and got[0].state == "fired"
        assert got[0].message == 'Project "p1" spend today is $0.60 (threshold: $0.5)'
        put_rule(s, None, "r1")
        got = wait_for(lambda: [a for a in alerts_now(s) if a.state == "resolved"], timeout=30, what="resolved")
        assert "rule deleted" in got[0].message
    finally:
        proc.kill()


def _up(proc: StreamProcess) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/livez", timeout=1).status == 200
    except OSError:
        return False

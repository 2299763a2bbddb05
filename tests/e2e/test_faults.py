"""Faults under load: the broker, the streams, the store (sinks + API + embedded ClickHouse) killed and
restarted one at a time, a webhook receiver that is down, hostile input. After all of it every event
the gateway acknowledged is in ClickHouse exactly once, rollups equal the acknowledged events, and
every service recovered by itself. Prints what was injected and what was checked."""

from __future__ import annotations

import gzip
import json
import os
import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from agenttrace import stack
from schemas.pricing import cost_usd, model_family
from schemas.rollups import Rollup
from schemas.settings import Settings
from schemas.topics import ROLLUPS
from tests.e2e.load import Load
from tests.e2e.pipeline import Pipeline
from tests.e2e.receivers import WebhookReceiver
from tests.e2e.test_pipeline import STREAM_ENV, chdb_totals
from tests.support import free_port, read_topic, wait_for


@pytest.fixture
def own_broker(tmp_path):
    port = free_port()
    s = Settings(home=tmp_path / "broker", kafka_port=port, kafka_controller_port=free_port(),
                 kafka_bootstrap=f"127.0.0.1:{port}")
    stack.up(s, progress=lambda *_: None)
    try:
        yield s
    finally:
        stack.down(s)


def all_ready(p: Pipeline) -> None:
    for name in list(p.procs):
        p.wait_ready(name, timeout=90)


def test_faults_under_load_lose_nothing_and_recover(tmp_path, own_broker):
    p = Pipeline(tmp_path / "pipeline", own_broker.kafka_bootstrap, extra_env=STREAM_ENV)
    table: list[tuple[str, str]] = []
    hook = WebhookReceiver()
    try:
        p.start()
        gw = httpx.Client(base_url=p.url("gateway"), headers=p.auth, timeout=10)
        assert gw.post("/api/alerts", json={"type": "error_rate", "threshold": 50, "window_minutes": 1,
                                            "min_calls": 3, "agent_id": "hooked", "webhook_url": hook.url}).status_code < 300
        load = Load(p.url("gateway"), p.auth)
        load.start()
        time.sleep(2)

        for name in ("streams", "store"):
            p.kill(name)
            time.sleep(3)
            p.restart(name)
            all_ready(p)
            what = "sinks + API + embedded ClickHouse" if name == "store" else "Bytewax dataflow"
            table.append((f"kill -9 {name} ({what}) for 3 s under load", "restarted; every service ready again"))

        pid = stack.read_pid(stack.paths(own_broker))
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: load.statuses.get(503, 0) + load.statuses.get(0, 0) > 0, timeout=30,
                 what="the gateway to refuse while the broker is down")
        time.sleep(3)
        stack.up(own_broker, progress=lambda *_: None)
        all_ready(p)
        table.append(("kill -9 the Kafka broker for ~5 s under load",
                      f"gateway answered 503 ({load.statuses.get(503, 0)}x), never 2xx for unacked events; services recovered"))

        # A receiver that is down for the first attempts: the sinks retry and deliver once.
        hook.up = False
        bad = [{"event_type": "llm_call", "agent_id": "hooked", "provider": "openai", "model": "gpt-4o",
                "tokens_in": 10, "tokens_out": 1, "status_code": 500, "event_id": str(uuid.uuid4()),
                "timestamp": datetime.now(UTC).isoformat()} for _ in range(5)]
        assert gw.post("/api/events", json={"events": bad}).status_code == 200
        extra = {e["event_id"]: e for e in bad}
        # Up again right after the first refused attempt, so a retry (not the first try) delivers it.
        wait_for(lambda: hook.refused > 0, timeout=60, what="a delivery attempt while the receiver is down")
        hook.up = True
        wait_for(lambda: any(h.get("agent_id") == "hooked" for h in hook.received), timeout=60,
                 what="the webhook after the receiver came back")
        time.sleep(2)  # room for a duplicate to show up, if there were one
        fired = [h for h in hook.received if h.get("agent_id") == "hooked" and h.get("state", "fired") == "fired"]
        assert len(fired) == 1, fired
        table.append(("webhook receiver answering 503 until the first attempt",
                      f"{hook.refused} attempt(s) refused, then delivered by a retry, exactly once"))

        hostile = []
        huge = b'{"events": [' + b"1," * (11 * 1024 * 1024 // 2) + b"1]}"
        hostile.append(("11 MB body", gw.post("/api/events", content=huge, headers={"content-type": "application/json"})))
        hostile.append(("invalid UTF-8", gw.post("/api/events", content=b'{"events":[{"agent_id":"\xff\xfe"}]}',
                                                headers={"content-type": "application/json"})))
        nested = '{"a":' * 5000 + "1" + "}" * 5000
        hostile.append(("JSON nested 5000 deep", gw.post("/api/events", content=(
            '{"events":[{"event_type":"heartbeat","agent_id":"x","metadata":' + nested + "}]}").encode(),
            headers={"content-type": "application/json"})))
        hostile.append(("huge number", gw.post("/api/events", json={"events": [
            {"event_type": "llm_call", "agent_id": "x", "tokens_in": 10**40}]})))
        hostile.append(("wrong types", gw.post("/api/events", json={"events": [
            {"event_type": "llm_call", "agent_id": ["x"], "latency_ms": "slow"}]})))
        hostile.append(("gzip bomb-ish body", gw.post("/api/events", content=gzip.compress(b"[" * 20_000_000),
                                                    headers={"content-type": "application/json", "content-encoding": "gzip"})))
        for label, resp in hostile:
            assert 400 <= resp.status_code < 500, (label, resp.status_code, resp.text[:300])
            assert "Traceback" not in resp.text
        assert hostile[0][1].status_code == 413
        assert "tokens_in" in hostile[3][1].text and "agent_id" in hostile[4][1].text
        table.append(("oversized, invalid UTF-8, 5000-deep JSON, 1e40 tokens, wrong types, gzip of 20 MB",
                      "; ".join(f"{label} -> {resp.status_code}" for label, resp in hostile)))

        now = datetime.now(UTC).isoformat()
        tagged = 0
        for b in range(10):
            batch = [{"event_id": str(uuid.uuid4()), "event_type": "llm_call", "agent_id": "tags",
                      "provider": "openai", "model": "gpt-4o-mini", "tokens_in": 5, "tokens_out": 5,
                      "status_code": 200, "timestamp": now, "tags": [f"tag-{b}-{i}"]} for i in range(1000)]
            r = gw.post("/api/events", json={"events": batch})
            assert r.status_code == 200, r.text[:300]
            extra.update({e["event_id"]: e for e in batch})
            tagged += len(batch)
        table.append(("10,000 events with 10,000 unique tag values", "all accepted and landed"))
        assert httpx.get(f"{p.url('gateway')}/readyz").status_code == 200

        load.stop()
        acked = {**load.acked, **extra}
        expected_calls = len(acked)
        expected_cost = sum(cost_usd(e["provider"], model_family(e["provider"], e["model"]),
                                     e["tokens_in"], e["tokens_out"])[0] for e in acked.values())
        api = httpx.Client(base_url=p.url("store"), headers=p.auth, timeout=30)
        window = {"from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                  "to": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
        wait_for(lambda: api.get("/api/stats/summary", params=window).json().get("calls") == expected_calls,
                 timeout=180, interval=1, what=f"{expected_calls} acknowledged calls in the rollups")

        per_agent = Counter(e["agent_id"] for e in acked.values())
        latest: dict[str, Rollup] = {}
        for m in read_topic(p.settings.kafka_bootstrap, p.settings.topic(ROLLUPS)):
            r = Rollup.model_validate_json(m.value())
            if r.key() not in latest or r.version >= latest[r.key()].version:
                latest[r.key()] = r
        got = Counter()
        for r in latest.values():
            got[r.agent_id] += r.calls
        assert {a: n for a, n in got.items() if n} == dict(per_agent)
        assert sum(r.cost_usd for r in latest.values()) == pytest.approx(expected_cost, rel=1e-9)

        p.kill("store", sig=signal.SIGTERM)
        totals = chdb_totals(p, with_ids=True)
        assert totals["events"]["calls"] == expected_calls
        assert totals["events"]["uniq_ids"] == expected_calls
        assert set(totals["ids"]) == set(acked)
        assert totals["events"]["cost"] == pytest.approx(expected_cost, rel=1e-9)
        table.append(("after all faults", f"{expected_calls} acknowledged events: each in ClickHouse exactly once; "
                                          "rollups per agent equal the acknowledged events; cost equal"))
    finally:
        p.stop_all()
        print("\n| injected | checked |\n|---|---|")
        for injected, checked in table:
            print(f"| {injected} | {checked} |")
        print(json.dumps({"fault_table": table}))

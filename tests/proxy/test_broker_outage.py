"""Broker stopped during calls: calls still succeed, events are spooled and arrive after restart, in order, once.

Starts its OWN broker (never the shared dev broker) and stops it in `finally`.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from agenttrace import stack
from proxy.config import ProxySettings
from schemas.settings import Settings
from schemas.topics import EVENTS
from tests.proxy.conftest import SECRETS, in_process_proxy
from tests.proxy.fakes import FakeProvider, ServerThread
from tests.support import free_port, read_topic, wait_for


def test_broker_outage_spools_then_delivers(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(home=tmp_path / "home", kafka_port=port, kafka_controller_port=free_port(),
                        kafka_bootstrap=f"127.0.0.1:{port}", topic_prefix="outage.", topic_partitions=1,
                        proxy_port=free_port())
    fake = FakeProvider("openai")
    server = ServerThread(fake, fake.port).start()
    stack.up(settings, progress=lambda *_: None)
    proxy = None
    try:
        ps = ProxySettings(openai_base_url=fake.url, kafka_timeout_ms=1500, retry_max_seconds=1.0)
        app, proxy = in_process_proxy(settings, ps)
        client = httpx.Client(base_url=f"http://127.0.0.1:{settings.proxy_port}", timeout=10)
        expected = httpx.post(fake.url + "/v1/chat/completions", json={"model": "gpt-4o-mini"}).content
        topic = settings.topic(EVENTS)

        def call(i: int) -> None:
            r = client.post("/v1/chat/completions", json={"model": "gpt-4o-mini"},
                            headers={"authorization": f"Bearer {SECRETS['openai']}", "x-agenttrace-agent": "a1",
                                     "x-agenttrace-trace-id": f"t{i:02d}"})
            assert r.status_code == 200 and r.content == expected

        for i in range(3):
            call(i)
        assert len(read_topic(settings.kafka_bootstrap, topic, expect=3, timeout=20)) == 3

        stack.down(settings)
        for i in range(3, 13):
            call(i)  # the agent never notices the outage
        wait_for(lambda: app.publisher.spool.depth == 10, timeout=30, what="10 events spooled")
        assert list((settings.home_dir / "spool").glob("seg-*.jsonl"))
        metrics = client.get("/metrics").text
        assert "proxy_spool_depth 10.0" in metrics
        ready = client.get("/readyz")
        assert ready.status_code == 200  # still serving while spooling

        stack.up(settings, progress=lambda *_: None)
        wait_for(lambda: app.publisher.spool.depth == 0, timeout=60, what="spool drained")
        msgs = read_topic(settings.kafka_bootstrap, topic, timeout=20)
        events = [orjson.loads(m.value()) for m in msgs]
        assert [e["trace_id"] for e in events] == [f"t{i:02d}" for i in range(13)]  # in order, each once
        assert len({e["event_id"] for e in events}) == 13
        assert all(e["tokens_in"] == 12 and e["status_code"] == 200 for e in events)
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()
        stack.down(settings)

"""Broker stopped mid-stream: 503 with Retry-After within a bounded time, never a 2xx for lost events;
after the restart every event that got a 2xx is on the topic exactly once."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from agenttrace import stack
from schemas.settings import Settings
from schemas.topics import EVENTS
from tests.ingest.conftest import make_gateway
from tests.support import free_port, read_topic, wait_for

PUBLISH_TIMEOUT = 3


class Sender(threading.Thread):
    def __init__(self, url: str, token: str):
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.stop = threading.Event()
        self.results: list[tuple[int, float, list[str], str | None]] = []  # status, seconds, ids, retry-after

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                ids = [str(uuid.uuid4()) for _ in range(20)]
                events = [{"event_id": i, "agent_id": f"a{n % 3}", "type": "llm_call", "model": "gpt-4o",
                           "tokens_in": 10, "tokens_out": 5, "timestamp": datetime.now(UTC).isoformat()}
                          for n, i in enumerate(ids)]
                t = time.monotonic()
                try:
                    r = client.post(self.url, json={"events": events}, headers={"x-api-key": self.token})
                    status, retry = r.status_code, r.headers.get("Retry-After")
                except httpx.HTTPError:
                    status, retry = -1, None
                self.results.append((status, time.monotonic() - t, ids, retry))
                time.sleep(0.02)

    def count(self, status: int) -> int:
        return sum(1 for r in self.results if r[0] == status)


def test_broker_outage_gives_503_and_loses_nothing_acknowledged(tmp_path: Path):
    port, ctrl = free_port(), free_port()
    s = Settings(home=tmp_path / "home", kafka_port=port, kafka_controller_port=ctrl,
                 kafka_bootstrap=f"127.0.0.1:{port}", topic_prefix="fault.", topic_partitions=3)
    stack.up(s, progress=lambda *_: None)
    gw = make_gateway(s, AGENTTRACE_GATEWAY_PUBLISH_TIMEOUT=str(PUBLISH_TIMEOUT))
    sender = None
    try:
        gw.start()
        sender = Sender(f"{gw.url}/api/events", gw.key("p1"))
        sender.start()
        wait_for(lambda: sender.count(200) >= 5, timeout=30, what="first acknowledged batches")
        stack.down(s)
        wait_for(lambda: sender.count(503) >= 2, timeout=60, what="503 while the broker is down")
        r = httpx.get(f"{gw.url}/readyz", timeout=10)
        assert r.status_code == 503
        stack.up(s, progress=lambda *_: None)
        before = len(sender.results)
        wait_for(lambda: any(x[0] == 200 for x in sender.results[before:]), timeout=60, what="2xx after restart")
        n = len(sender.results)
        wait_for(lambda: sum(1 for x in sender.results[n:] if x[0] == 200) >= 5, timeout=30, what="steady 2xx")
        sender.stop.set()
        sender.join(timeout=40)
        assert not sender.is_alive()

        statuses = Counter(r[0] for r in sender.results)
        slowest_503 = max((r[1] for r in sender.results if r[0] == 503), default=0.0)
        print(f"statuses {dict(statuses)}, slowest 503 after {slowest_503:.2f}s")
        assert set(statuses) <= {200, 503}, statuses  # never a hang, never another answer
        for status, seconds, _, retry in sender.results:
            if status == 503:
                assert retry is not None and int(retry) > 0
                assert seconds <= PUBLISH_TIMEOUT + 5, seconds  # bounded, no hang (slack for a loaded machine)
        acked = [i for status, _, ids, _ in sender.results if status == 200 for i in ids]
        # Read to the end: 503-answered events may be there too (at-least-once), so no count to wait for.
        msgs = read_topic(s.kafka_bootstrap, s.topic(EVENTS), timeout=30)
        on_topic = Counter(orjson.loads(m.value())["event_id"] for m in msgs)
        missing = [i for i in acked if on_topic[i] == 0]
        duplicated = [i for i in acked if on_topic[i] > 1]
        assert not missing, f"{len(missing)} acknowledged events lost"
        assert not duplicated, f"{len(duplicated)} acknowledged events duplicated"
        assert statuses[200] >= 10 and statuses[503] >= 2
    finally:
        if sender is not None:
            sender.stop.set()
        gw.stop()
        stack.down(s)

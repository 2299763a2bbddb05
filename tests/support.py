"""Helpers shared by tests: free ports, reading a topic back, waiting for a condition."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_topic(bootstrap: str, topic: str, expect: int | None = None, timeout: float = 20.0) -> list[Any]:
    """Every message of `topic` from the beginning (confluent Message objects).

    With `expect`, waits until at least that many are there (or the timeout passes);
    without it, reads up to the end offsets seen at the start.
    """
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-reader-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, 0) for p in sorted(md.partitions)]
        c.assign(parts)
        ends = {p.partition: c.get_watermark_offsets(p, timeout=10)[1] for p in parts}
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        done: dict[int, int] = {p: 0 for p in ends}
        while time.monotonic() < deadline:
            if expect is None and all(done[p] >= ends[p] for p in ends):
                break
            if expect is not None and len(out) >= expect:
                break
            msg = c.poll(0.2)
            if msg is None or msg.error():
                continue
            out.append(msg)
            done[msg.partition()] = msg.offset() + 1
        return out
    finally:
        c.close()


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

"""Shared pieces of the sink tests: run the sinks in this process, produce, wait asynchronously."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer

from agenttrace.clickhouse import ClickHouse
from schemas.settings import Settings
from sinks.config import SinkSettings
from sinks.runner import serve

FAST = SinkSettings(sink_batch_rows=5000, sink_batch_seconds=0.2, sink_backoff_max_seconds=0.5,
                    delivery_retry_delays=[0.2, 0.4, 0.8], webhook_secret="test-secret", webhook_timeout_seconds=2)


def now_minus(minutes: float = 0) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


def produce(settings: Settings, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5})
    for key, value in records:
        while True:
            try:
                p.produce(settings.topic(topic), value, key)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(30) == 0


@contextlib.asynccontextmanager
async def running_sinks(settings: Settings, client: ClickHouse, sink: SinkSettings = FAST) -> AsyncIterator[asyncio.Task]:
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, sink=sink, client=client))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def until(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(cond)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def scalar(client: ClickHouse, sql: str) -> Any:
    row = client.query(sql.replace("{db}", client.database))[0]
    return next(iter(row.values()))

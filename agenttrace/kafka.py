"""Kafka plumbing every publisher shares: producer settings and how an event becomes a record."""

from __future__ import annotations

import functools
from typing import Any

from schemas.events import SCHEMA_VERSION, EventBase
from schemas.settings import Settings
from schemas.topics import event_key

# acks=all + idempotence: a send that resolves is on every in-sync replica exactly once.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "compression_type": "lz4",
    "linger_ms": 5,
    "max_batch_size": 1024 * 1024,
    "request_timeout_ms": 10_000,
}


def make_producer(settings: Settings, **overrides: Any):
    """An aiokafka producer with the pipeline's delivery guarantees (start() it yourself)."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **{**PRODUCER_DEFAULTS, **overrides})


@functools.cache
def event_headers(event_type: str) -> list[tuple[str, bytes]]:
    """One header list per event type, shared by every record of that type: producers only read it."""
    return [("event_type", event_type.encode()), ("schema_version", SCHEMA_VERSION.encode()),
            ("content-type", b"application/json")]


def event_record(event: EventBase) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of an event on `agenttrace.events.v1`."""
    return event_key(event.project_id, event.agent_id), event.to_json(), event_headers(event.type)

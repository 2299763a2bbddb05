"""Dead-letter topic: the original key and bytes, the reason in headers, counted. Nothing is dropped silently."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import Producer

from schemas.settings import Settings
from schemas.topics import DLQ
from sinks.metrics import DLQ_MESSAGES

log = logging.getLogger("sinks.dlq")

Headers = Sequence[tuple[str, bytes | str]]


class DeadLetters:
    def __init__(self, settings: Settings):
        self.topic = settings.topic(DLQ)
        self._p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all",
                            "enable.idempotence": True, "linger.ms": 5})
        self._errors: list[str] = []

    def send(self, key: bytes | None, value: bytes | None, reason: str, error: str, *, source_topic: str,
             partition: int = -1, offset: int = -1, headers: Headers | None = None) -> None:
        hdrs: list[tuple[str, bytes | str]] = [
            ("reason", reason), ("error", error[:2000]), ("source_topic", source_topic),
            ("source_partition", str(partition)), ("source_offset", str(offset)), ("service", "sinks"),
        ]
        hdrs += [(f"original.{k}", v) for k, v in (headers or [])]
        self._p.produce(self.topic, value, key, headers=hdrs, on_delivery=self._done)
        self._p.poll(0)
        DLQ_MESSAGES.labels(reason).inc()
        log.warning("sent to dlq", extra={"fields": {"reason": reason, "error": error[:300], "topic": source_topic,
                                                      "partition": partition, "offset": offset}})

    def _done(self, err, msg) -> None:
        if err is not None:
            self._errors.append(str(err))

    def flush(self, timeout: float = 30.0) -> None:
        """Block until every dead letter is on the broker; raises if one was refused (caller must not commit)."""
        left = self._p.flush(timeout)
        if left or self._errors:
            errors, self._errors = self._errors, []
            raise RuntimeError(f"dead-letter produce failed ({left} pending): {errors[:3]}")

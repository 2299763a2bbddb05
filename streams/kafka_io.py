"""Kafka sources and sink for the dataflows (confluent-kafka under Bytewax's partitioned I/O).

The events source is one Bytewax partition per Kafka partition; its resume state is the next
offset, so Bytewax recovery restarts each partition exactly where the last snapshot was taken.
Each poll is emitted as ONE item (a batch of raw records) to keep per-event overhead low.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from streams import metrics
from streams.routing import partition_key, partition_of

log = logging.getLogger("streams.kafka")

# One raw record: (key, value, offset). No headers: turning them into Python objects was a third
# of the process's CPU, and only a dead letter used them; it names topic/partition/offset instead.
Raw = tuple[bytes | None, bytes | None, int]
# Output record: (topic, key, value, headers)
Record = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]


def _consumer(bootstrap: str, **extra: Any) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "agenttrace-streams",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "enable.partition.eof": False, "fetch.wait.max.ms": 50, **extra})


def partitions(bootstrap: str, topic: str) -> list[int]:
    c = _consumer(bootstrap)
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        if md.error is not None:
            raise KafkaException(md.error)
        return sorted(md.partitions)
    finally:
        c.close()


def offsets_at(bootstrap: str, topic: str, when: datetime | None) -> dict[int, int]:
    """Per partition, the first offset whose log time is >= `when` (None: the current end)."""
    c = _consumer(bootstrap)
    try:
        parts = partitions(bootstrap, topic)
        out: dict[int, int] = {}
        if when is None:
            for p in parts:
                out[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            return out
        ms = int(when.timestamp() * 1000)
        found = c.offsets_for_times([TopicPartition(topic, p, ms) for p in parts], timeout=10)
        for tp in found:
            # -1: no record at or after that time, so start at the end.
            out[tp.partition] = tp.offset if tp.offset >= 0 else \
                c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
        return out
    finally:
        c.close()


class _EventsPartition(StatefulSourcePartition[tuple[str, list[Raw]], int]):
    def __init__(self, bootstrap: str, topic: str, part: int, key: str, start: int, end: int | None, batch: int):
        self.topic, self.part, self.key, self.end, self.batch = topic, part, key, end, batch
        self.consumer = _consumer(bootstrap)
        if start < 0:  # earliest retained
            start = self.consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10)[0]
        self.next_offset = start
        self.consumer.assign([TopicPartition(topic, part, start)])
        self._lag_at = 0.0

    def next_batch(self) -> list[tuple[str, list[Raw]]]:
        if self.end is not None and self.next_offset >= self.end:
            raise StopIteration
        msgs = self.consumer.consume(self.batch, 0.05)
        out: list[Raw] = []
        append, end = out.append, self.end
        for m in msgs:
            if m.error() is not None:
                log.warning("kafka error", extra={"fields": {"error": str(m.error())}})
                continue
            off = m.offset()
            if end is not None and off >= end:
                break
            append((m.key(), m.value(), off))
        if out:
            self.next_offset = out[-1][2] + 1
        self._report_lag()
        return [(self.key, (str(self.part), out))] if out else []

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at < 5:
            return
        self._lag_at = now
        try:
            high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, self.part), timeout=1)[1]
            metrics.CONSUMER_LAG.labels(self.topic, str(self.part)).set(max(0, high - self.next_offset))
        except KafkaException:
            pass

    def snapshot(self) -> int:
        return self.next_offset

    def close(self) -> None:
        self.consumer.close()


class EventsSource(FixedPartitionedSource[tuple[str, list[Raw]], int]):
    """The events topic. `start`/`end`: offsets per partition (replay); default earliest, unbounded."""

    def __init__(self, bootstrap: str, topic: str, start: dict[int, int] | None = None,
                 end: dict[int, int] | None = None, batch_size: int = 5000, workers: int = 1):
        self.bootstrap, self.topic, self.start, self.end, self.batch_size = bootstrap, topic, start, end, batch_size
        self.workers = workers

    def list_parts(self) -> list[str]:
        # Named by routing key: Bytewax places part and window state on the same worker, spread evenly.
        return [partition_key(p, self.workers) for p in partitions(self.bootstrap, self.topic)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _EventsPartition:
        p = partition_of(for_part)
        start = resume_state if resume_state is not None else (self.start or {}).get(p, -1)
        end = None if self.end is None else self.end.get(p, 0)
        return _EventsPartition(self.bootstrap, self.topic, p, for_part, start, end, self.batch_size)


class _RulesPartition(StatefulSourcePartition[tuple[str, tuple[int, bytes | None]], None]):
    def __init__(self, bootstrap: str, topic: str):
        self.consumer = _consumer(bootstrap)
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

    def next_batch(self) -> list[tuple[str, tuple[int, bytes | None]]]:
        out = []
        for m in self.consumer.consume(500, 0.05):
            if m.error() is None and m.key() is not None:
                out.append((m.key().decode(), (m.offset(), m.value())))
        return out

    def next_awake(self) -> datetime | None:
        return None

    def snapshot(self) -> None:
        # Always re-read the compacted topic; the alert stage ignores records it already applied.
        return None


class RulesSource(FixedPartitionedSource[tuple[str, tuple[int, bytes | None]], None]):
    """The compacted rules topic (one partition), read from the beginning: (rule id, (offset, value))."""

    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap, self.topic = bootstrap, topic

    def list_parts(self) -> list[str]:
        return ["rules"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _RulesPartition:
        return _RulesPartition(self.bootstrap, self.topic)


def read_rules(bootstrap: str, topic: str, timeout: float = 10.0) -> list[tuple[str, int, bytes | None]]:
    """Every record of the rules topic up to its current end (for replay)."""
    c = _consumer(bootstrap)
    try:
        tp = TopicPartition(topic, 0, OFFSET_BEGINNING)
        end = c.get_watermark_offsets(tp, timeout=10)[1]
        c.assign([tp])
        out: list[tuple[str, int, bytes | None]] = []
        deadline = time.monotonic() + timeout
        pos = 0
        while pos < end and time.monotonic() < deadline:
            for m in c.consume(500, 0.2):
                if m.error() is None:
                    pos = m.offset() + 1
                    if m.key() is not None:
                        out.append((m.key().decode(), m.offset(), m.value()))
        return out
    finally:
        c.close()


class _ProducerPartition(StatelessSinkPartition[Record]):
    def __init__(self, bootstrap: str):
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                  "compression.type": "lz4", "linger.ms": 5,
                                  "message.timeout.ms": 0})  # 0: retry until the broker is back
        self.failed: list[str] = []

    def _done(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))

    def write_batch(self, items: list[Record]) -> None:
        for topic, key, value, headers in items:
            while True:
                try:
                    self.producer.produce(topic, value, key, headers=headers, on_delivery=self._done)
                    break
                except BufferError:
                    self.producer.poll(0.05)
        # Delivered before the epoch can close, so a snapshot never covers output that is not on the
        # broker; while the broker is away this blocks (and the source stops reading) instead of dropping.
        while self.producer.flush(10) > 0 and not self.failed:
            log.warning("waiting for the broker to take the dataflow's output")
        if self.failed:
            raise RuntimeError(f"producing failed: {self.failed[:3]}")

    def close(self) -> None:
        self.producer.flush(30)


class ProducerSink(DynamicSink[Record]):
    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProducerPartition:
        return _ProducerPartition(self.bootstrap)

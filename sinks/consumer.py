"""The landing loop every ClickHouse sink shares: batch by size and time, insert, then commit.

Offsets are committed only after the batch is in ClickHouse (and its dead letters on the broker),
so a crash redelivers rather than loses; the tables are Replacing engines keyed by the message
identity and every insert carries a deduplication token naming its offset ranges, so a redelivered
batch is invisible to readers (FINAL / argMax) and an identical retry is dropped by ClickHouse.

ClickHouse down -> the loop stops consuming and retries the same batch with backoff; lag grows,
nothing is skipped. A data error (ClickHouse refuses the rows) is narrowed down by bisection and
only the refused messages go to the DLQ.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from agenttrace.clickhouse import ClickHouse
from schemas.settings import Settings
from sinks.config import SinkSettings
from sinks.dlq import DeadLetters
from sinks.metrics import JOB_DURATION, JOBS, QUEUE_DEPTH, consumer_lag
from sinks.rows import Poison

log = logging.getLogger("sinks.consumer")

# ClickHouse error codes meaning "these rows are bad", as opposed to "ClickHouse is unwell".
_DATA_ERRORS = ("CANNOT_PARSE", "Cannot parse", "INCORRECT_DATA", "TYPE_MISMATCH", "CANNOT_READ",
                "Cannot read", "ILLEGAL_", "VALUE_IS_OUT_OF_RANGE", "UNKNOWN_ELEMENT", "NOT_IMPLEMENTED",
                "INCORRECT_QUERY", "SYNTAX_ERROR", "TOO_LARGE_STRING_SIZE", "CANNOT_CONVERT_TYPE")


def is_data_error(exc: BaseException) -> bool:
    text = str(exc)
    return any(code in text for code in _DATA_ERRORS)


class Handler(Protocol):
    """What a sink adds to the loop: decode one message, write decoded items (may raise)."""

    name: str

    def decode(self, msg: Message) -> Any: ...
    def write(self, client: ClickHouse, items: list[Any], token: str) -> None: ...
    def on_assign(self) -> None: ...


_DONE: Future = Future()
_DONE.set_result(True)  # a batch whose messages all went to the DLQ: nothing to insert


def batch_token(topic: str, ranges: dict[int, list[int]]) -> str:
    """Names the batch by its offset ranges: the identical retry of a batch is dropped by ClickHouse."""
    return topic + "|" + ",".join(f"{p}:{lo}-{hi}" for p, (lo, hi) in sorted(ranges.items()))


def make_consumer(settings: Settings, group: str, **extra: Any) -> Consumer:
    return Consumer({
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": settings.topic_prefix + group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 50,
        "max.poll.interval.ms": 600_000,
        "session.timeout.ms": 30_000,
        "partition.assignment.strategy": "cooperative-sticky",
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        **extra,
    })


class LandingConsumer:
    def __init__(self, settings: Settings, sink: SinkSettings, topic: str, group: str, handler: Handler,
                 client: ClickHouse, dlq: DeadLetters, on_landed: Callable[[list[Message]], None] | None = None):
        self.settings, self.sink, self.topic, self.group = settings, sink, topic, group
        self.handler, self.client, self.dlq = handler, client, dlq
        self.on_landed = on_landed
        self._batch: list[Message] = []
        self._inflight: tuple[Future, list[Message], dict[int, list[int]], float] | None = None
        self._stop = threading.Event()
        self.landed = 0  # messages landed (or dead-lettered) and committed by this instance
        self.ready = threading.Event()

    # -- rebalance: land what is in flight, forget what we hold of partitions taken away (the new
    # owner re-reads them from the committed offset)
    def _revoked(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self._finish(consumer)
        gone = {p.partition for p in parts}
        self._batch = [m for m in self._batch if m.partition() not in gone]

    def _assigned(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.ready.set()
        self.handler.on_assign()

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        # One insert in flight while the next batch is read and decoded (chDB releases the GIL).
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"insert-{self.handler.name}")
        consumer = make_consumer(self.settings, self.group)
        consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)
        log.info("consuming", extra={"fields": {"topic": self.topic, "sink": self.handler.name}})
        try:
            while not stop.is_set():
                got = self._fill(consumer, stop)
                if self._inflight is not None and (got or self._inflight[0].done()):
                    self._finish(consumer)
                if got and not stop.is_set():
                    self._start(self._batch)
                    self._batch = []
            self._finish(consumer)
        finally:
            QUEUE_DEPTH.labels(self.handler.name).set(0)
            self._pool.shutdown(wait=True)
            consumer.close()  # no commit: anything not landed is read again by the next owner

    def _fill(self, consumer: Consumer, stop: threading.Event) -> bool:
        deadline = None
        while not stop.is_set() and len(self._batch) < self.sink.sink_batch_rows:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if deadline is None and self._inflight is not None and self._inflight[0].done():
                break  # nothing new yet, but the insert in flight can be committed
            timeout = 0.1 if deadline is None else max(0.0, deadline - now)
            want = min(10_000, self.sink.sink_batch_rows - len(self._batch))
            got = consumer.consume(num_messages=want, timeout=timeout)
            ok = [m for m in got if m.error() is None]
            if len(ok) != len(got):
                for m in got:
                    if m.error() is not None:
                        log.warning("consumer error", extra={"fields": {"error": str(m.error())}})
            self._batch.extend(ok)
            if self._batch and deadline is None:
                deadline = time.monotonic() + self.sink.sink_batch_seconds
            QUEUE_DEPTH.labels(self.handler.name).set(len(self._batch))
        return bool(self._batch)

    def _start(self, msgs: list[Message]) -> None:
        """Decode here, insert in the pool: the next batch is read while this one is written."""
        t0 = time.perf_counter()
        items: list[tuple[Message, Any]] = []
        ranges: dict[int, list[int]] = {}  # partition -> [first, last] offset (in order within a partition)
        decode = self.handler.decode
        for m in msgs:
            p, o = m.partition(), m.offset()
            r = ranges.get(p)
            if r is None:
                ranges[p] = [o, o]
            else:
                r[1] = o
            try:
                items.append((m, decode(m)))
            except Poison as exc:
                self._dead(m, exc.reason, str(exc))
        fut = self._pool.submit(self._write, items, batch_token(self.topic, ranges), self._stop) if items else None
        self._inflight = (fut or _DONE, msgs, ranges, t0)

    def _finish(self, consumer: Consumer) -> None:
        if self._inflight is None:
            return
        fut, msgs, ranges, t0 = self._inflight
        self._inflight = None
        if not fut.result():
            return  # stopping while ClickHouse is down: keep offsets, the batch is read again
        self.dlq.flush()
        if self.sink.sink_crash_after_insert:
            os._exit(86)  # test hook: die between insert and commit
        self._commit(consumer, ranges)
        self.landed += len(msgs)
        JOBS.labels(self.handler.name, "ok").inc()
        JOB_DURATION.labels(self.handler.name).observe(time.perf_counter() - t0)
        if self.on_landed:
            self.on_landed(msgs)

    def _dead(self, m: Message, reason: str, error: str) -> None:
        self.dlq.send(m.key(), m.value(), reason, error, source_topic=m.topic(), partition=m.partition(),
                      offset=m.offset(), headers=m.headers())

    def _write(self, items: list[tuple[Message, Any]], token: str, stop: threading.Event) -> bool:
        delay = 0.2
        while True:
            try:
                self.handler.write(self.client, [d for _, d in items], token)
                return True
            except Exception as exc:  # noqa: BLE001 - every failure is either bad rows or an outage
                if is_data_error(exc):
                    return self._bisect(items, token, stop, str(exc))
                JOBS.labels(self.handler.name, "retry").inc()
                log.warning("clickhouse insert failed; backing off",
                            extra={"fields": {"sink": self.handler.name, "error": str(exc)[:300], "retry_in_s": delay}})
                if stop.wait(delay):
                    return False
                delay = min(delay * 2, self.sink.sink_backoff_max_seconds)

    def _bisect(self, items: list[tuple[Message, Any]], token: str, stop: threading.Event, error: str) -> bool:
        if len(items) == 1:  # _write just saw ClickHouse refuse exactly this row
            self._dead(items[0][0], "rejected_by_clickhouse", error)
            return True
        mid = len(items) // 2
        return (self._write(items[:mid], token + "/a", stop)
                and self._write(items[mid:], token + "/b", stop))

    def _commit(self, consumer: Consumer, ranges: dict[int, list[int]]) -> None:
        offsets = [TopicPartition(self.topic, p, hi + 1) for p, (_, hi) in ranges.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Partition moved on: the rows are in; the next owner re-reads them and dedup hides them.
            log.warning("commit failed", extra={"fields": {"error": str(exc)}})
        lag = consumer_lag()
        for tp in offsets:
            try:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0:
                lag.labels(self.topic, str(tp.partition)).set(max(0, high - tp.offset))

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

import gc
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
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
    """What a sink adds to the loop: decode one message, write decoded items (may raise).

    A handler may set `parallel_writes = True` when its batches can be written concurrently.
    """

    name: str

    def decode(self, msg: Message) -> Any: ...
    def write(self, client: ClickHouse, items: list[Any], token: str) -> None: ...
    def on_assign(self) -> None: ...


_DONE: Future = Future()
_DONE.set_result(True)  # a batch whose messages all went to the DLQ: nothing to insert


def batch_token(topic: str, ranges: dict[int, list[int]]) -> str:
    """Names the batch by its offset ranges: the identical retry of a batch is dropped by ClickHouse."""
    return topic + "|" + ",".join(f"{p}:{lo}-{hi}" for p, (lo, hi) in sorted(ranges.items()))


def raise_gc_threshold(gen0: int = 10_000) -> None:
    """A landing batch holds tens of thousands of message objects: at the default young-generation
    threshold (700) the collector ran every few hundred messages and rescanned the batch, ~8% of
    the consumer thread's CPU. Process-wide, so it never lowers what the process already set."""
    g0, g1, g2 = gc.get_threshold()
    if g0 < gen0:
        gc.set_threshold(gen0, g1, g2)


def make_consumer(settings: Settings, group: str, **extra: Any) -> Consumer:
    return Consumer({
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": settings.topic_prefix + group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,  # offsets are committed explicitly, per landed batch
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # The broker answers a fetch once 1 MiB is there or after 100 ms: with the default (1 byte) a
        # steady stream was fetched a few messages at a time, hundreds of requests a second, which cost
        # librdkafka ~1.5 us an event here (and the broker its share); the wait hides inside the batch
        # age (sink_batch_min_seconds), so rows land at most 100 ms later.
        "fetch.min.bytes": 1 << 20,
        "fetch.wait.max.ms": 100,
        "max.poll.interval.ms": 600_000,
        "session.timeout.ms": 30_000,
        "partition.assignment.strategy": "cooperative-sticky",
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        # Under a backlog the prefetch queue fills (queued.max.messages.kbytes) and librdkafka then
        # waits this long before fetching again: the default 1 s left the loop idle for whole seconds
        # (landing ran at half speed); 10 ms refetches as soon as the loop has taken its share.
        "fetch.queue.backoff.ms": 10,
        **extra,
    })


class _Batch:
    """Messages read since the last flush, decoded as they arrive (so a flush only submits)."""

    __slots__ = ("born", "decoded", "msgs", "poison", "ranges")

    def __init__(self) -> None:
        self.msgs: list[Message] = []  # every message, poison included, in arrival order
        self.decoded: list[Any] = []  # the good ones, decoded
        self.poison: list[tuple[Message, str, str]] = []  # (message, reason, error), dead-lettered at flush
        self.ranges: dict[int, list[int]] = {}  # partition -> [first, last] offset (in order within a partition)
        self.born = 0.0

    def drop(self, gone: set[int]) -> None:
        """Forget the messages of partitions taken away (their new owner reads them again)."""
        if not any(p in gone for p in self.ranges):
            return
        keep = [m for m in self.msgs if m.partition() not in gone]
        bad = {id(m) for m, _, _ in self.poison}
        good = [m for m in self.msgs if id(m) not in bad]
        self.decoded = [d for m, d in zip(good, self.decoded, strict=True) if m.partition() not in gone]
        self.poison = [x for x in self.poison if x[0].partition() not in gone]
        self.msgs = keep
        self.ranges = {p: r for p, r in self.ranges.items() if p not in gone}

    def good_msgs(self) -> list[Message]:
        if not self.poison:
            return self.msgs
        bad = {id(m) for m, _, _ in self.poison}
        return [m for m in self.msgs if id(m) not in bad]


class _Flight:
    __slots__ = ("batch", "fut", "t0")

    def __init__(self, fut: Future, batch: _Batch, t0: float):
        self.fut, self.batch, self.t0 = fut, batch, t0


_POLL = 0.05  # longest a consume blocks: how soon a finished insert is committed and an idle batch flushed


class LandingConsumer:
    def __init__(self, settings: Settings, sink: SinkSettings, topic: str, group: str, handler: Handler,
                 client: ClickHouse, dlq: DeadLetters, on_landed: Callable[[list[Message]], None] | None = None):
        self.settings, self.sink, self.topic, self.group = settings, sink, topic, group
        self.handler, self.client, self.dlq = handler, client, dlq
        self.on_landed = on_landed
        self._batch = _Batch()
        # Inserts under way, oldest first; they are committed strictly in this order.
        self._inflight: deque[_Flight] = deque()
        # Handlers whose writes may overlap (each batch independent) get several; others one at a time.
        self._slots = max(1, sink.sink_insert_threads) if getattr(handler, "parallel_writes", False) else 1
        self._caught_up = False  # the last read found fewer messages than it asked for
        self._abandoned = False  # an insert gave up (stopping): nothing after it may be committed
        self._stop = threading.Event()
        self.landed = 0  # messages landed (or dead-lettered) and committed by this instance
        self.ready = threading.Event()

    # -- rebalance: land what is in flight, forget what we hold of partitions taken away (the new
    # owner re-reads them from the committed offset)
    def _revoked(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        while self._inflight:
            self._finish(consumer)
        self._batch.drop({p.partition for p in parts})

    def _assigned(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.ready.set()
        self.handler.on_assign()

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        raise_gc_threshold()
        # Inserts run in the pool (chDB releases the GIL) while the next batch is read and decoded.
        self._pool = ThreadPoolExecutor(self._slots, thread_name_prefix=f"insert-{self.handler.name}")
        consumer = make_consumer(self.settings, self.group)
        consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)
        log.info("consuming", extra={"fields": {"topic": self.topic, "sink": self.handler.name}})
        try:
            while not stop.is_set():
                self._step(consumer)
            while self._inflight:
                self._finish(consumer)
        finally:
            QUEUE_DEPTH.labels(self.handler.name).set(0)
            self._pool.shutdown(wait=True)
            consumer.close()  # no commit: anything not landed is read again by the next owner

    def _step(self, consumer: Consumer) -> None:
        """Commit finished inserts; flush the batch when due and a slot is free; else read more.

        A batch is due at `sink_batch_rows`, at `sink_batch_seconds` old, or, once the log is read to
        its end, at `sink_batch_min_seconds` old: under a backlog batches are large, at a steady rate
        rows land a fraction of a second after they are written.
        """
        while self._inflight and self._inflight[0].fut.done():
            self._finish(consumer)
        b, sink = self._batch, self.sink
        n = len(b.msgs)
        timeout = _POLL
        if n:
            age = time.monotonic() - b.born
            due = (n >= sink.sink_batch_rows or age >= sink.sink_batch_seconds
                   or (self._caught_up and age >= sink.sink_batch_min_seconds))
            if due and len(self._inflight) < self._slots:
                self._start()
                return
            if n >= sink.sink_batch_rows:  # full and every slot busy: wait for the oldest insert
                wait([self._inflight[0].fut], timeout=_POLL)
                return
            if due:
                timeout = 0.01  # waiting for a slot: look again soon
            elif self._caught_up:
                timeout = max(0.0, min(_POLL, sink.sink_batch_min_seconds - age))
            else:
                timeout = max(0.0, min(_POLL, sink.sink_batch_seconds - age))
        want = min(10_000, sink.sink_batch_rows - n)
        got = consumer.consume(num_messages=want, timeout=timeout)
        self._caught_up = len(got) < want
        if got:
            self._add(got)

    def _add(self, got: list[Message]) -> None:
        # Per message this loop is most of the consumer thread's time: keep it lean.
        b = self._batch
        if not b.msgs:
            b.born = time.monotonic()
        ranges, decoded, msgs, decode = b.ranges, b.decoded, b.msgs, self.handler.decode
        last_p, r = -1, [0, 0]
        for m in got:
            if m.error() is not None:
                log.warning("consumer error", extra={"fields": {"error": str(m.error())}})
                continue
            p = m.partition()
            if p != last_p:  # messages come in runs per partition
                last_p = p
                r = ranges.get(p) or ranges.setdefault(p, [m.offset(), 0])
            r[1] = m.offset()
            msgs.append(m)
            try:
                decoded.append(decode(m))
            except Poison as exc:
                b.poison.append((m, exc.reason, str(exc)))
        QUEUE_DEPTH.labels(self.handler.name).set(len(msgs) + sum(len(f.batch.msgs) for f in self._inflight))

    def _start(self) -> None:
        """Dead-letter the batch's poison and hand its rows to an insert slot."""
        b, self._batch = self._batch, _Batch()
        for m, reason, error in b.poison:
            self._dead(m, reason, error)
        fut = (self._pool.submit(self._write, b.good_msgs(), b.decoded, batch_token(self.topic, b.ranges), self._stop)
               if b.decoded else _DONE)
        self._inflight.append(_Flight(fut, b, time.perf_counter()))

    def _finish(self, consumer: Consumer) -> None:
        """Wait for the oldest insert, then commit its offsets (strictly in read order)."""
        f = self._inflight.popleft()
        if not f.fut.result() or self._abandoned:
            self._abandoned = True  # stopping while ClickHouse is down: keep offsets, all is read again
            return
        self.dlq.flush()
        if self.sink.sink_crash_after_insert:
            os._exit(86)  # test hook: die between insert and commit
        self._commit(consumer, f.batch.ranges)
        self.landed += len(f.batch.msgs)
        JOBS.labels(self.handler.name, "ok").inc()
        JOB_DURATION.labels(self.handler.name).observe(time.perf_counter() - f.t0)
        if self.on_landed:
            self.on_landed(f.batch.msgs)

    def _dead(self, m: Message, reason: str, error: str) -> None:
        self.dlq.send(m.key(), m.value(), reason, error, source_topic=m.topic(), partition=m.partition(),
                      offset=m.offset(), headers=m.headers())

    def _write(self, msgs: list[Message], items: list[Any], token: str, stop: threading.Event) -> bool:
        delay = 0.2
        while True:
            try:
                self.handler.write(self.client, items, token)
                return True
            except Exception as exc:  # noqa: BLE001 - every failure is either bad rows or an outage
                if is_data_error(exc):
                    return self._bisect(msgs, items, token, stop, str(exc))
                JOBS.labels(self.handler.name, "retry").inc()
                log.warning("clickhouse insert failed; backing off",
                            extra={"fields": {"sink": self.handler.name, "error": str(exc)[:300], "retry_in_s": delay}})
                if stop.wait(delay):
                    return False
                delay = min(delay * 2, self.sink.sink_backoff_max_seconds)

    def _bisect(self, msgs: list[Message], items: list[Any], token: str, stop: threading.Event, error: str) -> bool:
        if len(items) == 1:  # _write just saw ClickHouse refuse exactly this row
            self._dead(msgs[0], "rejected_by_clickhouse", error)
            return True
        mid = len(items) // 2
        return (self._write(msgs[:mid], items[:mid], token + "/a", stop)
                and self._write(msgs[mid:], items[mid:], token + "/b", stop))

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

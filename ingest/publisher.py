"""One shared Kafka producer per gateway process, with broker acknowledgement awaited per request.

confluent-kafka (librdkafka) is used rather than aiokafka because the benchmark showed the
pure-Python client to be the bottleneck; the delivery guarantees are the ones of
`agenttrace.kafka.PRODUCER_DEFAULTS` (acks=all, idempotence, lz4, linger). librdkafka's delivery
callbacks run in a poll thread; each request waits on one asyncio future that the last callback of
its records resolves, so a request returns 2xx only once every record of it is acknowledged.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Sequence

from confluent_kafka import KafkaError, KafkaException, Producer
from prometheus_client import Counter, Histogram

from agenttrace.kafka import PRODUCER_DEFAULTS
from schemas.settings import Settings

log = logging.getLogger("ingest.publisher")

KAFKA_ERRORS = Counter("kafka_producer_errors_total", "records the broker did not acknowledge")
PRODUCE_SECONDS = Histogram("kafka_produce_duration_seconds", "time from produce to broker acknowledgement of a request's records",
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]

_QUIET = logging.getLogger("ingest.publisher.rdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class PublishError(RuntimeError):
    """The broker did not acknowledge every record (unreachable, slow or refusing)."""


class _Pending:
    """Counts the acknowledgements of one request's records (callbacks run in the poll thread).

    The count is an `itertools.count`, whose step is one C call that the GIL makes atomic: no lock is
    needed between the poll thread and the event loop (which settles records it could not produce).
    """

    __slots__ = ("n", "acked", "error", "loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int):
        self.n = n
        self.acked = itertools.count(1).__next__
        self.error: str | None = None
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def settle(self, count: int, error: str | None) -> None:
        if error and self.error is None:
            self.error = error
        for _ in range(count):
            if self.acked() == self.n:
                self.loop.call_soon_threadsafe(self._resolve)

    def callback(self, err: KafkaError | None, _msg: object) -> None:
        # Called once per record: kept to the minimum.
        if err is not None:
            KAFKA_ERRORS.inc()
            if self.error is None:
                self.error = str(err)
        if self.acked() == self.n:
            self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class Publisher:
    def __init__(self, settings: Settings, timeout_s: float = 5.0, **overrides: object):
        self.timeout_s = timeout_s
        conf: dict[str, object] = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "acks": PRODUCER_DEFAULTS["acks"],
            "enable.idempotence": PRODUCER_DEFAULTS["enable_idempotence"],
            "compression.type": PRODUCER_DEFAULTS["compression_type"],
            # Requests already bring batches of records; a short linger keeps single-event latency low.
            "linger.ms": 2,
            "batch.size": PRODUCER_DEFAULTS["max_batch_size"],
            # Records not acknowledged within the request deadline fail rather than hang the request.
            "message.timeout.ms": int(timeout_s * 1000),
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 16 * 1024,  # bounds the process's memory under back-pressure
            "socket.keepalive.enable": True,
            "error_cb": self._on_error,
        }
        conf.update(overrides)
        self._producer = Producer(conf, logger=_QUIET)
        self._running = True
        self._poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._poller.start()

    def _on_error(self, err: KafkaError) -> None:
        # Transport errors are retried by librdkafka; requests see them as timeouts -> 503.
        if err.fatal():
            log.error("fatal kafka producer error", extra={"fields": {"error": str(err)}})
        else:
            log.warning("kafka producer error", extra={"fields": {"error": str(err)}})

    def _poll(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    async def publish(self, topic: str, records: Sequence[Record] | Iterable[Record], count: int) -> None:
        """Produce `count` records and wait until the broker acknowledged all of them.

        Raises PublishError (broker refused, unreachable or slower than the deadline).
        """
        if count == 0:
            return
        loop = asyncio.get_running_loop()
        pending = _Pending(loop, count)
        produce = self._producer.produce
        cb = pending.callback
        started = time.perf_counter()
        produced = 0
        try:
            for key, value, headers in records:
                try:
                    produce(topic, value, key, headers=headers, on_delivery=cb)
                except BufferError:
                    # Local queue full: give the poll thread a moment, within the deadline.
                    while True:
                        if time.perf_counter() - started > self.timeout_s:
                            raise
                        await asyncio.sleep(0.005)
                        try:
                            produce(topic, value, key, headers=headers, on_delivery=cb)
                            break
                        except BufferError:
                            pass
                produced += 1
        except (BufferError, KafkaException) as exc:
            KAFKA_ERRORS.inc(count - produced)
            pending.settle(count - produced, f"produce failed: {exc}")
        try:
            await asyncio.wait_for(asyncio.shield(pending.future), timeout=self.timeout_s + 1.0)
        except TimeoutError:
            raise PublishError(f"broker did not acknowledge within {self.timeout_s + 1.0:.0f}s") from None
        PRODUCE_SECONDS.observe(time.perf_counter() - started)
        if pending.error:
            raise PublishError(pending.error)

    def broker_reachable(self, timeout: float = 2.0) -> bool:
        try:
            return bool(self._producer.list_topics(timeout=timeout).brokers)
        except KafkaException:
            return False

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, then stop the poll thread."""
        remaining = self._producer.flush(timeout)
        if remaining:
            log.warning("records left undelivered at shutdown", extra={"fields": {"count": remaining}})
        self._running = False
        self._poller.join(timeout=1)

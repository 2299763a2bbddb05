"""Publish events off the response path; spool to disk while the broker is away.

One task sends in order through one idempotent producer. A send the broker does not acknowledge
in time stays with the producer (which retries it until the broker answers, without duplicates),
and every event after it goes to the on-disk spool tail. Once the stalled batch is acknowledged,
the spool drains oldest first; only then do events go straight to the producer again. So the
topic sees events in the order calls finished, each once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agenttrace.kafka import event_record, make_producer
from proxy import metrics
from proxy.config import ProxySettings
from proxy.spool import Record, Spool
from schemas.events import EventBase
from schemas.settings import Settings
from schemas.topics import EVENTS

log = logging.getLogger("proxy.publisher")


class Publisher:
    def __init__(self, settings: Settings, psettings: ProxySettings,
                 producer_factory: Callable[[], Any] | None = None):
        self.topic = settings.topic(EVENTS)
        self.ps = psettings
        self._factory = producer_factory or (
            lambda: make_producer(settings, request_timeout_ms=psettings.kafka_timeout_ms,
                                  linger_ms=psettings.kafka_linger_ms))
        self.queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=psettings.queue_max)
        self.spool = Spool(settings.home_dir / "spool", psettings.spool_max_events, psettings.spool_segment_events)
        metrics.SPOOL_DEPTH.set(self.spool.depth)
        self.producer: Any = None
        self.stalled = False
        self.sent = 0
        self._inflight: _Inflight | None = None
        self._task: asyncio.Task | None = None

    # -- called by request handlers (never blocks) ----------------------------
    def submit(self, event: EventBase) -> None:
        rec = event_record(event)
        try:
            self.queue.put_nowait(rec)
        except asyncio.QueueFull:  # a burst beyond memory goes to disk rather than being lost
            self._to_spool([rec])

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="proxy-publisher")

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def connected(self) -> bool:
        return self.producer is not None and not self.stalled

    async def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued if the broker answers within `timeout`; spool the rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (not self.queue.empty() or self._inflight) and self.connected and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        fl = self._inflight
        if fl is not None and not fl.from_spool and not fl.spooled:
            # Not yet acknowledged: keep on disk (resent at the next start).
            self._to_spool([r for r, f in zip(fl.records, fl.futures, strict=False) if not _acked(f)]
                           + fl.records[len(fl.futures):])
        self._move_queue_to_spool()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.stop(), 3)
        self.spool.close()

    # -- the loop --------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                if self.producer is None:
                    await self._connect()
                elif self.spool.depth:
                    self._move_queue_to_spool()  # keep order: the queue is newer than the spool
                    batch = self.spool.peek(self.ps.publish_batch)
                    acked, _ = await self._send(batch, from_spool=True)
                    self.spool.commit(acked)
                    metrics.SPOOL_DEPTH.set(self.spool.depth)
                    if not self.spool.depth:
                        log.info("spool drained", extra={"fields": {"sent": self.sent}})
                else:
                    batch = [await self.queue.get()]
                    while len(batch) < self.ps.publish_batch and not self.queue.empty():
                        batch.append(self.queue.get_nowait())
                    await self._send(batch, from_spool=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publisher step failed")
                await asyncio.sleep(1)

    async def _connect(self) -> None:
        backoff = 0.2
        while True:
            self._move_queue_to_spool()
            producer = self._factory()
            try:
                await asyncio.wait_for(producer.start(), self.ps.kafka_timeout_ms / 1000 + 5)
            except Exception as exc:
                metrics.PRODUCER_ERRORS.inc()
                log.warning("broker unreachable, spooling", extra={"fields": {"error": type(exc).__name__}})
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), 5)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.ps.retry_max_seconds)
                continue
            self.producer = producer
            log.info("connected to broker")
            return

    async def _send(self, batch: list[Record], from_spool: bool) -> tuple[int, int]:
        """Hand `batch` to the producer and wait for the broker; return (acknowledged prefix, failed)."""
        fl = _Inflight(batch, [], from_spool)
        self._inflight = fl
        try:
            for i, (key, value, headers) in enumerate(batch):
                if i and not i % 64:
                    await asyncio.sleep(0)  # let calls in flight run between slices of a big batch
                try:
                    fl.futures.append(await self.producer.send(self.topic, value=value, key=key, headers=headers))
                except Exception as exc:  # not taken by the producer (e.g. no metadata): spooled below
                    metrics.PRODUCER_ERRORS.inc()
                    log.warning("broker send refused, spooling", extra={"fields": {"error": type(exc).__name__}})
                    break
            # The idempotent producer retries until acknowledged (never duplicating); while it waits,
            # the batch is also written to the spool head so a crash does not lose it, and newer
            # events queue up behind it on disk.
            pending = set(fl.futures)
            while pending:
                _, pending = await asyncio.wait(pending, timeout=self.ps.kafka_timeout_ms / 1000)
                if pending:
                    if not self.stalled:
                        metrics.PRODUCER_ERRORS.inc()
                        log.warning("broker not acknowledging, spooling new events")
                        self.stalled = True
                    if not from_spool and not fl.spooled:
                        self._to_spool(batch)  # the spool is empty in direct mode: these become its head
                        fl.spooled = True
                    self._move_queue_to_spool()
            if self.stalled:
                log.info("broker acknowledging again")
            self.stalled = False
            futures = fl.futures
            acked = 0
            for f in futures:
                if not _acked(f):
                    break
                acked += 1
            failed = sum(1 for f in futures if not _acked(f))
            if failed:  # permanent errors only (retriable ones are retried by the producer)
                metrics.PRODUCER_ERRORS.inc(failed)
                metrics.DROPPED.inc(failed)
                log.error("broker rejected events", extra={"fields": {
                    "count": failed, "error": repr(next(f.exception() for f in futures if not _acked(f)))}})
                acked = len(futures)  # rejected for good: skip them rather than block what follows
            if not from_spool:
                if fl.spooled:
                    self.spool.commit(len(futures))  # what was sent leaves the spool head; the unsent stay
                    metrics.SPOOL_DEPTH.set(self.spool.depth)
                elif len(futures) < len(batch):
                    self._to_spool(batch[len(futures):])
            self.sent += len(futures) - failed
            return acked, failed
        finally:
            self._inflight = None

    # -- helpers ---------------------------------------------------------------
    def _move_queue_to_spool(self) -> None:
        batch: list[Record] = []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if batch:
            self._to_spool(batch)

    def _to_spool(self, records: list[Record]) -> None:
        if not records:
            return
        dropped = self.spool.append(records)
        if dropped:
            metrics.DROPPED.inc(dropped)
            log.warning("spool full, dropped oldest events", extra={"fields": {"dropped": dropped}})
        metrics.SPOOL_DEPTH.set(self.spool.depth)


@dataclass
class _Inflight:
    records: list[Record]
    futures: list[asyncio.Future]
    from_spool: bool
    spooled: bool = False


def _acked(f: asyncio.Future) -> bool:
    return f.done() and not f.cancelled() and f.exception() is None

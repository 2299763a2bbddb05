"""Publish events off the response path; spool to disk while the broker is away.

One task sends in order. While the spool holds anything, new events join its tail and the spool
drains oldest first, so the topic sees events in the order calls finished, each once (unless the
broker fails mid-batch without answering, where a batch may be resent: consumers dedupe on event_id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
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
            lambda: make_producer(settings, request_timeout_ms=psettings.kafka_timeout_ms))
        self.queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=psettings.queue_max)
        self.spool = Spool(settings.home_dir / "spool", psettings.spool_max_events, psettings.spool_segment_events)
        metrics.SPOOL_DEPTH.set(self.spool.depth)
        self.producer: Any = None
        self.connected = False
        self.sent = 0
        self._task: asyncio.Task | None = None
        self._stopping = False

    # -- called by request handlers (never blocks) ----------------------------
    def submit(self, event: EventBase) -> None:
        rec = event_record(event)
        try:
            self.queue.put_nowait(rec)
        except asyncio.QueueFull:  # bursts beyond memory go straight to disk rather than being lost
            self._to_spool([rec])

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="proxy-publisher")

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, timeout: float = 10.0) -> None:
        """Flush what is queued (to the broker or the spool), then stop."""
        self._stopping = True
        if self._task:
            try:
                await asyncio.wait_for(self._drain_queue_on_stop(), timeout)
            except TimeoutError:
                pass
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._move_queue_to_spool()
        await self._drop_producer()
        self.spool.close()

    async def _drain_queue_on_stop(self) -> None:
        while not self.queue.empty() and self.alive:
            await asyncio.sleep(0.05)

    # -- the loop --------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                if self.spool.depth or not self.connected:
                    ok = await self._spool_step()
                else:
                    ok = await self._direct_step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publisher step failed")
                ok = False
            if ok:
                backoff = 0.2
            else:
                await self._drop_producer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.ps.retry_max_seconds)

    async def _direct_step(self) -> bool:
        first = await self.queue.get()
        batch = [first]
        while len(batch) < self.ps.publish_batch and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        done = await self._send(batch)
        if done < len(batch):
            self._to_spool(batch[done:])
            return False
        return True

    async def _spool_step(self) -> bool:
        # Keep order: anything queued goes behind what is already spooled.
        if not self.connected:
            if self.queue.empty() and not self.spool.depth:
                await asyncio.sleep(0.05)
            self._move_queue_to_spool()
            if not await self._connect():
                return False
        self._move_queue_to_spool()
        batch = self.spool.peek(self.ps.publish_batch)
        if not batch:
            return True
        done = await self._send(batch)
        self.spool.commit(done)
        metrics.SPOOL_DEPTH.set(self.spool.depth)
        if done < len(batch):
            return False
        if not self.spool.depth:
            log.info("spool drained", extra={"fields": {"sent": self.sent}})
        return True

    # -- helpers ---------------------------------------------------------------
    def _move_queue_to_spool(self) -> None:
        batch: list[Record] = []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if batch:
            self._to_spool(batch)

    def _to_spool(self, records: list[Record]) -> None:
        dropped = self.spool.append(records)
        if dropped:
            metrics.DROPPED.inc(dropped)
            log.warning("spool full, dropped oldest events", extra={"fields": {"dropped": dropped}})
        metrics.SPOOL_DEPTH.set(self.spool.depth)

    async def _connect(self) -> bool:
        producer = self._factory()
        try:
            await asyncio.wait_for(producer.start(), self.ps.kafka_timeout_ms / 1000 + 5)
        except Exception as exc:
            metrics.PRODUCER_ERRORS.inc()
            log.warning("broker unreachable, spooling", extra={"fields": {"error": type(exc).__name__}})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)
            return False
        self.producer, self.connected = producer, True
        log.info("connected to broker")
        return True

    async def _drop_producer(self) -> None:
        producer, self.producer, self.connected = self.producer, None, False
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)

    async def _send(self, batch: list[Record]) -> int:
        """Send in order; return how many leading records the broker acknowledged."""
        if self.producer is None:
            return 0
        futures = []
        try:
            for key, value, headers in batch:
                futures.append(await self.producer.send(self.topic, value=value, key=key, headers=headers))
        except Exception:
            pass
        if futures:
            # aiokafka fails undelivered batches after request_timeout_ms; the margin only guards a hang.
            await asyncio.wait(futures, timeout=self.ps.kafka_timeout_ms / 1000 + 10)
        done = 0
        for f in futures:
            if not f.done() or f.cancelled() or f.exception() is not None:
                break
            done += 1
        if done < len(batch):
            metrics.PRODUCER_ERRORS.inc()
            log.warning("broker send failed, spooling", extra={"fields": {"failed": len(batch) - done}})
        self.sent += done
        return done

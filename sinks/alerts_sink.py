"""Alert transitions -> `alerts` history, and delivery to webhooks and email, at most once per receiver.

Per receiver (webhook URL, or one email address) the history in ClickHouse is the state: before
each attempt an intent row is written, after it the outcome (delivered | retry | failed). A new
owner of the alert (restart, rebalance, redelivery) resumes from that history: done -> nothing;
mid-retry -> the next attempt after the rest of its delay; an intent without outcome -> the
receiver may already have it, so it is recorded failed ("interrupted") and not sent again.

Offsets are committed only up to the first alert whose deliveries are all final, so an alert is
never forgotten with a delivery pending. Replayed alerts (`replay=True`) are recorded, not sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from agenttrace.clickhouse import ClickHouse
from schemas.alerts import Alert
from schemas.settings import Settings
from schemas.topics import ALERTS
from sinks import email, history, webhook
from sinks.clickhouse_io import insert_rows
from sinks.config import SinkSettings
from sinks.dlq import DeadLetters
from sinks.metrics import ACTIVE_JOBS, DELIVERIES, JOB_DURATION, JOBS, QUEUE_DEPTH, consumer_lag

log = logging.getLogger("sinks.alerts")

Sender = Callable[[Alert, str, int], Awaitable[str | None]]


class AlertsSink:
    def __init__(self, settings: Settings, sink: SinkSettings, client: ClickHouse, dlq: DeadLetters):
        self.settings, self.sink, self.client, self.dlq = settings, sink, client, dlq
        self.topic = settings.topic(ALERTS)
        self._http = httpx.AsyncClient()
        self._pending: dict[TopicPartition, deque[tuple[int, asyncio.Task | None]]] = {}
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()

    # -- ClickHouse calls run in a thread and are retried while ClickHouse is away
    async def _ch(self, fn: Callable, *args) -> object:
        delay = 0.2
        while True:
            try:
                return await asyncio.to_thread(fn, *args)
            except Exception as exc:  # noqa: BLE001 - an outage; rows here are built by us
                log.warning("clickhouse call failed; retrying", extra={"fields": {"error": str(exc)[:300]}})
                if self._stop.is_set():
                    raise asyncio.CancelledError from exc  # shutting down: the alert is read again later
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.sink.sink_backoff_max_seconds)

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        consumer = await self._start_consumer(stop)
        if consumer is None:
            await self._http.aclose()
            return
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=500)
                for tp, msgs in batch.items():
                    for m in msgs:
                        task = await self._handle(m)
                        self._pending.setdefault(tp, deque()).append((m.offset, task))
                await self._commit_done(consumer)
        finally:
            await self._drop(list(self._pending))
            await consumer.stop()
            await self._http.aclose()

    async def _start_consumer(self, stop: asyncio.Event) -> AIOKafkaConsumer | None:
        """The topic may not exist yet (broker just started): wait for it instead of failing."""
        delay = 0.5
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                group_id=self.settings.topic_prefix + "agenttrace-sink-alerts", enable_auto_commit=False,
                auto_offset_reset="earliest", fetch_max_wait_ms=100)
            consumer.subscribe([self.topic], listener=_Listener(self))
            starting = asyncio.ensure_future(consumer.start())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not starting.done():  # asked to stop while waiting for the topic
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                await consumer.stop()
                return None
            try:
                starting.result()
                return consumer
            except KafkaError as exc:
                await consumer.stop()
                log.warning("alerts consumer cannot start; retrying", extra={"fields": {"error": str(exc)}})
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, 10.0)
        return None

    async def _commit_done(self, consumer: AIOKafkaConsumer) -> None:
        offsets: dict[TopicPartition, int] = {}
        depth = 0
        for tp, q in self._pending.items():
            while q and (q[0][1] is None or q[0][1].done()):
                offsets[tp] = q.popleft()[0] + 1
            depth += len(q)
        QUEUE_DEPTH.labels("alerts").set(depth)
        if offsets:
            try:
                await consumer.commit(offsets)
            except Exception as exc:  # noqa: BLE001 - partition moved; the new owner resumes from history
                log.warning("commit failed", extra={"fields": {"error": str(exc)}})
            for tp, off in offsets.items():
                high = consumer.highwater(tp)
                if high is not None:
                    consumer_lag().labels(tp.topic, str(tp.partition)).set(max(0, high - off))

    async def _drop(self, parts: list[TopicPartition]) -> None:
        """Stop deliveries of partitions we lose; their history lets the next owner resume."""
        tasks = [t for tp in parts for _, t in self._pending.pop(tp, ()) if t is not None and not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, m: ConsumerRecord) -> asyncio.Task | None:
        try:
            alert = Alert.model_validate_json(m.value or b"")
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first["loc"]) or "value"
            await asyncio.to_thread(self._dead, m.key, m.value, "invalid_alert", f"{field}: {first['msg']}",
                                    m.partition, m.offset)
            return None
        await self._ch(insert_rows, self.client, "alerts", [history.alert_row(alert)])
        JOBS.labels("alert", "recorded").inc()
        if alert.replay:
            return None  # replays rebuild history; people were told the first time
        receivers: list[tuple[str, str, Sender]] = []
        if alert.webhook_url:
            receivers.append(("webhook", alert.webhook_url, self._send_webhook))
        for to in alert.email_to:
            receivers.append(("email", to, self._send_email_to(to)))
        if not receivers:
            return None
        return asyncio.create_task(self._deliver_all(alert, receivers), name=f"deliver-{alert.alert_id}")

    async def _deliver_all(self, alert: Alert, receivers: list[tuple[str, str, Sender]]) -> None:
        await asyncio.gather(*(self._deliver(alert, ch, target, send) for ch, target, send in receivers))

    async def _send_webhook(self, alert: Alert, url: str, attempt: int) -> str | None:
        return await webhook.post(self._http, url, alert, self.sink.webhook_secret, attempt,
                                  self.sink.webhook_timeout_seconds)

    def _send_email_to(self, to: str) -> Sender:
        async def send(alert: Alert, target: str, attempt: int) -> str | None:
            return await email.send(self.settings, alert, to, self.sink.smtp_timeout_seconds, self.sink.smtp_cert_bundle)
        return send

    async def _record(self, alert: Alert, channel: str, target: str, attempt: int, outcome: str, error: str) -> None:
        await self._ch(insert_rows, self.client, "alerts",
                       [history.alert_row(alert, channel, target, attempt, outcome, error)])
        DELIVERIES.labels(channel, outcome).inc()
        if outcome == "failed":
            await asyncio.to_thread(self._dead, f"{alert.rule_id}/{alert.subject}".encode(), alert.model_dump_json().encode(),
                                    "delivery_failed", f"{channel} {target}: {error}", -1, -1)

    async def _deliver(self, alert: Alert, channel: str, target: str, send: Sender) -> None:
        state: history.DeliveryState = await self._ch(history.load, self.client, alert, channel, target)  # type: ignore[assignment]
        if state.done:
            return
        if state.interrupted:
            await self._record(alert, channel, target, state.interrupted, "failed",
                               "interrupted during a send; not sent again (at most once per receiver)")
            return
        delays = self.sink.delivery_retry_delays
        attempt = state.last_attempt + 1
        if state.last_attempt and delays:  # resuming mid-retry (the delays may have been reconfigured since)
            wait = delays[min(state.last_attempt, len(delays)) - 1] - (time.time() - state.last_at)
            if wait > 0:
                await asyncio.sleep(wait)
        ACTIVE_JOBS.inc()
        try:
            while True:
                t0 = time.perf_counter()
                await self._ch(history.record_intent, self.client, alert, channel, target, attempt)
                error = await send(alert, target, attempt)
                JOB_DURATION.labels(f"deliver_{channel}").observe(time.perf_counter() - t0)
                outcome = "delivered" if error is None else ("failed" if attempt > len(delays) else "retry")
                await self._record(alert, channel, target, attempt, outcome, error or "")
                JOBS.labels(f"deliver_{channel}", outcome).inc()
                log.info("alert delivery", extra={"fields": {"alert_id": alert.alert_id, "channel": channel,
                                                              "attempt": attempt, "outcome": outcome}})
                if outcome != "retry":
                    return
                await asyncio.sleep(delays[attempt - 1])
                attempt += 1
        finally:
            ACTIVE_JOBS.dec()

    def _dead(self, key: bytes | None, value: bytes | None, reason: str, error: str, partition: int, offset: int) -> None:
        self.dlq.send(key, value, reason, error, source_topic=self.topic, partition=partition, offset=offset)
        self.dlq.flush()


class _Listener(ConsumerRebalanceListener):
    def __init__(self, sink: AlertsSink):
        self.sink = sink

    async def on_partitions_revoked(self, revoked) -> None:
        await self.sink._drop(list(revoked))  # noqa: SLF001

    async def on_partitions_assigned(self, assigned) -> None:
        self.sink.ready.set()

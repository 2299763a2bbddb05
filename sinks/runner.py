"""`agenttrace sink`: the ClickHouse landing consumers (events, rollups, rules) and alert delivery.

`serve(settings, stop)` runs them inside any event loop (the API process runs it on the embedded
default, where chDB admits one process); `run(settings, args)` is the standalone worker with its
own health and metrics port (`sink_metrics_port`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

from agenttrace.clickhouse import ClickHouse, close_embedded, connect, migrate
from agenttrace.service import serve_health, setup_logging
from schemas.settings import Settings
from schemas.topics import ALERT_RULES, EVENTS, ROLLUPS
from sinks.alerts_sink import AlertsSink
from sinks.config import SinkSettings
from sinks.consumer import LandingConsumer
from sinks.dlq import DeadLetters
from sinks.events_sink import EventsHandler
from sinks.rollups_sink import RollupsHandler
from sinks.rules_sink import RulesHandler

log = logging.getLogger("sinks.runner")


def landing_consumers(settings: Settings, sink: SinkSettings, client: ClickHouse,
                      dlq: DeadLetters) -> list[LandingConsumer]:
    return [
        LandingConsumer(settings, sink, settings.topic(EVENTS), "agenttrace-sink-events", EventsHandler(), client, dlq),
        LandingConsumer(settings, sink, settings.topic(ROLLUPS), "agenttrace-sink-rollups", RollupsHandler(),
                        client, dlq),
        LandingConsumer(settings, sink, settings.topic(ALERT_RULES), "agenttrace-sink-rules", RulesHandler(),
                        client, dlq),
    ]


async def _migrate(client: ClickHouse, settings: Settings, stop: asyncio.Event, cap: float) -> None:
    """ClickHouse may come up after us: wait for it rather than fail."""
    delay = 0.2
    while not stop.is_set():
        try:
            await asyncio.to_thread(migrate, client, settings.retention_days)
            return
        except Exception as exc:  # noqa: BLE001
            log.warning("clickhouse not ready; retrying", extra={"fields": {"error": str(exc)[:300]}})
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)


async def serve(settings: Settings, stop: asyncio.Event, sink: SinkSettings | None = None,
                client: ClickHouse | None = None) -> None:
    """Run every sink until `stop` is set; each finishes the batch in hand and commits."""
    sink = sink or SinkSettings()
    client = client or connect(settings)
    await _migrate(client, settings, stop, sink.sink_backoff_max_seconds)
    if stop.is_set():
        return
    dlq = DeadLetters(settings)
    halt = threading.Event()
    consumers = landing_consumers(settings, sink, client, dlq)
    # Own threads: the landing loops block for their lifetime and must not hold the loop's default pool.
    pool = ThreadPoolExecutor(len(consumers), thread_name_prefix="sink")
    loop = asyncio.get_running_loop()
    tasks = [asyncio.ensure_future(loop.run_in_executor(pool, c.run, halt)) for c in consumers]
    tasks.append(asyncio.create_task(AlertsSink(settings, sink, client, dlq).run(stop), name="sink-alerts"))
    log.info("sinks started", extra={"fields": {"topics": [c.topic for c in consumers]}})
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    halt.set()
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    pool.shutdown(wait=False)
    await asyncio.to_thread(dlq.flush)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
            log.error("sink stopped with an error", exc_info=r)
            raise r


def run(settings: Settings, args: argparse.Namespace | None = None) -> int:
    setup_logging(settings.log_level)
    client = connect(settings)
    health = serve_health("sinks", settings.host, settings.sink_metrics_port, {"clickhouse": client.ping})
    log.info("sinks metrics", extra={"fields": {"port": settings.sink_metrics_port}})

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop, client=client)

    try:
        asyncio.run(main())
    finally:
        health.shutdown()
        # chDB's embedded server crashes if left to interpreter teardown: close it while we still can.
        close_embedded()
    return 0

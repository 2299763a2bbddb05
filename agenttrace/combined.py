"""Sinks and read API in one process: on the embedded default chDB admits one process per data
directory, so the ClickHouse writers and readers share it (threads of one process may both query)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import uvicorn

from agenttrace.service import setup_logging
from schemas.settings import Settings

log = logging.getLogger("agenttrace.combined")


async def serve(settings: Settings) -> None:
    from api.app import create_app
    from sinks.runner import serve as serve_sinks

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.host, port=settings.api_port,
                                           log_config=None, access_log=False, lifespan="on"))
    server.install_signal_handlers = lambda: None  # ours above stop both halves together
    sinks = asyncio.create_task(serve_sinks(settings, stop), name="sinks")
    api = asyncio.create_task(server.serve(), name="api")
    await stop.wait()
    server.should_exit = True
    # The sinks finish the batch in hand and commit before the process exits.
    await asyncio.gather(api, sinks, return_exceptions=True)


def run(settings: Settings, args: argparse.Namespace | None = None) -> int:
    from agenttrace.clickhouse import close_embedded

    setup_logging(settings.log_level)
    log.info("starting sinks and api in one process", extra={"fields": {"port": settings.api_port}})
    try:
        asyncio.run(serve(settings))
    finally:
        # Left to interpreter teardown, chDB can crash the process (SIGSEGV in its table shutdown).
        close_embedded()
    return 0

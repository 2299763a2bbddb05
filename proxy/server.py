"""The proxy process: a lean ASGI app (health endpoints via FastAPI, everything else forwarded)."""

from __future__ import annotations

import argparse
import gc
import logging
from typing import Any

from proxy.config import ProxySettings
from proxy.forward import Forwarder
from proxy.publisher import Publisher
from proxy.upstream import Upstreams
from schemas.keys import KeyStore
from schemas.settings import Settings

log = logging.getLogger("proxy")
HEALTH_PATHS = frozenset({"/livez", "/readyz", "/health", "/version", "/metrics"})


class ProxyApp:
    def __init__(self, settings: Settings, psettings: ProxySettings | None = None):
        from fastapi import FastAPI

        from agenttrace.service import health_router

        self.settings = settings
        self.ps = psettings or ProxySettings()
        self.publisher = Publisher(settings, self.ps)
        self.forwarder = Forwarder(self.ps, None, self.publisher, KeyStore(settings.config_path))
        self.health = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        # The proxy serves while the broker is away (it spools), so readiness does not hinge on Kafka.
        self.health.include_router(health_router("proxy", {
            "publisher": lambda: self.publisher.alive,
            "spool": lambda: self.publisher.spool.depth < self.publisher.spool.max_events,
        }))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"] in HEALTH_PATHS and scope["method"] == "GET":
                await self.health(scope, receive, send)
            else:
                await self.forwarder(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self.forwarder.client = Upstreams(self.ps)  # the pools want the running loop
                self.publisher.start()
                # Startup objects never die: keep them out of every collection, and collect young
                # objects less often (each call allocates many short-lived ones).
                gc.freeze()
                gc.set_threshold(50_000, 20, 100)
                log.info("proxy started", extra={"fields": {"port": self.settings.proxy_port}})
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.publisher.stop()
                if self.forwarder.client is not None:
                    await self.forwarder.client.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(settings: Settings, psettings: ProxySettings | None = None) -> ProxyApp:
    return ProxyApp(settings, psettings)


def run(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from agenttrace.service import setup_logging

    setup_logging(settings.log_level)
    logging.getLogger("httpcore").setLevel("WARNING")  # per-request connection traces, not ours to log
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.proxy_port, loop="uvloop", http="httptools",
                access_log=False, log_config=None, lifespan="on", timeout_keep_alive=75,
                # The upstream's Date and Server headers are relayed; uvicorn must not add second ones.
                server_header=False, date_header=False)

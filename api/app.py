"""The read-only API: Grafana JSON datasource under /grafana, REST under /api, health and metrics.

`create_app(settings, client=None)` builds it (tests pass their own ClickHouse client);
`run(settings, args)` serves it with uvicorn on `settings.api_port`. The API only reads.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn
from anyio import to_thread
from fastapi import FastAPI

from agenttrace.clickhouse import ClickHouse, connect, migrate
from agenttrace.metrics import HttpMetrics
from agenttrace.service import VERSION, health_router, setup_logging
from api import errors, grafana, overview, rest
from api.auth import Auth
from api.db import Db, Limits
from schemas.keys import KeyStore
from schemas.settings import Settings

log = logging.getLogger("agenttrace.api")


def create_app(settings: Settings, client: ClickHouse | None = None, limits: Limits | None = None) -> FastAPI:
    db = Db(client or connect(settings), limits)
    auth = Auth(KeyStore(settings.config_path))
    app = FastAPI(title="AgentTrace read API", version=VERSION,
                  description="Read-only access to AgentTrace data: Grafana JSON datasource under /grafana, "
                              "REST under /api. Every request needs an API key (Bearer or x-api-key); "
                              "a key reads only its own project.")
    errors.install(app)

    async def clickhouse_ok() -> bool:
        return await to_thread.run_sync(db.ping)

    app.include_router(health_router("api", {"clickhouse": clickhouse_ok}))
    app.include_router(grafana.router(db, auth))
    app.include_router(rest.router(db, auth))
    app.include_router(overview.router())
    app.mount("/static", overview.static_files(), name="static")
    app.add_middleware(HttpMetrics)
    app.state.db = db
    return app


def run(settings: Settings, args: argparse.Namespace | None = None) -> int:
    setup_logging(settings.log_level)
    client = connect(settings)
    try:
        # Schema only (CREATE … IF NOT EXISTS, idempotent): on a fresh store the API answers with empty
        # results instead of errors. The API writes no data; a read-only user just skips this.
        migrate(client, settings.retention_days)
    except Exception as exc:
        log.warning("schema migrations not applied", extra={"fields": {"error": str(exc)[:500]}})
    app = create_app(settings, client)
    log.info("api listening", extra={"fields": {"host": settings.host, "port": settings.api_port}})
    uvicorn.run(app, host=settings.host, port=settings.api_port, log_config=None, access_log=False)
    return 0

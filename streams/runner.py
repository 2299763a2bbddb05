"""`agenttrace stream`: the live dataflows with Bytewax recovery, health and metrics."""

from __future__ import annotations

import argparse
import logging
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from agenttrace.service import serve_health, setup_logging
from schemas.settings import Settings
from schemas.topics import EVENTS
from streams.config import StreamConfig
from streams.kafka_io import partitions
from streams.rollups import FlowSpec, build_flow

log = logging.getLogger("streams.runner")
RECOVERY_PARTITIONS = 4  # fixed: Bytewax refuses a store whose partition count changes


def recovery_dir(settings: Settings) -> Path:
    return settings.home_dir / "streams" / "recovery"


def recovery_config(settings: Settings) -> RecoveryConfig:
    db = recovery_dir(settings)
    if not any(db.glob("part-*.sqlite3")):
        db.mkdir(parents=True, exist_ok=True)
        init_db_dir(db, RECOVERY_PARTITIONS)
    return RecoveryConfig(db)


def run(settings: Settings, args: argparse.Namespace) -> None:
    setup_logging(settings.log_level)
    cfg = StreamConfig()
    workers = max(1, int(getattr(args, "workers", 1) or 1))

    def kafka_ok() -> bool:
        return bool(partitions(settings.kafka_bootstrap, settings.topic(EVENTS)))

    serve_health("streams", settings.host, settings.stream_metrics_port, {"kafka": kafka_ok})
    spec = FlowSpec.from_settings(settings, cfg, live=True)
    log.info("stream starting", extra={"fields": {"workers": workers, "recovery": str(recovery_dir(settings)),
                                                  "port": settings.stream_metrics_port}})
    cli_main(build_flow(spec), workers_per_process=workers,
             epoch_interval=timedelta(seconds=cfg.epoch_seconds), recovery_config=recovery_config(settings))

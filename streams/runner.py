"""`agenttrace stream`: the live dataflows with Bytewax recovery, health and metrics."""

from __future__ import annotations

import argparse
import json
import logging
import time
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


def recovery_config(settings: Settings, process_id: int = 0) -> RecoveryConfig:
    db = recovery_dir(settings)
    if process_id == 0 and not any(db.glob("part-*.sqlite3")):
        db.mkdir(parents=True, exist_ok=True)
        init_db_dir(db, RECOVERY_PARTITIONS)
    deadline = time.monotonic() + 60
    while len(list(db.glob("part-*.sqlite3"))) < RECOVERY_PARTITIONS:  # other processes wait for process 0
        if time.monotonic() > deadline:
            raise SystemExit(f"recovery store {db} was not initialised by process 0")
        time.sleep(0.2)
    return RecoveryConfig(db)


def routing_workers(settings: Settings, total: int) -> int:
    """The worker count partitions were keyed for when the recovery store was created. Partition keys
    name source offsets and window state in the snapshots, so they must not change when the worker
    count does; a different count then only balances less evenly."""
    path = recovery_dir(settings) / "routing.json"
    if path.exists():
        return int(json.loads(path.read_text())["workers"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"workers": total}))
    return total


def run(settings: Settings, args: argparse.Namespace) -> None:
    setup_logging(settings.log_level)
    cfg = StreamConfig()
    workers = max(1, int(getattr(args, "workers", 1) or 1))

    def kafka_ok() -> bool:
        return bool(partitions(settings.kafka_bootstrap, settings.topic(EVENTS)))

    # Processes of one cluster on one host serve health on consecutive ports.
    port = settings.stream_metrics_port + cfg.process_id
    serve_health("streams", settings.host, port, {"kafka": kafka_ok})
    processes = len(cfg.addresses.split(",")) if cfg.addresses else 1
    recovery = recovery_config(settings, cfg.process_id)
    spec = FlowSpec.from_settings(settings, cfg, live=True, workers=routing_workers(settings, workers * processes))
    log.info("stream starting", extra={"fields": {"workers": workers, "recovery": str(recovery_dir(settings)),
                                                  "port": port, "process_id": cfg.process_id}})
    cluster = {"addresses": cfg.addresses.split(","), "process_id": cfg.process_id} if cfg.addresses else {}
    cli_main(build_flow(spec), workers_per_process=workers, epoch_interval=timedelta(seconds=cfg.epoch_seconds),
             recovery_config=recovery, **cluster)

"""`agenttrace replay --from T [--to T] [--reprice]`: the same aggregation over the retained log.

Reads each partition from the log offset at `--from` (aligned down to a window start, minus
wait + lateness + one window, so the first windows are whole) to the offset at `--to` plus that
margin. A rollup's version is its event count: whole windows replace stored ones with an equal
version (identical bytes unless `--reprice`), and a window cut by the range has fewer events,
so a lower version, and never replaces a complete stored one. Alerts
evaluated during a replay carry `replay=true` so sinks do not deliver them again; `agent_down`
is not evaluated (silence is a processing-time fact). No recovery: a failed replay is re-run.

The replay runs as a Bytewax cluster of `AGENTTRACE_STREAM_REPLAY_PROCESSES` processes (default:
one per CPU) of one worker each, splitting the partitions; Python workers in one process share a
GIL, processes do not. Every process gets the same plan (offsets, rules) through a pickle file.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.run import cli_main

from agenttrace.service import setup_logging
from schemas.alerts import AlertRule
from schemas.settings import Settings
from schemas.topics import ALERT_RULES, EVENTS
from streams import metrics
from streams.config import StreamConfig
from streams.kafka_io import offsets_at, read_rules
from streams.rollups import FlowSpec, build_flow

log = logging.getLogger("streams.replay")


def replay_spec(settings: Settings, cfg: StreamConfig, start: datetime, end: datetime | None,
                reprice: bool = False) -> FlowSpec:
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    end = end if end is None or end.tzinfo else end.replace(tzinfo=UTC)
    width = cfg.window_seconds
    first = int(start.timestamp() // width) * width
    margin = timedelta(seconds=cfg.lateness_seconds + cfg.wait_seconds + width)
    topic = settings.topic(EVENTS)
    begin = offsets_at(settings.kafka_bootstrap, topic, datetime.fromtimestamp(first, UTC) - margin)
    stop = offsets_at(settings.kafka_bootstrap, topic, None if end is None else end + margin)
    if end is not None:
        now_end = offsets_at(settings.kafka_bootstrap, topic, None)
        stop = {p: min(o, now_end.get(p, o)) for p, o in stop.items()}
    rules = []
    for rule_id, offset, value in read_rules(settings.kafka_bootstrap, settings.topic(ALERT_RULES)):
        try:
            rules.append((rule_id, offset, AlertRule.model_validate_json(value) if value is not None else None))
        except ValueError:
            log.warning("bad alert rule skipped", extra={"fields": {"rule_id": rule_id}})
    latest: dict[str, tuple[str, int, AlertRule | None]] = {r[0]: r for r in rules}
    return FlowSpec.from_settings(settings, cfg, live=False, replay=True, reprice=reprice, start=begin, end=stop,
                                  rules_topic=None,
                                  rules=sorted(latest.values(), key=lambda r: r[1]), flow_name="replay")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(settings: Settings, args: argparse.Namespace) -> None:
    setup_logging(settings.log_level)
    cfg = StreamConfig()
    spec = replay_spec(settings, cfg, args.start, getattr(args, "end", None), bool(getattr(args, "reprice", False)))
    total = sum(max(0, spec.end[p] - spec.start.get(p, 0)) for p in spec.end) if spec.end and spec.start else 0
    procs = int(os.environ.get("AGENTTRACE_STREAM_REPLAY_PROCESSES", 0)) or (os.cpu_count() or 1)
    procs = max(1, min(procs, len(spec.end or {}) or 1))
    log.info("replay starting", extra={"fields": {"from": args.start.isoformat(), "records": total,
                                                  "reprice": spec.reprice, "processes": procs}})
    spec.workers = procs
    t = time.perf_counter()
    epoch = timedelta(seconds=cfg.epoch_seconds)
    if procs == 1:
        cli_main(build_flow(spec), epoch_interval=epoch)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            plan = Path(tmp) / "plan.pickle"
            plan.write_bytes(pickle.dumps(spec))
            addresses = [f"127.0.0.1:{_free_port()}" for _ in range(procs)]
            others = [subprocess.Popen([sys.executable, "-m", "streams.replay", str(plan), ",".join(addresses), str(i)])
                      for i in range(1, procs)]
            try:
                cli_main(build_flow(spec), addresses=addresses, process_id=0, epoch_interval=epoch)
                codes = [p.wait() for p in others]
            finally:
                for p in others:
                    if p.poll() is None:
                        p.kill()
            if any(codes):
                raise SystemExit(f"replay process failed with exit codes {codes}")
    took = time.perf_counter() - t
    log.info("replay done", extra={"fields": {"records": total, "seconds": round(took, 3),
                                              "records_per_s": round(total / took) if took else None,
                                              "events_this_process": metrics.EVENTS.labels("replay")._value.get()}})


def _cluster_member(plan: str, addresses: str, index: int) -> None:
    spec: FlowSpec = pickle.loads(Path(plan).read_bytes())
    cli_main(build_flow(spec), addresses=addresses.split(","), process_id=index,
             epoch_interval=timedelta(seconds=spec.cfg.epoch_seconds))


if __name__ == "__main__":  # a further process of a multi-process replay
    _cluster_member(sys.argv[1], sys.argv[2], int(sys.argv[3]))

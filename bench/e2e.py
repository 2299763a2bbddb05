"""End to end: events/s sustained through gateway -> broker -> streams -> ClickHouse, and freshness.

    python -m bench.e2e [--rate 50000] [--seconds 30] [--warmup 10] [--gateway-workers 1]
    python -m bench.e2e --rate 0 [--concurrency 8]      # closed loop: as fast as the gateway answers

The whole pipeline runs as in `agenttrace up` (separate processes, embedded chDB in the store
process). Batches of 500 realistic events are posted for `--seconds`, at a fixed offered rate (open
loop, so a pipeline that falls behind shows it as freshness) or in a closed loop, after `--warmup`
seconds of the same load (a sustained rate: the broker's JIT compiler and first connections are not
part of it); then we wait until the rollups count every llm call and read ClickHouse. Every event
accepted must be there once; the figures count the events received after the warm-up: p50/p99
freshness of (row inserted - event received at the gateway), the end-to-end rate = rows landed /
(time from the end of the warm-up until the last of them was inserted), CPU per process over the same
span, and how long after the load the rollups became complete (bounded below by the stream window plus
its wait). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from agenttrace import stack
from bench.ingest import RssSampler, bodies, closed_loop, open_loop
from schemas.settings import Settings
from tests.e2e.pipeline import Pipeline
from tests.support import free_port

STREAM_ENV = {"AGENTTRACE_STREAM_WINDOW_SECONDS": "10", "AGENTTRACE_STREAM_WAIT_SECONDS": "2"}


def clickhouse_figures(p: Pipeline, measured_from: float) -> dict:
    after = f"received_at >= fromUnixTimestamp64Milli({int(measured_from * 1000)})"
    rows, rollups = p.query_store(
        "SELECT count() AS rows, uniqExact(event_id) AS ids, countIf(type = 'llm_call') AS calls, "
        f"countIf({after}) AS measured, "
        f"quantileIf(0.5)(dateDiff('millisecond', received_at, inserted_at), {after}) AS p50_ms, "
        f"quantileIf(0.99)(dateDiff('millisecond', received_at, inserted_at), {after}) AS p99_ms, "
        f"toUnixTimestamp64Milli(maxIf(inserted_at, {after})) AS last_ms "
        "FROM {db}.events",
        "SELECT sum(calls) AS n FROM {db}.rollups_1m FINAL")
    return {**rows[0], "rollup_calls": rollups[0]["n"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=30, help="measured load, after the warm-up")
    ap.add_argument("--warmup", type=float, default=10, help="seconds of the same load before measuring")
    ap.add_argument("--rate", type=float, default=50_000, help="events/s offered (0: closed loop)")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight of the closed loop")
    ap.add_argument("--gateway-workers", type=int, default=1)
    ap.add_argument("--drain-timeout", type=float, default=300)
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="agenttrace-bench-e2e-"))
    port = free_port()
    broker = Settings(home=root / "broker", kafka_port=port, kafka_controller_port=free_port(),
                      kafka_bootstrap=f"127.0.0.1:{port}", kafka_heap="1g")
    stack.up(broker, progress=lambda m: print(m, file=sys.stderr))
    p = Pipeline(root / "pipeline", broker.kafka_bootstrap,
                 extra_env={**STREAM_ENV, "AGENTTRACE_GATEWAY_WORKERS": str(args.gateway_workers)})
    samplers: dict[str, RssSampler] = {}
    try:
        p.start()
        for name, proc in p.procs.items():
            samplers[name] = RssSampler(proc.pid)
            samplers[name].start()
        payloads, _ = bodies(200, 500)
        if broker_pid := stack.read_pid(stack.paths(broker)):
            samplers["broker"] = RssSampler(broker_pid)
            samplers["broker"].start()
        cpu0: dict[str, float] = {}
        t0 = time.time() + args.warmup

        def measure_from_now() -> None:
            cpu0.update({name: s.cpu_seconds() for name, s in samplers.items()}, load_generator=time.process_time())

        threading.Timer(args.warmup, measure_from_now).start()
        url = p.url("gateway") + "/api/events"
        total = args.warmup + args.seconds
        if args.rate > 0:
            load = asyncio.run(open_loop(url, p.token, payloads, 500, args.rate / 500, total))
            accepted = (load["requests"] - load["errors"]) * 500
        else:
            load = asyncio.run(closed_loop(url, p.token, payloads, 500, total, args.concurrency))
            accepted = load["events_per_s"] * load["seconds"]
        sent_end = time.time()
        api = httpx.Client(base_url=p.url("store"), headers=p.auth, timeout=30)
        window = {"from": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
                  "to": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
        # Done when the rollups count calls and that count has not moved for 20 s (windows close
        # once the partitions go idle, a few seconds after the load stops).
        last, stable_since = -1, time.time()
        while time.time() - sent_end < args.drain_timeout:
            calls = api.get("/api/stats/summary", params=window).json().get("calls") or 0
            if calls != last:
                last, stable_since = calls, time.time()
                cpu_done = {name: s.cpu_seconds() for name, s in samplers.items()}
                own_done = time.process_time()
            elif calls > 0 and time.time() - stable_since > 20:
                break
            time.sleep(0.5)
        landed_at = stable_since
        cpu = {name: round(cpu_done[name] - cpu0[name], 1) for name in samplers}
        cpu["load_generator"] = round(own_done - cpu0["load_generator"], 1)
        rss = {name: round(s.peak_mb, 1) for name, s in samplers.items()}
        p.kill("store", sig=15)
        ch = clickhouse_figures(p, t0)
    finally:
        for s in samplers.values():
            s.stop.set()
        p.stop_all()
        stack.down(broker)
    out = {
        "mode": f"open loop at {args.rate:.0f} events/s" if args.rate > 0 else f"closed loop, {args.concurrency} in flight",
        "gateway_workers": args.gateway_workers,
        "gateway": load,
        "events_accepted": round(accepted),
        "clickhouse_rows": ch["rows"],
        "every_event_once": ch["rows"] == ch["ids"] == round(accepted),
        "llm_calls": ch["calls"],
        "rollup_calls": ch["rollup_calls"],
        "all_calls_in_rollups": ch["rollup_calls"] == ch["calls"],
        "warmup_s": args.warmup,
        "measured_events": ch["measured"],
        # events received after the warm-up / (last of them inserted - end of the warm-up)
        "e2e_events_per_s": round(ch["measured"] / max(1e-9, ch["last_ms"] / 1000 - t0)),
        "freshness_p50_ms": ch["p50_ms"],
        "freshness_p99_ms": ch["p99_ms"],
        "rollups_complete_seconds_after_load": round(landed_at - sent_end, 1),
        "rss_mb": rss,
        # CPU seconds per process from the end of the warm-up until the rollups were complete, and per
        # event measured (2 cores carry at most 2e6 / sum of cpu_us_per_event events/s)
        "cpu_s": cpu,
        "cpu_us_per_event": {name: round(v * 1e6 / max(1, ch["measured"]), 1) for name, v in cpu.items()},
        "cpu_us_per_event_total": round(sum(cpu.values()) * 1e6 / max(1, ch["measured"]), 1),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

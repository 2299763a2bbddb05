"""End to end: events/s sustained through gateway -> broker -> streams -> ClickHouse, and freshness.

    python -m bench.e2e [--seconds 30] [--concurrency 8]

The whole pipeline runs as in `agenttrace up` (separate processes, embedded chDB in the store
process). A closed loop posts batches of 500 realistic events for `--seconds`; then we wait until the
rollups count every llm call and read ClickHouse: rows landed, p99 of (row inserted - event received
at the gateway), and the end-to-end rate = events / (time from first send until the last rollup
landed). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from agenttrace import stack
from bench.ingest import RssSampler, bodies, closed_loop
from schemas.settings import Settings
from tests.e2e.pipeline import Pipeline
from tests.support import free_port

STREAM_ENV = {"AGENTTRACE_STREAM_WINDOW_SECONDS": "10", "AGENTTRACE_STREAM_WAIT_SECONDS": "2"}


def clickhouse_figures(p: Pipeline) -> dict:
    rows, rollups = p.query_store(
        "SELECT count() AS rows, countIf(type = 'llm_call') AS calls, "
        "quantile(0.5)(dateDiff('millisecond', received_at, inserted_at)) AS p50_ms, "
        "quantile(0.99)(dateDiff('millisecond', received_at, inserted_at)) AS p99_ms, "
        "toUnixTimestamp64Milli(min(received_at)) AS first_ms, toUnixTimestamp64Milli(max(inserted_at)) AS last_ms "
        "FROM {db}.events",
        "SELECT sum(calls) AS n FROM {db}.rollups_1m FINAL")
    return {**rows[0], "rollup_calls": rollups[0]["n"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--drain-timeout", type=float, default=300)
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="agenttrace-bench-e2e-"))
    port = free_port()
    broker = Settings(home=root / "broker", kafka_port=port, kafka_controller_port=free_port(),
                      kafka_bootstrap=f"127.0.0.1:{port}", kafka_heap="1g")
    stack.up(broker, progress=lambda m: print(m, file=sys.stderr))
    p = Pipeline(root / "pipeline", broker.kafka_bootstrap, extra_env=STREAM_ENV)
    samplers: dict[str, RssSampler] = {}
    try:
        p.start()
        for name, proc in p.procs.items():
            samplers[name] = RssSampler(proc.pid)
            samplers[name].start()
        payloads, _ = bodies(200, 500)
        t0 = time.time()
        load = asyncio.run(closed_loop(p.url("gateway") + "/api/events", p.token, payloads, 500, args.seconds, args.concurrency))
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
            elif calls > 0 and time.time() - stable_since > 20:
                break
            time.sleep(0.5)
        landed_at = stable_since
        rss = {name: round(s.peak_mb, 1) for name, s in samplers.items()}
        p.kill("store", sig=15)
        ch = clickhouse_figures(p)
    finally:
        for s in samplers.values():
            s.stop.set()
        p.stop_all()
        stack.down(broker)
    accepted = load["events_per_s"] * load["seconds"]
    out = {
        "gateway": load,
        "events_accepted": round(accepted),
        "clickhouse_rows": ch["rows"],
        "llm_calls": ch["calls"],
        "rollup_calls": ch["rollup_calls"],
        "all_calls_in_rollups": ch["rollup_calls"] == ch["calls"],
        "e2e_events_per_s": round(ch["rows"] / max(1e-9, landed_at - t0)),
        "landing_events_per_s": round(ch["rows"] / max(1e-9, (ch["last_ms"] - ch["first_ms"]) / 1000)),
        "freshness_p50_ms": ch["p50_ms"],
        "freshness_p99_ms": ch["p99_ms"],
        "drain_seconds_after_load": round(landed_at - sent_end, 1),
        "rss_mb": rss,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

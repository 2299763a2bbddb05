"""Soak: the whole pipeline at a fixed rate for N minutes; memory and freshness over time.

    python -m bench.soak [--minutes 15] [--warmup-minutes 5] [--rate 2000]

Samples every service's RSS every 10 s, then reads ClickHouse for freshness (row inserted minus
event received) per 30 s of the run. "No leak" means RSS flat after warm-up: we print, per service,
the median RSS of the last minute minus that of the first minute after warm-up and the least-squares
RSS trend after warm-up in MB/min. The store process (embedded ClickHouse) takes about five minutes to
settle: outdated parts are kept for `old_parts_lifetime` (8 min) and removed in waves, so its RSS rises
for the first minutes and then stays in a band. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agenttrace import stack
from bench.ingest import RssSampler, bodies, open_loop
from schemas.settings import Settings
from tests.e2e.pipeline import Pipeline
from tests.support import free_port


def freshness_series(p: Pipeline) -> list[dict]:
    return p.query_store(
        "SELECT toUnixTimestamp(toStartOfInterval(received_at, INTERVAL 30 SECOND)) AS t, count() AS rows, "
        "quantile(0.99)(dateDiff('millisecond', received_at, inserted_at)) AS p99_ms "
        "FROM {db}.events GROUP BY t ORDER BY t")[0]


SAMPLES_PER_MINUTE = 6  # one RSS sample per 10 s chunk


def _after_warmup(v: list[float], warmup_samples: int) -> list[float]:
    return v[min(max(1, warmup_samples), len(v) - 1):]


def rss_growth(v: list[float], warmup_samples: int) -> float:
    """Median RSS of the last minute minus that of the first minute after warm-up.

    Medians, not single samples: the embedded ClickHouse merges parts in the background and a merge
    holds up to ~200 MB for a few seconds, so one sample says more about merge timing than about a leak.
    """
    rest = _after_warmup(v, warmup_samples)
    if len(rest) < 2:
        return 0.0
    n = max(1, min(SAMPLES_PER_MINUTE, len(rest) // 2))
    return round(statistics.median(rest[-n:]) - statistics.median(rest[:n]), 1)


def rss_slope_mb_per_min(v: list[float], warmup_samples: int) -> float:
    """Least-squares trend of RSS after warm-up, MB per minute (a leak shows as a steady positive slope)."""
    rest = _after_warmup(v, warmup_samples)
    if len(rest) < 2:
        return 0.0
    return round(statistics.linear_regression(range(len(rest)), rest).slope * SAMPLES_PER_MINUTE, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--warmup-minutes", type=float, default=5)
    ap.add_argument("--rate", type=float, default=2000, help="events per second offered")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="agenttrace-soak-"))
    port = free_port()
    broker = Settings(home=root / "broker", kafka_port=port, kafka_controller_port=free_port(),
                      kafka_bootstrap=f"127.0.0.1:{port}")
    stack.up(broker, progress=lambda m: print(m, file=sys.stderr))
    p = Pipeline(root / "pipeline", broker.kafka_bootstrap)
    per_body = 100
    series: dict[str, list[float]] = {}
    try:
        p.start()
        samplers = {name: RssSampler(proc.pid) for name, proc in p.procs.items()}
        payloads, _ = bodies(100, per_body)
        end = time.time() + args.minutes * 60
        sent, errors = 0, 0
        while time.time() < end:
            chunk = min(10.0, end - time.time())
            res = asyncio.run(open_loop(p.url("gateway") + "/api/events", p.token, payloads, per_body, args.rate / per_body, chunk))
            sent += res["requests"] * per_body
            errors += res["errors"]
            for name, s in samplers.items():
                series.setdefault(name, []).append(round(s.rss_mb(), 1))
        time.sleep(5)
        p.kill("store", sig=15)
        fresh = freshness_series(p)
    finally:
        p.stop_all()
        stack.down(broker)
    warm = round(args.warmup_minutes * SAMPLES_PER_MINUTE)
    growth = {name: rss_growth(v, warm) for name, v in series.items()}
    slope = {name: rss_slope_mb_per_min(v, warm) for name, v in series.items()}
    print(json.dumps({
        "minutes": args.minutes, "warmup_minutes": args.warmup_minutes, "offered_events_per_s": args.rate, "events_sent": sent, "request_errors": errors,
        "rss_mb_every_10s": series, "rss_growth_after_warmup_mb": growth,
        "max_rss_growth_after_warmup_mb": max(growth.values()),
        "rss_slope_after_warmup_mb_per_min": slope,
        "max_rss_slope_after_warmup_mb_per_min": max(slope.values()),
        "freshness_p99_ms_per_30s": [f["p99_ms"] for f in fresh],
        "freshness_p99_ms_max": max((f["p99_ms"] for f in fresh), default=None),
        "rows_landed": sum(f["rows"] for f in fresh),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

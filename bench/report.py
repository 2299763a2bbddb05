"""`make bench`: run every benchmark in bench/, then write one JSON + Markdown report with each
figure next to its target. Each benchmark prints one JSON object as its last stdout line."""

from __future__ import annotations

import argparse
import json
import operator
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agenttrace import stack
from schemas.settings import Settings
from tests.support import free_port

OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


@dataclass(frozen=True)
class Target:
    label: str
    path: str  # dotted path into the benchmark's JSON
    op: str
    value: float
    unit: str = ""


@dataclass(frozen=True)
class Bench:
    name: str
    argv: list[str]
    targets: list[Target]


BENCHES: list[Bench] = [
    Bench("ingest", ["bench.ingest"], [
        Target("gateway events/s (batches of 500)", "gateway.events_per_s", ">=", 100_000, "events/s"),
        Target("gateway / bare producer", "ratio", ">=", 0.5),
        Target("p99 request latency at half load", "half_load.p99_ms", "<=", 50, "ms"),
        Target("single-event requests/s", "single_event.requests_per_s", ">=", 5_000, "req/s"),
        Target("gateway RSS", "gateway_rss_mb", "<=", 250, "MB")]),
    Bench("proxy", ["bench.proxy"], [
        Target("added p50", "json.latency.added_p50_ms", "<=", 1, "ms"),
        Target("added p99", "json.latency.added_p99_ms", "<=", 5, "ms"),
        Target("TTFT added p50 (streams)", "stream.latency.ttft_added_p50_ms", "<=", 1, "ms"),
        Target("proxied requests/s", "json.throughput.proxied.rps", ">=", 3_000, "req/s"),
        Target("proxy RSS", "proxy.peak_rss_mb", "<=", 200, "MB")]),
    Bench("streams", ["bench.streams"], [
        Target("rollup events/s, 1 worker", "throughput.rollup_events_per_s_1_workers", ">=", 50_000, "events/s"),
        Target("replay events/s", "replay.replay_events_per_s", ">=", 100_000, "events/s"),
        Target("RSS at 100k active keys", "rss.rss_mb_at_active_keys", "<=", 500, "MB"),
        Target("rollup delay after watermark (max)", "delay.rollup_delay_s.max", "<=", 2, "s"),
        Target("alert delay", "delay.alert_delay_s", "<=", 5, "s")]),
    Bench("sinks", ["bench.sinks"], [
        Target("rows/s landed", "throughput.landed_rows_per_s", ">=", 200_000, "rows/s"),
        Target("landed / bare insert", "throughput.ratio", ">=", 0.5),
        Target("freshness p99 at 10k events/s", "freshness.freshness_p99_s", "<=", 2, "s"),
        Target("webhook delay (max)", "webhook.webhook_delay_max_s", "<=", 1, "s")]),
    Bench("api", ["bench.api"], [
        Target("7-day cost by model p99", "queries.cost_by_model_7d.p99_ms", "<=", 50, "ms"),
        Target("p95 latency by agent, 1h buckets, 7 days p99", "queries.p95_latency_by_agent_1h_7d.p99_ms", "<=", 50, "ms"),
        Target("traces table with filters p99", "queries.traces_table_filtered_24h.p99_ms", "<=", 300, "ms"),
        Target("export rows/s", "export.rows_per_s", ">=", 200_000, "rows/s")]),
    Bench("e2e", ["bench.e2e"], [
        Target("gateway -> broker -> streams -> ClickHouse", "e2e_events_per_s", ">=", 50_000, "events/s"),
        Target("freshness p99", "freshness_p99_ms", "<=", 2_000, "ms"),
        Target("every accepted event in ClickHouse once (1 = yes)", "every_event_once", "==", 1)]),
    Bench("soak", ["bench.soak"], [
        Target("largest RSS growth after warm-up", "max_rss_growth_after_warmup_mb", "<=", 50, "MB"),
        Target("steepest RSS trend after warm-up", "max_rss_slope_after_warmup_mb_per_min", "<=", 2, "MB/min"),
        Target("worst 30 s freshness p99", "freshness_p99_ms_max", "<=", 2_000, "ms")]),
]


def lookup(doc: dict[str, Any], path: str) -> Any:
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def run_bench(b: Bench, timeout: float) -> dict[str, Any]:
    t = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", *b.argv], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    doc = last_json(proc.stdout)
    if proc.returncode != 0 or doc is None:
        return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}"}
    doc["_seconds"] = round(time.monotonic() - t, 1)
    return doc


def last_json(text: str) -> dict[str, Any] | None:
    """The last JSON object printed, on one line or indented (its braces at column 0)."""
    starts = [m.start() for m in re.finditer(r"(?m)^\{", text)]
    for pos in reversed(starts):
        try:
            doc = json.loads(text[pos:])
        except json.JSONDecodeError:
            try:
                doc = json.loads(text[pos:].splitlines()[0])
            except (json.JSONDecodeError, IndexError):
                continue
        if isinstance(doc, dict):
            return doc
    return None


def evaluate(b: Bench, doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for t in b.targets:
        v = lookup(doc, t.path)
        met = None if v is None else bool(OPS[t.op](v, t.value))
        rows.append({"bench": b.name, "figure": t.label, "value": v, "target": f"{t.op} {t.value:g} {t.unit}".strip(),
                     "met": met})
    return rows


def markdown(rows: list[dict[str, Any]], errors: dict[str, str]) -> str:
    out = ["# AgentTrace benchmark report", "", "| benchmark | figure | measured | target | met |", "|---|---|---|---|---|"]
    for r in rows:
        v = r["value"]
        shown = "n/a" if v is None else (f"{v:,.3f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
        met = {True: "yes", False: "**no**", None: "n/a"}[r["met"]]
        out.append(f"| {r['bench']} | {r['figure']} | {shown} | {r['target']} | {met} |")
    for name, err in errors.items():
        out += ["", f"**{name} failed:** `{err.strip().splitlines()[-1] if err.strip() else err}`"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", help="names of benchmarks to run")
    ap.add_argument("--out", default="bench/out", help="folder for report.json and report.md")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args(argv)
    results, rows, errors = {}, [], {}
    # Benchmarks that use the broker of AGENTTRACE_KAFKA_BOOTSTRAP get one of their own here.
    port = free_port()
    broker = Settings(home=Path(tempfile.mkdtemp(prefix="agenttrace-bench-broker-")), kafka_port=port,
                      kafka_controller_port=free_port(), kafka_bootstrap=f"127.0.0.1:{port}", kafka_heap="1g")
    stack.up(broker, progress=lambda m: print(m, file=sys.stderr))
    os.environ["AGENTTRACE_KAFKA_BOOTSTRAP"] = broker.kafka_bootstrap
    try:
        for b in BENCHES:
            if args.only and b.name not in args.only:
                continue
            print(f"running {b.name} ...", file=sys.stderr, flush=True)
            doc = run_bench(b, args.timeout)
            results[b.name] = doc
            if "error" in doc:
                errors[b.name] = doc["error"]
            rows += evaluate(b, doc)
    finally:
        stack.down(broker)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"results": results, "figures": rows}, indent=2))
    (out / "report.md").write_text(markdown(rows, errors))
    print(json.dumps({"figures": rows, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

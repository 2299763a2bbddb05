"""Read-API benchmark: prints one JSON document of figures (last stdout line).

    .venv/bin/python -m bench.api [--events 10000000] [--days 30] [--clients 20] [--seconds 10]
                                  [--export-rows 2000000] [--budget 900] [--data-dir DIR]

Generates --events raw events over --days inside ClickHouse (INSERT ... SELECT FROM numbers()), builds
rollups_1m (and the hour/day rollups when the schema has them) from them in SQL, then serves the API
from a child process (it owns the embedded chDB directory) and measures from this process, over
loopback HTTP with --clients concurrent clients, the p50/p99 latency of the dashboard queries:
- cost_by_model_7d: 7-day cost per model at 1 h buckets (rollups)
- p95_latency_by_agent_1h_24h / _7d: p95 latency per agent at 1 h buckets over 24 h / 7 days (rollups)
- traces_table_filtered_24h: traces table (100 newest) of one agent and one of its models over 24 h (raw)
An empty answer counts as an error.
and the export rate (ndjson, --export-rows rows, one client). Targets: rollup-backed p99 <= 50 ms,
raw p99 <= 300 ms, export >= 200,000 rows/s. The machine is shared: figures are what they are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from schemas.sketch import LOG_GAMMA, ZERO_KEY

MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4"),
          ("anthropic", "claude-haiku-3.5"), ("google", "gemini-1.5-pro"), ("mistral", "mistral-large")]
AGENTS = 20
PROJECT = "bench"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def generate(db: str, client, events: int, days: int) -> dict[str, float]:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start_ms = int((end - timedelta(days=days)).timestamp() * 1000) + 60_000
    step = (days * 86_400_000 - 120_000) / events
    providers = "[" + ",".join(f"'{p}'" for p, _ in MODELS) + "]"
    models = "[" + ",".join(f"'{m}'" for _, m in MODELS) + "]"
    t = time.perf_counter()
    client.command(f"""
INSERT INTO {db}.events (event_id, type, timestamp, received_at, project_id, agent_id, trace_id, span_id,
    session_id, user_id, release, version, name, tags, provider, model, model_family, tokens_in, tokens_out,
    latency_ms, ttft_ms, status_code, cost_usd, source, error_type, message)
SELECT generateUUIDv4(number), kind, ts, ts, '{PROJECT}', concat('agent-', toString(a)),
       concat('t', toString(intDiv(number, 8))), concat('s', toString(number)),
       concat('sess-', toString(intDiv(number, 40) % 5000)), concat('user-', toString(h % 500)),
       concat('r', toString(intDiv(number, 1000000))), 'v1', ['plan', 'act', 'reflect'][1 + h % 3],
       if(h % 4 = 0, ['prod'], ['prod', 'eu']),
       if(kind = 'llm_call', {providers}[1 + m], ''), if(kind = 'llm_call', {models}[1 + m], ''),
       if(kind = 'llm_call', {models}[1 + m], ''),
       if(kind = 'llm_call', 100 + h % 4000, NULL), if(kind = 'llm_call', 10 + intDiv(h, 65536) % 1000, NULL),
       if(kind = 'llm_call', round(exp(randNormal(6.5, 0.8)), 3), NULL),
       if(kind = 'llm_call', round(exp(randNormal(5.3, 0.6)), 3), NULL),
       if(kind = 'llm_call', if(intDiv(h, 16777216) % 50 = 0, 500, 200), NULL),
       if(kind = 'llm_call', (100 + h % 4000) * 2.5e-6 + (10 + intDiv(h, 65536) % 1000) * 1e-5, NULL),
       'sdk', if(kind = 'error', 'ToolError', ''), if(kind = 'error', 'tool failed', '')
FROM (SELECT number, cityHash64(number) AS h, h % {AGENTS} AS a, (a + intDiv(h, 256) % 2) % {len(MODELS)} AS m,
             multiIf(h % 100 < 85, 'llm_call', h % 100 < 90, 'error', h % 100 < 95, 'span', 'heartbeat') AS kind,
             fromUnixTimestamp64Milli(toInt64({start_ms} + number * {step!r}), 'UTC') AS ts
      FROM numbers({events}))""")
    raw_s = time.perf_counter() - t
    t = time.perf_counter()

    def sketch(col: str) -> str:
        return (f"sumMapIf(map(toInt32(if(ifNull({col}, 1) <= 0.001, {ZERO_KEY}, "
                f"ceil(log(ifNull({col}, 1)) / {LOG_GAMMA!r}))), toUInt64(1)), {col} IS NOT NULL)")

    client.command(f"""
INSERT INTO {db}.rollups_1m (window_start, window_end, project_id, agent_id, provider, model, calls, errors,
    error_events, tokens_in, tokens_out, tokens_cached, cost_usd, latency_ms_sum, latency_ms_max, latency_sketch,
    ttft_sketch, version)
SELECT toStartOfMinute(timestamp) AS ws, ws + 60, project_id, agent_id, provider, model,
       countIf(type = 'llm_call'), countIf(type = 'error' OR ifNull(status_code, 0) >= 400), countIf(type = 'error'),
       sum(ifNull(tokens_in, 0)), sum(ifNull(tokens_out, 0)), 0, sum(ifNull(cost_usd, 0)),
       sum(ifNull(latency_ms, 0)), max(ifNull(latency_ms, 0)), {sketch('latency_ms')}, {sketch('ttft_ms')}, 1
FROM {db}.events WHERE type IN ('llm_call', 'error') GROUP BY ws, project_id, agent_id, provider, model""")
    tables = {r["name"] for r in client.query(
        "SELECT name FROM system.tables WHERE database = {d:String}", {"d": db})}
    for src, dst, fn in (("rollups_1m", "rollups_1h", "toStartOfHour"), ("rollups_1h", "rollups_1d", "toStartOfDay")):
        if dst in tables:
            width = 3600 if dst == "rollups_1h" else 86400
            client.command(f"""
INSERT INTO {db}.{dst} (window_start, window_end, project_id, agent_id, provider, model, calls, errors, error_events,
    tokens_in, tokens_out, tokens_cached, cost_usd, latency_ms_sum, latency_ms_max, latency_sketch, ttft_sketch,
    version)
SELECT {fn}(window_start) AS ws, ws + {width}, project_id, agent_id, provider, model, sum(calls), sum(errors),
       sum(error_events), sum(tokens_in), sum(tokens_out), sum(tokens_cached), sum(cost_usd), sum(latency_ms_sum),
       max(latency_ms_max), sumMap(latency_sketch), sumMap(ttft_sketch), 1
FROM {db}.{src} FINAL GROUP BY ws, project_id, agent_id, provider, model""")
    rollup_s = time.perf_counter() - t
    counts = {tbl: client.query(f"SELECT count() AS n FROM {db}.{tbl}")[0]["n"]
              for tbl in ("events", "rollups_1m", "rollups_1h", "rollups_1d") if tbl in tables}
    return {"raw_insert_s": round(raw_s, 1), "rollup_build_s": round(rollup_s, 1), "rows": counts}


def grafana_body(days: float, target: dict, iv: int = 3_600_000) -> dict:
    end = datetime.now(UTC)
    return {"range": {"from": (end - timedelta(days=days)).isoformat(), "to": end.isoformat()},
            "intervalMs": iv, "targets": [target]}


QUERIES = {
    "cost_by_model_7d": ("rollups", lambda: grafana_body(7, {"target": "metrics", "payload": {
        "field": "cost", "aggregation": "sum", "group_by": "model"}})),
    "p95_latency_by_agent_1h_24h": ("rollups", lambda: grafana_body(1, {"target": "metrics", "payload": {
        "field": "latency", "aggregation": "p95", "group_by": "agent"}})),
    "p95_latency_by_agent_1h_7d": ("rollups", lambda: grafana_body(7, {"target": "metrics", "payload": {
        "field": "latency", "aggregation": "p95", "group_by": "agent"}})),
    "traces_table_filtered_24h": ("raw", lambda: grafana_body(1, {"target": "traces", "payload": {
        "agent": "agent-3", "model": "claude-haiku-3.5", "limit": 100}})),
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Conn:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams: the load generator shares the machine
    with the server, so it should spend as little CPU per request as it can (httpx costs several times
    more)."""

    def __init__(self, port: int, headers: dict[str, str]):
        self.port = port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                          f"content-length: {len(body)}\r\n{self.head}\r\n".encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def load(port: int, headers: dict, body_fn, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal errors
        conn = Conn(port, headers)
        try:
            while time.monotonic() < stop:
                body = json.dumps(body_fn()).encode()
                t = time.perf_counter()
                status, payload = await conn.post("/grafana/query", body)
                latencies.append((time.perf_counter() - t) * 1000)
                if status != 200 or payload in (b"[]", b"") or b'"rows":[]' in payload:
                    errors += 1
        finally:
            conn.close()

    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.monotonic() - began
    return {"requests": len(latencies), "errors": errors, "p50_ms": round(pct(latencies, 0.5), 1),
            "p99_ms": round(pct(latencies, 0.99), 1), "max_ms": round(max(latencies), 1),
            "rps": round(len(latencies) / elapsed, 1)}


def export_rate(base: str, headers: dict, rows: int) -> dict:
    t = time.perf_counter()
    got = size = 0
    with httpx.stream("GET", f"{base}/api/events/export", headers=headers, timeout=600,
                      params={"format": "ndjson", "from": "now-31d", "limit": rows}) as res:
        res.raise_for_status()
        for chunk in res.iter_raw():
            got += chunk.count(b"\n")
            size += len(chunk)
    s = time.perf_counter() - t
    return {"rows": got, "seconds": round(s, 2), "rows_per_s": round(got / s), "mb_per_s": round(size / s / 1e6, 1)}


def measure(env: dict, port: int, token: str, args: argparse.Namespace, began: float, export: bool) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "bench.api", "--serve"], env=env)
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    out: dict = {"queries": {}}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("API did not become ready")
            time.sleep(0.2)
        for name, (kind, body_fn) in QUERIES.items():
            if time.monotonic() - began > args.budget:
                out["queries"][name] = {"skipped": "over budget"}
                continue
            asyncio.run(load(port, headers, body_fn, 2, 2))  # warm-up
            single = asyncio.run(load(port, headers, body_fn, 1, min(3.0, args.seconds)))
            figures = asyncio.run(load(port, headers, body_fn, args.clients, args.seconds))
            target = 50 if kind == "rollups" else 300
            out["queries"][name] = {"source": kind, **figures, "single_client_p50_ms": single["p50_ms"],
                                    "target_p99_ms": target, "meets_target": figures["p99_ms"] <= target}
        if export and time.monotonic() - began <= args.budget:
            exp = export_rate(base, headers, args.export_rows)
            out["export"] = {**exp, "target_rows_per_s": 200_000, "meets_target": exp["rows_per_s"] >= 200_000}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def serve(args: argparse.Namespace) -> int:
    from api.app import run
    from schemas.settings import Settings

    return run(Settings(), args)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--export-rows", type=int, default=2_000_000)
    p.add_argument("--budget", type=float, default=900, help="stop measuring after this many seconds")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="keep the generated data here and reuse it on later runs with the same --events/--days "
                        "(default: a temporary directory, removed at the end)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        return serve(args)
    began = time.monotonic()
    from agenttrace.clickhouse import close_embedded, connect, migrate
    from schemas.keys import KeyStore
    from schemas.settings import Settings

    keep = args.data_dir is not None
    home = args.data_dir.resolve() if keep else Path(tempfile.mkdtemp(prefix="agenttrace-bench-api-"))
    home.mkdir(parents=True, exist_ok=True)
    marker = home / "generated.json"
    port = free_port()
    env = {**os.environ, "AGENTTRACE_HOME": str(home), "AGENTTRACE_CLICKHOUSE_DIR": str(home / "ch"),
           "AGENTTRACE_CLICKHOUSE_DATABASE": "bench", "AGENTTRACE_CLICKHOUSE_URL": "",
           "AGENTTRACE_API_PORT": str(port), "AGENTTRACE_LOG_LEVEL": "warning", "AGENTTRACE_RETENTION_DAYS": "40"}
    settings = Settings(home=home, clickhouse_dir=home / "ch", clickhouse_database="bench", clickhouse_url="",
                        retention_days=40)
    token, _ = KeyStore(settings.config_path).create(PROJECT, name="bench")
    client = connect(settings)
    migrate(client, retention_days=40)
    doc: dict = {"bench": "api", "events": args.events, "days": args.days, "clients": args.clients,
                 "cpu_count": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}
    shape = {"events": args.events, "days": args.days}
    previous = json.loads(marker.read_text()) if keep and marker.exists() else None
    # Reused data ages: its newest events are as old as the previous run (fine for 24 h / 7 day windows
    # within a few hours).
    if previous and previous.get("shape") == shape:
        doc["data"] = {**previous["data"], "reused_from": previous["generated_at"]}
    else:
        for tbl in ("events", "rollups_1m", "rollups_1h", "rollups_1d"):
            client.command(f"TRUNCATE TABLE IF EXISTS bench.{tbl}")
        doc["data"] = generate("bench", client, args.events, args.days)
        if keep:
            marker.write_text(json.dumps({"shape": shape, "data": doc["data"],
                                          "generated_at": datetime.now(UTC).isoformat()}))
    close_embedded()  # the API child process opens the directory next
    try:
        # As shipped, equal Grafana queries in flight run once and answers are reused for 2 s; in the
        # "unshared" run every request runs its own ClickHouse query.
        # Top-level `queries` and `export`: the API as shipped; `unshared`: the same without sharing.
        doc.update(measure(env, port, token, args, began, export=True))
        if time.monotonic() - began > args.budget:
            doc["unshared"] = {"skipped": "over budget"}
        else:
            doc["unshared"] = measure({**env, "AGENTTRACE_API_SHARE_QUERIES": "false"}, port, token, args, began,
                                      export=False)
    finally:
        if not keep:
            subprocess.run(["rm", "-rf", str(home)], check=False)
    doc["elapsed_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())

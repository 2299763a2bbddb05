"""Gateway throughput vs a bare aiokafka producer, on the same broker, printed as JSON.

    python -m bench.ingest [--seconds 60] [--workers 2]

Phases (the gateway runs as a real server process, `agenttrace ingest`):
1. sustained events/s through `POST /api/events` (batches of 500 realistic events, acks=all), and a
   bare aiokafka producer (acks=all, idempotent, lz4) sending the same normalized payloads, measured
   in alternating slices (`--slices`) so that other load on a shared machine weighs on both alike;
2. p99 request latency at half the measured gateway load (open loop, fixed request rate);
3. single-event requests/s.
Gateway RSS is the peak over the run of the gateway's whole process tree (supervisor + workers).
Every phase is bounded by `--seconds`; the broker is the one of AGENTTRACE_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from agenttrace import stack
from agenttrace.kafka import event_record, make_producer
from schemas.events import parse_event
from schemas.keys import KeyStore
from schemas.normalize import normalize_event
from schemas.settings import Settings
from schemas.topics import EVENTS

ROOT = Path(__file__).resolve().parents[1]
MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"),
          ("google", "gemini-2.5-flash"), ("mistral", "mistral-large-latest")]


def realistic_event(rng: random.Random) -> dict[str, Any]:
    """Seed-shaped events: mostly llm calls, some errors, heartbeats, spans and scores."""
    agent = f"agent-{rng.randrange(200)}"
    base = {"agent_id": agent, "timestamp": datetime.now(UTC).isoformat(), "session_id": f"s-{rng.randrange(5000)}",
            "trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "tags": ["env:prod", "team:support"]}
    kind = rng.random()
    if kind < 0.8:
        provider, model = rng.choice(MODELS)
        return {**base, "event_type": "llm_call", "provider": provider, "model": model,
                "tokens": {"input": rng.randrange(50, 4000), "output": rng.randrange(10, 800)},
                "latency_ms": round(rng.uniform(200, 6000), 1), "status_code": 200 if rng.random() > 0.03 else 429,
                "source": "sdk"}
    if kind < 0.88:
        return {**base, "event_type": "span", "name": "tool-call", "duration_ms": round(rng.uniform(1, 900), 2),
                "status": "ok", "attributes": {"tool": "search"}}
    if kind < 0.94:
        return {**base, "event_type": "heartbeat", "status": "ok"}
    if kind < 0.97:
        return {**base, "event_type": "error", "error_type": "TimeoutError", "message": "tool timed out after 30s"}
    return {**base, "event_type": "score", "name": "helpfulness", "value": round(rng.random(), 3)}


def bodies(n_bodies: int, per_body: int, seed: int = 7) -> tuple[list[bytes], list[list[dict]]]:
    rng = random.Random(seed)
    docs = [[realistic_event(rng) for _ in range(per_body)] for _ in range(n_bodies)]
    return [orjson.dumps({"events": d}) for d in docs], docs


class RssSampler(threading.Thread):
    """Peak RSS (MB) of a process and its children, sampled from /proc."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_mb, self.stop = pid, 0.0, threading.Event()

    def tree(self) -> list[int]:
        pids, frontier = [self.pid], [self.pid]
        while frontier:
            p = frontier.pop()
            try:
                kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            except OSError:
                kids = []
            pids += [int(k) for k in kids]
            frontier += [int(k) for k in kids]
        return pids

    def rss_mb(self) -> float:
        total = 0
        for p in self.tree():
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU of the process tree so far (children still running)."""
        total = 0
        for p in self.tree():
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return total / os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak_mb = max(self.peak_mb, self.rss_mb())
            time.sleep(0.5)


class Conn:
    """A keep-alive HTTP/1.1 connection sending prepared requests: far cheaper per request than an
    HTTP client library, so the load generator leaves the shared cores to the gateway."""

    def __init__(self, host: str, port: int, path: str, token: str):
        self.host, self.port = host, port
        self.head = (f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\nx-api-key: {token}\r\n"
                     "content-type: application/json\r\ncontent-length: ").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _post(conn: Conn, body: bytes) -> int:
    try:
        return await conn.post(body)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        conn.close()
        conn.writer = None
        return -1


async def closed_loop(url: str, token: str, payloads: list[bytes], per_body: int, seconds: float,
                      concurrency: int) -> dict[str, Any]:
    """As fast as the gateway answers: `concurrency` requests in flight, one per connection."""
    host, port, path = _split(url)
    stats = {"events": 0, "requests": 0, "errors": 0}
    lat: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        conn = Conn(host, port, path, token)
        k = i
        while time.perf_counter() < stop_at:
            body = payloads[k % len(payloads)]
            k += concurrency
            t = time.perf_counter()
            status = await _post(conn, body)
            lat.append(time.perf_counter() - t)
            stats["requests"] += 1
            if status == 200:
                stats["events"] += per_body
            else:
                stats["errors"] += 1
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    lat.sort()
    lat = lat or [0.0]
    return {"events_per_s": round(stats["events"] / elapsed), "requests_per_s": round(stats["requests"] / elapsed),
            "requests": stats["requests"], "errors": stats["errors"], "seconds": round(elapsed, 1),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 2), "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2)}


async def open_loop(url: str, token: str, payloads: list[bytes], per_body: int, rate_rps: float,
                    seconds: float) -> dict[str, Any]:
    """A fixed request rate regardless of answers, so latency is measured at that load."""
    host, port, path = _split(url)
    lat: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    idle: list[tuple[Conn, float]] = []

    async def one(body: bytes) -> None:
        nonlocal errors
        conn = None
        while idle:
            conn, used = idle.pop()
            if time.monotonic() - used < 3.0:
                break
            conn.close()  # uvicorn drops keep-alive connections idle for 5 s; do not send on a stale one
            conn = None
        conn = conn or Conn(host, port, path, token)
        t = time.perf_counter()
        status = await _post(conn, body)
        if status != 200:
            errors += 1
            statuses[status] = statuses.get(status, 0) + 1
        lat.append(time.perf_counter() - t)
        idle.append((conn, time.monotonic()))

    tasks = []
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        delay = t0 + n / rate_rps - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(payloads[n % len(payloads)])))
        n += 1
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    for c, _ in idle:
        c.close()
    lat.sort()
    return {"target_events_per_s": round(rate_rps * per_body), "achieved_events_per_s": round(len(lat) * per_body / elapsed),
            "requests": len(lat), "errors": errors, "error_statuses": statuses, "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2)}


def _split(url: str) -> tuple[str, int, str]:
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    return host, int(port or 80), "/" + path


def normalized_records(docs: list[list[dict]]) -> list[tuple]:
    """The records the gateway publishes for these events (same normalization and encoding)."""
    return [event_record(normalize_event(parse_event(dict(raw)), "bench")) for batch in docs for raw in batch]


async def bare_producer(settings: Settings, topic: str, records: list[tuple], seconds: float) -> dict[str, Any]:
    """aiokafka with the pipeline's producer settings sending the gateway's normalized records."""
    producer = make_producer(settings)
    await producer.start()
    sent = 0
    try:
        stop_at = time.perf_counter() + seconds
        t0 = time.perf_counter()
        in_flight: list[asyncio.Future] = []
        i = 0
        while time.perf_counter() < stop_at:
            # 500-record batches, several in flight, each awaited for acks=all like a gateway request.
            futs = []
            for _ in range(500):
                key, value, headers = records[i % len(records)]
                i += 1
                futs.append(await producer.send(topic, value=value, key=key, headers=headers))
            in_flight.append(asyncio.ensure_future(asyncio.gather(*futs)))
            if len(in_flight) >= 8:
                await in_flight.pop(0)
                sent += 500
        for f in in_flight:
            await f
            sent += 500
        elapsed = time.perf_counter() - t0
    finally:
        await producer.stop()
    return {"events_per_s": round(sent / elapsed), "events": sent, "seconds": round(elapsed, 1)}


def measure(url: str, gw: subprocess.Popen, token: str, settings: Settings, docs: list[list[dict]],
            args: argparse.Namespace) -> dict[str, Any]:
    """Gateway and bare producer measured in alternating slices, so that the load other users put on
    the shared machine weighs on both figures alike; then half-load latency and single events."""
    out: dict[str, Any] = {}
    batch_bodies = [orjson.dumps({"events": d}) for d in docs]
    records = normalized_records(docs)
    topic = settings.topic(EVENTS)
    rss = RssSampler(gw.pid)
    _wait_up(url, gw)
    rss.start()
    try:
        single_bodies, _ = bodies(200, 1, seed=11)
        events = f"{url}/api/events"
        asyncio.run(closed_loop(events, token, batch_bodies, 500, min(5.0, args.seconds), 4))  # warm-up
        slice_s = args.seconds / args.slices
        gw_runs, bare_runs = [], []
        for _ in range(args.slices):
            gw_runs.append(asyncio.run(closed_loop(events, token, batch_bodies, 500, slice_s, args.concurrency)))
            bare_runs.append(asyncio.run(bare_producer(settings, topic, records, slice_s)))
        gw_seconds = sum(r["seconds"] for r in gw_runs)
        lat_p99 = max(r["p99_ms"] for r in gw_runs)
        out["gateway"] = {"events_per_s": round(sum(r["events_per_s"] * r["seconds"] for r in gw_runs) / gw_seconds),
                          "requests": sum(r["requests"] for r in gw_runs), "errors": sum(r["errors"] for r in gw_runs),
                          "seconds": round(gw_seconds, 1), "slices_events_per_s": [r["events_per_s"] for r in gw_runs],
                          "p50_ms_median_slice": sorted(r["p50_ms"] for r in gw_runs)[len(gw_runs) // 2],
                          "p99_ms_worst_slice": lat_p99}
        bare_seconds = sum(r["seconds"] for r in bare_runs)
        out["aiokafka"] = {"events_per_s": round(sum(r["events"] for r in bare_runs) / bare_seconds),
                           "events": sum(r["events"] for r in bare_runs), "seconds": round(bare_seconds, 1),
                           "slices_events_per_s": [r["events_per_s"] for r in bare_runs]}
        half_rps = max(1.0, out["gateway"]["events_per_s"] / 2 / 500)
        out["half_load"] = asyncio.run(open_loop(events, token, batch_bodies, 500, half_rps, max(5.0, args.seconds / 3)))
        single = asyncio.run(closed_loop(events, token, single_bodies, 1, max(5.0, args.seconds / 3), 64))
        out["single_event"] = {"requests_per_s": single["requests_per_s"], "p99_ms": single["p99_ms"],
                               "errors": single["errors"]}
    finally:
        rss.stop.set()
    out["gateway_rss_mb"] = round(rss.peak_mb, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="duration of the sustained phases")
    ap.add_argument("--workers", type=int, default=2, help="gateway worker processes")
    ap.add_argument("--concurrency", type=int, default=8, help="batch requests in flight")
    ap.add_argument("--slices", type=int, default=6, help="alternations of gateway and bare-producer runs")
    args = ap.parse_args(argv)

    base = Settings()
    home = Path(tempfile.mkdtemp(prefix="agenttrace-bench-ingest-"))
    tag = uuid.uuid4().hex[:8]
    settings = base.model_copy(update={"home": home, "topic_prefix": f"bench.{tag}."})
    stack.create_topics(settings)
    token, _ = KeyStore(settings.config_path).create("bench", name="bench", rate_limit_per_minute=10**12)
    port = int(os.environ.get("BENCH_GATEWAY_PORT", "0")) or _free_port()
    env = {**os.environ, "AGENTTRACE_HOME": str(home), "AGENTTRACE_TOPIC_PREFIX": settings.topic_prefix,
           "AGENTTRACE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "AGENTTRACE_GATEWAY_PORT": str(port),
           "AGENTTRACE_GATEWAY_WORKERS": str(args.workers), "AGENTTRACE_LOG_LEVEL": "warning"}
    log = open(home / "gateway.log", "wb")
    gw = subprocess.Popen([sys.executable, "-m", "agenttrace.cli", "ingest"], env=env, cwd=ROOT, stdout=log,
                          stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"bench": "ingest", "workers": args.workers, "batch": 500, "cores": os.cpu_count(),
                              "note": "shared 2-core machine; broker, gateway and load generator on the same cores",
                              "loadavg_1m_at_start": os.getloadavg()[0]}
    _, docs = bodies(40, 500)
    try:
        result.update(measure(url, gw, token, settings, docs, args))
    finally:
        gw.terminate()
        try:
            gw.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gw.kill()
        _drop_topics(settings)
        shutil.rmtree(home, ignore_errors=True)
    result["loadavg_1m_at_end"] = os.getloadavg()[0]
    bare = result["aiokafka"]["events_per_s"]
    result["ratio"] = round(result["gateway"]["events_per_s"] / bare, 3) if bare else None
    result["targets"] = {
        "gateway_events_per_s>=100000": result["gateway"]["events_per_s"] >= 100_000,
        "ratio>=0.5": (result["ratio"] or 0) >= 0.5,
        "half_load_p99_ms<=50": result["half_load"]["p99_ms"] <= 50,
        "single_event_rps>=5000": result["single_event"]["requests_per_s"] >= 5000,
        "gateway_rss_mb<=250": result["gateway_rss_mb"] <= 250,
    }
    print(json.dumps(result))
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("gateway did not become ready")


def _drop_topics(settings: Settings) -> None:
    """The bench's topics hold gigabytes; delete them so the shared broker's disk is not filled."""
    client = stack.admin(settings.kafka_bootstrap)
    names = [n for n in client.list_topics(timeout=10).topics if n.startswith(settings.topic_prefix)]
    for fut in client.delete_topics(names, operation_timeout=30).values():
        try:
            fut.result()
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass


if __name__ == "__main__":
    sys.exit(main())

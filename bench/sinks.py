"""Sinks benchmark: prints one JSON document of figures.

    .venv/bin/python -m bench.sinks [--events 300000] [--rate 10000] [--seconds 10]

Uses the broker at AGENTTRACE_KAFKA_BOOTSTRAP (default 127.0.0.1:9092) under a topic prefix of its
own (deleted at the end) and a temporary embedded chDB directory. Figures:
- landed_rows_per_s: events already on the topic -> `events` (+ agents) through the events landing
  consumer (decode, insert, commit), measured from partition assignment to the last commit.
- bare_insert_rows_per_s: the same rows inserted straight into an identical table in 50k blocks; ratio.
  Each of the three phases starts once the previous one's background merges are done.
- final_cost: count() and a per-hour aggregate with and without FINAL over the landed rows.
- freshness_s: at --rate events/s offered for --seconds, broker append (record timestamp) to the
  moment the insert holding the row returned (row visible), p50/p99/max.
- rollups: cost of rebuilding hour and day rows from minutes (the sink does it per batch) vs. reading
  a day straight from `rollups_1m FINAL` (the view alternative).
- webhook_delay_s: alert produced -> webhook request received by a loopback receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from agenttrace import stack
from agenttrace.clickhouse import connect, migrate
from schemas.alerts import Alert
from schemas.settings import Settings
from schemas.sketch import Sketch
from schemas.topics import ALERTS, CATALOGUE, EVENTS
from sinks.config import SinkSettings
from sinks.consumer import LandingConsumer
from sinks.dlq import DeadLetters
from sinks.events_sink import EventsHandler
from sinks.rollups_sink import RollupsHandler, rebuild
from sinks.rows import event_rows


def _settings(tag: str, chdir: Path, partitions: int = 6) -> Settings:
    s = Settings(kafka_bootstrap=os.environ.get("AGENTTRACE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
                 topic_prefix=f"bench.{tag}.", topic_partitions=partitions, clickhouse_dir=chdir,
                 clickhouse_url="", clickhouse_database=f"bench_{tag}", home=chdir / "home")
    stack.create_topics(s)
    return s


def _drop_topics(s: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    for f in admin.delete_topics([s.topic(t.name) for t in CATALOGUE]).values():
        try:
            f.result(30)
        except Exception:  # noqa: BLE001, S110 - best effort cleanup
            pass


def _event(i: int, now: datetime, agents: int = 200) -> tuple[bytes, bytes]:
    agent = f"agent-{i % agents}"
    ts = (now - timedelta(milliseconds=i % 60_000)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc = {"event_id": str(uuid.uuid4()), "type": "llm_call", "timestamp": ts,
           "received_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "project_id": "bench", "agent_id": agent,
           "trace_id": uuid.uuid4().hex, "provider": "openai", "model": "gpt-4o-mini", "model_family": "gpt-4o-mini",
           "tokens_in": 500 + i % 300, "tokens_out": 100 + i % 50, "latency_ms": 200.0 + i % 900,
           "status_code": 200, "cost_usd": 0.00042, "pricing_status": "priced", "source": "sdk",
           "metadata": {"env": "bench"}, "tags": ["bench"]}
    return f"bench/{agent}".encode(), orjson.dumps(doc)


def _producer(s: Settings) -> Producer:
    return Producer({"bootstrap.servers": s.kafka_bootstrap, "acks": "all", "enable.idempotence": True,
                     "linger.ms": 5, "compression.type": "lz4", "batch.size": 1_000_000})


def _produce(p: Producer, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    for k, v in records:
        while True:
            try:
                p.produce(topic, v, k)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(60)


def _run_consumer(lc: LandingConsumer, until_landed: int, timeout: float) -> tuple[float, float]:
    """Run the landing loop until `until_landed` messages are committed; (assigned_at, done_at)."""
    halt = threading.Event()
    t = threading.Thread(target=lc.run, args=(halt,), daemon=True)
    t.start()
    lc.ready.wait(60)
    start = time.perf_counter()
    deadline = start + timeout
    while lc.landed < until_landed and time.perf_counter() < deadline:
        time.sleep(0.01)
    done = time.perf_counter()
    halt.set()
    t.join(30)
    return start, done


def _settle(client, quiet: float = 0.5, timeout: float = 20.0) -> None:
    """Wait until ClickHouse has merged what the previous phase inserted (no merge for `quiet`
    seconds), so each measured phase pays for its own merges only, not its predecessor's."""
    deadline = time.perf_counter() + timeout
    calm_since = time.perf_counter()
    while time.perf_counter() < deadline:
        if client.query("SELECT count() AS n FROM system.merges")[0]["n"]:
            calm_since = time.perf_counter()
        elif time.perf_counter() - calm_since >= quiet:
            return
        time.sleep(0.05)


def bench_throughput(s: Settings, client, n: int) -> dict:
    now = datetime.now(UTC)
    records = [_event(i, now) for i in range(n)]
    _produce(_producer(s), s.topic(EVENTS), records)
    # The same rows inserted bare into an identical table, before and after the landed run (the
    # machine is shared: the mean of the two brackets the landed run's conditions).
    rows = [event_rows(v, 0, i).event for i, (_, v) in enumerate(records)]
    db = client.database
    from sinks.rows import EVENTS_INSERT_SETTINGS  # the settings the sink inserts events with

    def bare(table: str) -> float:
        client.command(f"CREATE TABLE {db}.{table} AS {db}.events")
        _settle(client)
        t0 = time.perf_counter()
        for i in range(0, n, 50_000):
            client.insert(f"{db}.{table}", b"\n".join(rows[i:i + 50_000]), settings=EVENTS_INSERT_SETTINGS)
        return n / (time.perf_counter() - t0)

    bare_before = bare("events_bare1")
    sink = SinkSettings(sink_batch_rows=50_000, sink_batch_seconds=0.5)
    lc = LandingConsumer(s, sink, s.topic(EVENTS), "bench-throughput", EventsHandler(), client, DeadLetters(s))
    _settle(client)
    start, done = _run_consumer(lc, n, 600)
    landed_rate = lc.landed / (done - start)
    bare_after = bare("events_bare2")
    bare_rate = (bare_before + bare_after) / 2
    landed_rows = client.query(f"SELECT count() AS n FROM {db}.events FINAL")[0]["n"]

    def timed(sql: str) -> float:
        best = 1e9
        for _ in range(3):
            t = time.perf_counter()
            client.query(sql)
            best = min(best, time.perf_counter() - t)
        return round(best * 1000, 1)

    agg = ("SELECT toStartOfHour(timestamp) h, agent_id, count(), sum(cost_usd), quantile(0.95)(latency_ms) "
           f"FROM {db}.events{{final}} WHERE project_id = 'bench' GROUP BY h, agent_id FORMAT Null")
    return {
        "events": n, "landed_rows_visible": landed_rows,
        "landed_rows_per_s": round(landed_rate), "bare_insert_rows_per_s": round(bare_rate),
        "bare_insert_before_after": [round(bare_before), round(bare_after)],
        "ratio": round(landed_rate / bare_rate, 3),
        "final_cost_ms": {
            "count": timed(f"SELECT count() FROM {db}.events"),
            "count_final": timed(f"SELECT count() FROM {db}.events FINAL"),
            "hourly_agg": timed(agg.format(final="")),
            "hourly_agg_final": timed(agg.format(final=" FINAL")),
        },
    }


def bench_freshness(s: Settings, client, rate: int, seconds: float) -> dict:
    delays: list[float] = []

    def landed(msgs) -> None:
        visible = time.time()
        delays.extend(visible - m.timestamp()[1] / 1000 for m in msgs)

    sink = SinkSettings(sink_batch_rows=50_000, sink_batch_seconds=0.5)  # the defaults
    lc = LandingConsumer(s, sink, s.topic(EVENTS), "bench-freshness", EventsHandler(), client, DeadLetters(s),
                         on_landed=landed)
    halt = threading.Event()
    t = threading.Thread(target=lc.run, args=(halt,), daemon=True)
    t.start()
    lc.ready.wait(60)
    base = lc.landed
    p = Producer({"bootstrap.servers": s.kafka_bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "compression.type": "lz4"})
    total = int(rate * seconds)
    start = time.perf_counter()
    step = rate // 100  # 10 ms slices
    sent = 0
    while sent < total:
        now = datetime.now(UTC)
        for i in range(step):
            k, v = _event(sent + i, now)
            p.produce(s.topic(EVENTS), v, k)
        sent += step
        p.poll(0)
        ahead = start + sent / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    offered = sent / (time.perf_counter() - start)
    p.flush(30)
    deadline = time.perf_counter() + 60
    while lc.landed - base < sent and time.perf_counter() < deadline:
        time.sleep(0.05)
    halt.set()
    t.join(30)
    q = statistics.quantiles(delays, n=100)
    return {"offered_events_per_s": round(offered), "events": sent, "landed": lc.landed - base,
            "freshness_p50_s": round(q[49], 3), "freshness_p99_s": round(q[98], 3), "freshness_max_s": round(max(delays), 3)}


def bench_rollups(client, agents: int = 50) -> dict:
    """One day of minute rollups for `agents` agents: cost of the hour/day rebuild vs. a FINAL read."""
    day = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(1)
    rows = []
    sketch = Sketch.of([rng.lognormvariate(5, 1) for _ in range(50)]).to_json()
    for m in range(1440):
        ws = day + timedelta(minutes=m)
        for a in range(agents):
            rows.append(orjson.dumps({
                "window_start": ws.isoformat(), "window_end": (ws + timedelta(minutes=1)).isoformat(),
                "project_id": "bench", "agent_id": f"agent-{a}", "provider": "openai", "model": "gpt-4o",
                "calls": 50, "errors": 1, "error_events": 0, "tokens_in": 100, "tokens_out": 10, "tokens_cached": 0,
                "cost_usd": 0.01, "latency_ms_sum": 5000.0, "latency_ms_max": 900.0, "latency_sketch": sketch,
                "ttft_sketch": {}, "version": 1, "replay": False}))
    from sinks.clickhouse_io import insert_rows
    insert_rows(client, "rollups_1m", rows)
    t = time.perf_counter()
    rebuild(client, "bench", day + timedelta(hours=5), day + timedelta(hours=5, minutes=30))
    one_hour = time.perf_counter() - t
    t = time.perf_counter()
    rebuild(client, "bench", day, day + timedelta(hours=23, minutes=59))
    whole_day = time.perf_counter() - t
    db = client.database
    q = ("SELECT agent_id, sum(calls), sumMap(latency_sketch) FROM {db}.{t}{final} WHERE project_id = 'bench' "
         "AND window_start >= {{d:DateTime}} AND window_start < {{d:DateTime}} + INTERVAL 1 DAY GROUP BY agent_id FORMAT Null")
    p = {"d": day.strftime("%Y-%m-%d %H:%M:%S")}

    def timed(sql: str) -> float:
        best = 1e9
        for _ in range(3):
            t0 = time.perf_counter()
            client.query(sql, p)
            best = min(best, time.perf_counter() - t0)
        return round(best * 1000, 1)

    return {"minute_rows": len(rows), "rebuild_one_hour_ms": round(one_hour * 1000, 1),
            "rebuild_whole_day_ms": round(whole_day * 1000, 1),
            "day_read_from_rollups_1d_final_ms": timed(q.format(db=db, t="rollups_1d", final=" FINAL")),
            "day_read_from_rollups_1m_final_ms": timed(q.format(db=db, t="rollups_1m", final=" FINAL")),
            "handler": RollupsHandler.name}


def bench_webhook(s: Settings, client, alerts: int = 20) -> dict:
    from sinks.alerts_sink import AlertsSink

    received: dict[str, float] = {}

    class H(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            received[orjson.loads(body)["alert_id"]] = time.time()
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    sent: dict[str, float] = {}

    async def main() -> None:
        stop = asyncio.Event()
        sink = AlertsSink(s, SinkSettings(webhook_secret="bench"), client, DeadLetters(s))
        task = asyncio.create_task(sink.run(stop))
        await asyncio.wait_for(sink.ready.wait(), 60)
        p = _producer(s)
        for i in range(alerts):
            a = Alert(alert_id=f"bench-{i}", rule_id="r", rule_type="error_rate", project_id="bench", subject="a",
                      state="fired", message="bench", timestamp=datetime.now(UTC), webhook_url=url)
            sent[a.alert_id] = time.time()
            p.produce(s.topic(ALERTS), a.model_dump_json().encode(), f"r/{i}".encode())
            p.flush(10)
            await asyncio.sleep(0.25)
        deadline = time.time() + 20
        while len(received) < alerts and time.time() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(main())
    server.shutdown()
    d = sorted(received[k] - sent[k] for k in received)
    return {"alerts": alerts, "delivered": len(d), "webhook_delay_p50_s": round(d[len(d) // 2], 3),
            "webhook_delay_max_s": round(d[-1], 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="bench-sinks-") as tmp:
        s = _settings(tag, Path(tmp))
        client = connect(s)
        migrate(client, s.retention_days)
        out: dict = {"cpu_count": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
        try:
            out["throughput"] = bench_throughput(s, client, args.events)
            fresh = _settings(tag + "f", Path(tmp))  # its own topic: no backlog from the throughput run
            try:
                out["freshness"] = bench_freshness(fresh, client, args.rate, args.seconds)
            finally:
                _drop_topics(fresh)
            out["rollups"] = bench_rollups(client)
            out["webhook"] = bench_webhook(s, client)
        finally:
            _drop_topics(s)
        out["targets"] = {"landed_rows_per_s>=200000": out["throughput"]["landed_rows_per_s"] >= 200_000,
                          "ratio>=0.5": out["throughput"]["ratio"] >= 0.5,
                          "freshness_p99<=2s": out["freshness"]["freshness_p99_s"] <= 2.0,
                          "webhook<=1s": out["webhook"]["webhook_delay_max_s"] <= 1.0}
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()

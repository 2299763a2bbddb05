"""CPU per event of the events landing (decode, insert, merges, commit) at a steady rate; one JSON document.

    .venv/bin/python -m bench.sinks_cpu [--rate 20000] [--seconds 25] [--warmup 5]

A child process produces seed-shaped events (bench.ingest's mix: llm calls, spans, heartbeats, errors,
scores), normalized as the gateway writes them, at --rate onto a topic of its own on the broker at
AGENTTRACE_KAFKA_BOOTSTRAP (default 127.0.0.1:9092); this process runs the events LandingConsumer on
an embedded chDB of its own. After --warmup s, the CPU of this process (every thread: consumer loop,
insert threads, ClickHouse's insert and merge pools, librdkafka) is divided by the events committed in
the same span, so the figure is the landing alone, comparable across machines' loads better than wall
time. Also: per-thread-name split, freshness (record timestamp -> insert returned), active parts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from agenttrace import stack
from agenttrace.clickhouse import close_embedded, connect, migrate
from schemas.settings import Settings
from schemas.topics import EVENTS


def produce(bootstrap: str, topic: str, rate: int, seconds: float) -> int:
    from confluent_kafka import Producer

    from agenttrace.kafka import event_record
    from bench.ingest import realistic_event
    from schemas.events import parse_event
    from schemas.normalize import normalize_event

    rng = random.Random(7)
    templates = []
    for _ in range(3000):
        ev = normalize_event(parse_event(realistic_event(rng)), "bench")
        key, value, headers = event_record(ev)
        templates.append((key, value, headers, str(ev.event_id).encode()))
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                  "compression.type": "lz4", "batch.size": 1_000_000})
    total, step, sent, j = int(rate * seconds), max(1, rate // 100), 0, 0
    start = time.perf_counter()
    while sent < total:
        for _ in range(step):
            key, value, headers, eid = templates[j % len(templates)]
            j += 1
            value = value.replace(eid, str(uuid.uuid4()).encode())  # every event its own id
            while True:
                try:
                    p.produce(topic, value, key, headers=headers)
                    break
                except BufferError:
                    p.poll(0.01)
        sent += step
        p.poll(0)
        ahead = start + sent / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    p.flush(60)
    return sent


def thread_cpu() -> collections.Counter:
    """CPU ticks of this process's threads, summed per thread name (digits folded)."""
    out: collections.Counter = collections.Counter()
    for tid in os.listdir("/proc/self/task"):
        try:
            st = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = re.sub(r"\d+", "#", st[st.index("(") + 1:st.rindex(")")])
        fields = st.rsplit(")", 1)[1].split()
        out[name] += int(fields[11]) + int(fields[12])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=25.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--produce", nargs=2, metavar=("BOOTSTRAP", "TOPIC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.produce:
        print(produce(args.produce[0], args.produce[1], args.rate, args.seconds))
        return

    from bench.sinks import _drop_topics
    from sinks.config import SinkSettings
    from sinks.consumer import LandingConsumer
    from sinks.dlq import DeadLetters
    from sinks.events_sink import EventsHandler

    tag = "cpu" + uuid.uuid4().hex[:6]
    root = Path(tempfile.mkdtemp(prefix="bench-sinks-cpu-"))
    s = Settings(kafka_bootstrap=os.environ.get("AGENTTRACE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
                 topic_prefix=f"bench.{tag}.", clickhouse_dir=root / "ch", clickhouse_url="",
                 clickhouse_database=f"bench_{tag}", home=root / "home")
    stack.create_topics(s)
    client = connect(s)
    migrate(client, s.retention_days)
    delays: list[float] = []

    def landed(msgs) -> None:
        now = time.time()
        delays.extend(now - m.timestamp()[1] / 1000 for m in msgs)

    lc = LandingConsumer(s, SinkSettings(), s.topic(EVENTS), "bench-cpu", EventsHandler(), client, DeadLetters(s),
                         on_landed=landed)
    halt = threading.Event()
    t = threading.Thread(target=lc.run, args=(halt,), daemon=True)
    t.start()
    lc.ready.wait(60)
    try:
        prod = subprocess.Popen([sys.executable, "-m", "bench.sinks_cpu", "--rate", str(args.rate), "--seconds",
                                 str(args.seconds), "--produce", s.kafka_bootstrap, s.topic(EVENTS)],
                                stdout=subprocess.PIPE)
        time.sleep(args.warmup)
        c0, n0, d0, t0 = time.process_time(), lc.landed, len(delays), thread_cpu()
        time.sleep(max(1.0, args.seconds - args.warmup - 1))  # stop before the producer does
        c1, n1, d1, t1 = time.process_time(), lc.landed, len(delays), thread_cpu()
        sent = int(prod.communicate()[0])
        deadline = time.time() + 60
        while lc.landed < sent and time.time() < deadline:
            time.sleep(0.05)
        halt.set()
        t.join(30)
        db = s.clickhouse_database
        rows = client.query(f"SELECT count() AS n, uniqExact(event_id) AS ids FROM {db}.events FINAL")[0]
        parts = client.query(f"SELECT table, count() AS n FROM system.parts WHERE database = '{db}' AND active "
                             "GROUP BY table ORDER BY table")
    finally:
        _drop_topics(s)
    n = max(1, n1 - n0)
    tick = os.sysconf("SC_CLK_TCK")
    q = statistics.quantiles(delays[d0:d1], n=100)
    print(json.dumps({
        "rate": args.rate, "events_sent": sent, "events_landed": lc.landed, "rows": rows["n"],
        "every_event_once": rows["n"] == rows["ids"] == sent,
        "measured_events": n1 - n0, "cpu_us_per_event": round((c1 - c0) / n * 1e6, 2),
        "threads_us_per_event": {k: round((t1[k] - t0[k]) / tick / n * 1e6, 2)
                                 for k in sorted(t1) if t1[k] - t0[k] > 0},
        "freshness_p50_s": round(q[49], 3), "freshness_p99_s": round(q[98], 3),
        "active_parts": {p["table"]: p["n"] for p in parts}, "loadavg": round(os.getloadavg()[0], 2),
    }, indent=2))
    close_embedded()


if __name__ == "__main__":
    main()

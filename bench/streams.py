"""Stream-processing benchmark: prints one JSON document of figures.

    .venv/bin/python -m bench.streams [--events 500000] [--replay-events 2000000] [--keys 100000]

Uses the broker at AGENTTRACE_KAFKA_BOOTSTRAP (default 127.0.0.1:9092) under a topic prefix of its
own, deleted at the end. Figures:
- rollup_events_per_s_{1,2}_workers: bounded dataflow over events already on the topic
  (decode, windows, alert facts, produce rollups), workers as threads of one process.
- replay_events_per_s: `streams.replay` over the whole retained set (--replay-events).
- rss_mb_at_active_keys: RSS of a live `agenttrace stream` process holding --keys open aggregates.
- rollup_delay_s: rollup's time on the topic minus the moment the watermark passed its window end
  (window end + wait), live process, events flowing with current timestamps.
- alert_delay_s: budget alert on the topic minus the produce time of the event that crossed it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from bytewax.run import cli_main
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from agenttrace import stack
from schemas.settings import Settings
from schemas.topics import ALERT_RULES, ALERTS, CATALOGUE, EVENTS, ROLLUPS
from streams.config import StreamConfig
from streams.kafka_io import offsets_at
from streams.rollups import FlowSpec, build_flow

PROVIDERS = (("openai", "gpt-4o"), ("anthropic", "claude-3-5-sonnet"), ("openai", "gpt-4o-mini"))


def _settings(tag: str, partitions: int = 4) -> Settings:
    home = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    s = Settings(home=home, topic_prefix=f"bench.{tag}.{uuid.uuid4().hex[:6]}.", topic_partitions=partitions,
                 kafka_bootstrap=os.environ.get("AGENTTRACE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    stack.create_topics(s)
    return s


def _drop(s: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    names = [s.topic(t.name) for t in CATALOGUE]
    for f in admin.delete_topics(names).values():
        try:
            f.result(30)
        except Exception:  # noqa: BLE001 - best effort clean-up
            pass


def _event(i: int, ts: datetime, agents: int, cost: float = 0.0001) -> tuple[bytes, bytes]:
    a = i % agents
    agent = f"agent-{a}"
    provider, model = PROVIDERS[i % 3]
    doc = {"event_id": str(uuid.UUID(int=i + 1)), "timestamp": ts.isoformat().replace("+00:00", "Z"),
           "project_id": f"proj-{a % 7}", "agent_id": agent, "type": "llm_call", "provider": provider,
           "model": model, "tokens_in": 100 + i % 50, "tokens_out": 20 + i % 30, "latency_ms": 50.0 + (i * 37) % 2000,
           "ttft_ms": 10.0 + (i * 13) % 300, "status_code": 500 if i % 50 == 0 else 200, "cost_usd": cost,
           "source": "sdk", "tags": [], "metadata": {}}
    return f"proj-{a % 7}/{agent}".encode(), orjson.dumps(doc)


def produce(s: Settings, n: int, agents: int, start: datetime, span_s: float) -> float:
    p = Producer({"bootstrap.servers": s.kafka_bootstrap, "linger.ms": 20, "compression.type": "lz4",
                  "batch.num.messages": 10000, "queue.buffering.max.messages": 500000})
    topic = s.topic(EVENTS)
    t = time.perf_counter()
    for i in range(n):
        key, value = _event(i, start + timedelta(seconds=span_s * i / n), agents)
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.05)
        if i % 10000 == 0:
            p.poll(0)
    p.flush(120)
    return n / (time.perf_counter() - t)


def bounded_run(s: Settings, workers: int, replay: bool = False) -> float:
    cfg = StreamConfig(idle_advance=False, epoch_seconds=5)
    end = offsets_at(s.kafka_bootstrap, s.topic(EVENTS), None)
    spec = FlowSpec.from_settings(s, cfg, live=False, end=end, rules_topic=None, replay=replay,
                                  flow_name="replay" if replay else "rollups", workers=workers)
    t = time.perf_counter()
    c = time.process_time()
    cli_main(build_flow(spec), workers_per_process=workers)
    bounded_run.cpu_s = time.process_time() - c  # type: ignore[attr-defined]
    return time.perf_counter() - t


def bounded_cluster(s: Settings, procs: int) -> float:
    """The same bounded run as `procs` Bytewax processes of one worker each (no shared GIL)."""
    from tests.support import free_port

    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(procs))
    env = {**os.environ, "AGENTTRACE_HOME": str(s.home_dir), "AGENTTRACE_TOPIC_PREFIX": s.topic_prefix,
           "AGENTTRACE_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "AGENTTRACE_LOG_LEVEL": "warning"}
    t = time.perf_counter()
    ps = [subprocess.Popen([sys.executable, "-m", "bench.streams", "--cluster-proc", str(i), "--addresses", addresses],
                           env=env) for i in range(procs)]
    for p in ps:
        p.wait()
    return time.perf_counter() - t


def _cluster_proc(index: int, addresses: str) -> None:
    s = Settings()
    spec = FlowSpec.from_settings(s, StreamConfig(idle_advance=False, epoch_seconds=5), live=False, rules_topic=None,
                                  end=offsets_at(s.kafka_bootstrap, s.topic(EVENTS), None),
                                  workers=len(addresses.split(",")))
    cli_main(build_flow(spec), addresses=addresses.split(","), process_id=index)


def bench_throughput(n: int) -> dict:
    s = _settings("tput")
    try:
        start = datetime.now(UTC) - timedelta(hours=2)
        rate = produce(s, n, 1000, start, n / 2000)  # 2,000 events/s of event time, 1,000 agents
        out = {"events": n, "produce_events_per_s": round(rate)}
        for w in (1, 2):
            took = bounded_run(s, w)
            out[f"rollup_events_per_s_{w}_workers"] = round(n / took)
            out[f"rollup_events_per_cpu_s_{w}_workers"] = round(n / bounded_run.cpu_s)  # type: ignore[attr-defined]
        took = bounded_cluster(s, 2)
        out["rollup_events_per_s_2_processes"] = round(n / took)
        out["note"] = ("workers of one process share the GIL; 2 processes x 1 worker is the scale-out figure "
                       "(wall time incl. process start-up)")
        return out
    finally:
        _drop(s)


def bench_replay(n: int) -> dict:
    s = _settings("replay")
    try:
        start = datetime.now(UTC) - timedelta(hours=26)
        produce(s, n, 1000, start, n / 2000)  # same shape as the throughput set: 2,000 events/s, 1,000 agents
        env = {**os.environ, "AGENTTRACE_HOME": str(s.home_dir), "AGENTTRACE_TOPIC_PREFIX": s.topic_prefix,
               "AGENTTRACE_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "AGENTTRACE_LOG_LEVEL": "warning"}
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()  # log time: everything was produced since
        t = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("agenttrace")), "replay", "--from", since],
                       env=env, check=True)
        took = time.perf_counter() - t
        return {"replay_events": n, "replay_seconds": round(took, 2), "replay_events_per_s": round(n / took),
                "note": "wall time of the `agenttrace replay` command incl. start-up"}
    finally:
        _drop(s)


class Live:
    def __init__(self, s: Settings, **cfg: object):
        from tests.support import free_port

        self.port = free_port()
        env = {**os.environ, "AGENTTRACE_HOME": str(s.home_dir), "AGENTTRACE_TOPIC_PREFIX": s.topic_prefix,
               "AGENTTRACE_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "AGENTTRACE_STREAM_METRICS_PORT": str(self.port),
               "AGENTTRACE_LOG_LEVEL": "warning"}
        env.update({f"AGENTTRACE_STREAM_{k.upper()}": str(v) for k, v in cfg.items()})
        self.proc = subprocess.Popen([str(Path(sys.executable).with_name("agenttrace")), "stream"], env=env)

    def metric(self, name: str) -> float:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2).read().decode()
        except OSError:
            return -1
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name + " "))

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return -1

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def bench_rss(keys: int) -> dict:
    s = _settings("rss")
    live = Live(s, lateness_seconds=3600, wait_seconds=3600, idle_advance="false")
    try:
        # Every event its own agent, all in one window: `keys` open aggregates held at once.
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        produce(s, keys, keys, now, 1)
        deadline = time.monotonic() + 300
        while live.metric("stream_events_processed_total") < keys and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(2)
        return {"active_keys": live.metric("stream_active_keys"), "rss_mb_at_active_keys": round(live.rss_mb(), 1)}
    finally:
        live.stop()
        _drop(s)


def bench_delays(seconds: float = 25.0) -> dict:
    s = _settings("delay")
    wait = 1.0
    live = Live(s, window_seconds=5, wait_seconds=wait, tick_seconds=0.2, epoch_seconds=2)
    try:
        time.sleep(3)
        p = Producer({"bootstrap.servers": s.kafka_bootstrap, "linger.ms": 5})
        rule = {"id": "bench-budget", "project_id": "proj-0", "type": "budget", "threshold": 1.0, "scope": "project"}
        p.produce(s.topic(ALERT_RULES), orjson.dumps(rule), b"bench-budget")
        p.flush(10)
        time.sleep(1)
        t_end = time.time() + seconds
        i = 0
        crossed_at = None
        spent = 0.0
        while time.time() < t_end:
            for _ in range(200):  # ~2,000 events/s with current timestamps
                now = datetime.now(UTC)
                cost = 0.0001 if i % 7 else 0.002
                key, value = _event(i, now, 50, cost)
                if (i % 50) % 7 == 0:  # an event of proj-0, the rule's project
                    spent += cost
                    if crossed_at is None and spent > 1.0 - 1e-12:
                        crossed_at = time.time()
                p.produce(s.topic(EVENTS), value, key)
                i += 1
            p.poll(0)
            time.sleep(0.1)
        p.flush(10)
        time.sleep(3 * wait + 6)
        delays = _rollup_delays(s, wait)
        alert = _first_alert_time(s)
        return {"rollup_delay_s": delays, "alert_delay_s": None if not (alert and crossed_at) else
                round(alert - crossed_at, 3), "delay_events": i}
    finally:
        live.stop()
        _drop(s)


def _read_all(s: Settings, topic: str) -> list:
    c = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    md = c.list_topics(topic, timeout=10).topics[topic]
    parts = [TopicPartition(topic, p, 0) for p in md.partitions]
    ends = {p.partition: c.get_watermark_offsets(p, timeout=10)[1] for p in parts}
    c.assign(parts)
    out, seen = [], dict.fromkeys(ends, 0)
    deadline = time.monotonic() + 20
    while any(seen[p] < ends[p] for p in ends) and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            out.append(m)
            seen[m.partition()] = m.offset() + 1
    c.close()
    return out


def _rollup_delays(s: Settings, wait: float) -> dict:
    firsts: dict[str, float] = {}
    for m in _read_all(s, s.topic(ROLLUPS)):
        doc = orjson.loads(m.value())
        end = datetime.fromisoformat(doc["window_end"].replace("Z", "+00:00")).timestamp()
        if doc["window_start"] not in firsts:
            firsts[doc["window_start"]] = m.timestamp()[1] / 1000 - (end + wait)
    # The first and last windows are partial (bench start/stop); keep whole ones.
    vals = sorted(v for _, v in sorted(firsts.items())[1:-1])
    if not vals:
        return {}
    return {"windows": len(vals), "p50": round(vals[len(vals) // 2], 3), "max": round(vals[-1], 3)}


def _first_alert_time(s: Settings) -> float | None:
    times = [m.timestamp()[1] / 1000 for m in _read_all(s, s.topic(ALERTS))
             if orjson.loads(m.value())["state"] == "fired"]
    return min(times) if times else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--replay-events", type=int, default=2_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--only", default="throughput,replay,rss,delay")
    ap.add_argument("--cluster-proc", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--addresses", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.cluster_proc is not None:
        _cluster_proc(a.cluster_proc, a.addresses)
        return
    only = set(a.only.split(","))
    out: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}}
    if "throughput" in only:
        out["throughput"] = bench_throughput(a.events)
    if "replay" in only:
        out["replay"] = bench_replay(a.replay_events)
    if "rss" in only:
        out["rss"] = bench_rss(a.keys)
    if "delay" in only:
        out["delay"] = bench_delays()
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()

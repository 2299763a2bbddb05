"""Shared pieces of the stream tests: a deterministic event set with known answers, producing,
running the dataflow bounded in-process, and reading rollups back."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from bytewax.testing import run_main
from confluent_kafka import Producer

from agenttrace.kafka import event_record
from schemas.events import ErrorEvent, Heartbeat, LlmCall
from schemas.settings import Settings
from schemas.topics import EVENTS, ROLLUPS
from streams.config import StreamConfig
from streams.kafka_io import offsets_at
from streams.rollups import FlowSpec, build_flow
from tests.support import read_topic

NS = uuid.UUID("6f1c0e59-8a44-4b8e-9a43-1f0d7c3a2b10")


def base_time() -> datetime:
    """A recent whole hour (tables and topics keep recent data), fixed within a test run."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=2)


def event_set(t0: datetime, minutes: int = 6, seed: int = 7) -> list[Any]:
    """Deterministic events: 3 agents x 2 models, calls with known latency/cost, some failing,
    plus error events and heartbeats, in event-time order per agent."""
    rnd = random.Random(seed)
    out: list[Any] = []
    n = 0
    for m in range(minutes):
        for agent in ("alpha", "beta", "gamma"):
            for i in range(12):
                n += 1
                ts = t0 + timedelta(minutes=m, seconds=i * 5 + 1)
                model = "gpt-4o" if i % 3 else "claude-3-5-sonnet"
                provider = "openai" if i % 3 else "anthropic"
                out.append(LlmCall(
                    event_id=uuid.uuid5(NS, f"c{n}"), timestamp=ts, project_id="proj", agent_id=agent,
                    provider=provider, model=model, tokens_in=100 + i, tokens_out=10 * i, tokens_cached=i % 2,
                    latency_ms=round(rnd.lognormvariate(6, 0.8), 3), ttft_ms=round(rnd.uniform(20, 400), 3),
                    status_code=500 if (i + m) % 7 == 0 else 200, cost_usd=round(0.0001 * (i + 1) + m * 1e-5, 8)))
            if m % 2 == 0:
                n += 1
                out.append(ErrorEvent(event_id=uuid.uuid5(NS, f"e{n}"), timestamp=t0 + timedelta(minutes=m, seconds=59),
                                      project_id="proj", agent_id=agent, error_type="Boom", message="x"))
            n += 1
            out.append(Heartbeat(event_id=uuid.uuid5(NS, f"h{n}"), timestamp=t0 + timedelta(minutes=m, seconds=30),
                                 project_id="proj", agent_id=agent))
    out.sort(key=lambda e: e.timestamp)  # arrival in event-time order
    return out


def expected_rollups(events: list[Any], width: int = 60) -> dict[str, dict[str, Any]]:
    """The answers, computed straight from the raw events (independently of streams/)."""
    acc: dict[tuple, dict[str, Any]] = defaultdict(lambda: {"calls": 0, "errors": 0, "error_events": 0, "tokens_in": 0,
                                                             "tokens_out": 0, "tokens_cached": 0, "cost": 0.0,
                                                             "lat": [], "ttft": [], "n": 0})
    for e in events:
        ws = int(e.timestamp.timestamp() // width) * width
        if isinstance(e, LlmCall):
            a = acc[(ws, e.project_id, e.agent_id, e.provider, e.model)]
            a["calls"] += 1
            a["errors"] += 1 if (e.status_code or 0) >= 400 else 0
            a["tokens_in"] += e.tokens_in or 0
            a["tokens_out"] += e.tokens_out or 0
            a["tokens_cached"] += e.tokens_cached or 0
            a["cost"] += e.cost_usd or 0
            a["lat"].append(e.latency_ms)
            a["ttft"].append(e.ttft_ms)
            a["n"] += 1
        elif isinstance(e, ErrorEvent):
            a = acc[(ws, e.project_id, e.agent_id, "", "")]
            a["errors"] += 1
            a["error_events"] += 1
            a["n"] += 1
    out = {}
    for (ws, p, ag, prov, model), a in acc.items():
        key = f"{datetime.fromtimestamp(ws, UTC).isoformat()}/{p}/{ag}/{prov}/{model}"
        out[key] = a
    return out


def produce(settings: Settings, events: list[Any], partition_of: dict[str, int] | None = None) -> None:
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "enable.idempotence": True})
    topic = settings.topic(EVENTS)
    for e in events:
        key, value, headers = event_record(e)
        kw = {"partition": partition_of[e.agent_id]} if partition_of and e.agent_id in partition_of else {}
        p.produce(topic, value, key, headers=headers, **kw)
    assert p.flush(20) == 0


def produce_raw(settings: Settings, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    p.produce(topic, value, key, **({"partition": partition} if partition is not None else {}))
    assert p.flush(20) == 0


def stream_config(**kw: Any) -> StreamConfig:
    base = {"window_seconds": 60, "wait_seconds": 5, "lateness_seconds": 300, "tick_seconds": 0.2,
            "epoch_seconds": 0.5, "idle_advance": False}
    return StreamConfig(**{**base, **kw})


def run_bounded(settings: Settings, cfg: StreamConfig | None = None, **kw: Any) -> None:
    """The dataflow over everything currently on the events topic, in this thread."""
    end = offsets_at(settings.kafka_bootstrap, settings.topic(EVENTS), None)
    spec = FlowSpec.from_settings(settings, cfg or stream_config(), live=False, end=end, rules_topic=None, **kw)
    run_main(build_flow(spec))


def rollup_messages(settings: Settings, topic: str | None = None) -> list[Any]:
    return read_topic(settings.kafka_bootstrap, topic or settings.topic(ROLLUPS), timeout=20)


def final_rollups(msgs: list[Any]) -> dict[str, bytes]:
    """Per key, the value with the highest version (what ReplacingMergeTree keeps)."""
    best: dict[str, tuple[int, bytes]] = {}
    for m in msgs:
        doc = orjson.loads(m.value())
        k = m.key().decode()
        if k not in best or doc["version"] >= best[k][0]:
            best[k] = (doc["version"], m.value())
    return {k: v for k, (_, v) in best.items()}


def split_after(msgs: list[Any], before: list[Any]) -> list[Any]:
    """Messages of `msgs` that were not yet on the topic when `before` was read (per partition)."""
    seen: dict[int, int] = {}
    for m in before:
        seen[m.partition()] = max(seen.get(m.partition(), -1), m.offset())
    return [m for m in msgs if m.offset() > seen.get(m.partition(), -1)]


class StreamProcess:
    """`agenttrace stream` in a subprocess (what a deployment runs), for live/kill tests."""

    def __init__(self, settings: Settings, workers: int = 1, port: int | None = None, **cfg: Any):
        import os
        import subprocess
        import sys
        from pathlib import Path

        from tests.support import free_port

        self.port = port or free_port()
        env = dict(os.environ)
        env.update({"AGENTTRACE_HOME": str(settings.home_dir), "AGENTTRACE_TOPIC_PREFIX": settings.topic_prefix,
                    "AGENTTRACE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                    "AGENTTRACE_STREAM_METRICS_PORT": str(self.port - int(cfg.get("process_id", 0))), "AGENTTRACE_LOG_LEVEL": "warning"})
        base = {"tick_seconds": 0.2, "epoch_seconds": 0.5, "minute_seconds": 1, "wait_seconds": 5}
        for k, v in {**base, **cfg}.items():
            env[f"AGENTTRACE_STREAM_{k.upper()}"] = str(v)
        self.log = open(settings.home_dir / f"stream-{self.port}.log", "wb")  # noqa: SIM115
        agenttrace = Path(sys.executable).with_name("agenttrace")
        self.proc = subprocess.Popen([str(agenttrace), "stream", "--workers", str(workers)], env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def metric(self, name: str) -> float:
        import urllib.request

        body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2).read().decode()
        total = 0.0
        for line in body.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def read_after(settings: Settings, topic: str) -> list[Any]:
    return read_topic(settings.kafka_bootstrap, topic, timeout=10)

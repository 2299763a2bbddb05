"""A small seeded data set over the last 48 hours: two projects, three agent/model lines, events, scores, a trace.

Chosen so the alert rules have something to find: project alpha spends more than $100 a day,
alpha's Claude line has a p95 latency above 5 s in the last 15 minutes, and beta's error rate
there is 20%. Expected figures are computed from the same rows the tests insert.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from schemas.sketch import Sketch


@dataclass(frozen=True)
class Line:
    project: str
    agent: str
    provider: str
    model: str
    cost_per_window: float
    latency_ms: float
    recent_latency_ms: float
    recent_errors: int


LINES = [
    Line("alpha", "planner", "openai", "gpt-4o", 3.0, 800.0, 800.0, 0),
    Line("alpha", "coder", "anthropic", "claude-3-5-sonnet", 0.5, 1500.0, 7000.0, 0),
    Line("beta", "support-bot", "openai", "gpt-4o-mini", 0.05, 300.0, 300.0, 2),
]
CALLS_PER_WINDOW = 10
TRACE_ID = "trace-seed-1"


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@dataclass
class Seed:
    now: datetime
    rollups: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)
    spans: list[dict] = field(default_factory=list)
    latencies: dict[tuple[str, str, bool], list[float]] = field(default_factory=dict)  # (project, model, last 15 min)

    def rollups_since(self, since: datetime) -> list[dict]:
        return [r for r in self.rollups if r["_start"] >= since]


def build(now: datetime | None = None) -> Seed:
    rnd = random.Random(7)
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    seed = Seed(now=now)
    # Every 30 minutes over 48 h, plus every minute of the last quarter hour.
    minutes_ago = sorted(set(range(45, 48 * 60, 30)) | set(range(1, 15)))  # none on the 24 h boundary
    for line in LINES:
        for ago in minutes_ago:
            start = now - timedelta(minutes=ago)
            recent = ago < 15
            base = line.recent_latency_ms if recent else line.latency_ms
            lat = [max(1.0, rnd.gauss(base, base * 0.1)) for _ in range(CALLS_PER_WINDOW)]
            ttft = [v * 0.2 for v in lat]
            seed.latencies.setdefault((line.project, line.model, recent), []).extend(lat)
            seed.rollups.append({
                "_start": start,
                "window_start": start.strftime("%Y-%m-%d %H:%M:%S"),
                "window_end": (start + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S"),
                "project_id": line.project, "agent_id": line.agent, "provider": line.provider, "model": line.model,
                "calls": CALLS_PER_WINDOW, "errors": line.recent_errors if recent else 0,
                "error_events": 0, "tokens_in": 1000, "tokens_out": 500, "tokens_cached": 0,
                "cost_usd": line.cost_per_window, "latency_ms_sum": sum(lat), "latency_ms_max": max(lat),
                "latency_sketch": Sketch.of(lat).to_json(), "ttft_sketch": Sketch.of(ttft).to_json(),
                "version": 1,
            })
    users = ["u-ada", "u-bob", "u-cy"]
    for i in range(120):
        line = LINES[i % len(LINES)]
        t = now - timedelta(minutes=rnd.randint(1, 47 * 60))
        trace = TRACE_ID if i < 3 else f"trace-{i}"
        seed.events.append(_event(t, "llm_call", line, trace_id=trace, name="chat", user_id=users[i % 3],
                                  tags=["prod", line.agent], tokens_in=1000, tokens_out=500,
                                  latency_ms=line.latency_ms, ttft_ms=line.latency_ms * 0.2, status_code=200,
                                  cost_usd=line.cost_per_window / CALLS_PER_WINDOW, source="sdk"))
    for i, kind in enumerate(["error"] * 6 + ["heartbeat"] * 12 + ["span"] * 4):
        line = LINES[i % len(LINES)]
        t = now - timedelta(minutes=rnd.randint(1, 47 * 60))
        extra = {"error_type": "Timeout", "message": "upstream timed out"} if kind == "error" else {}
        seed.events.append(_event(t, kind, line, trace_id=TRACE_ID if i < 2 else "", name=kind, **extra))
    for i in range(60):
        line = LINES[i % len(LINES)]
        value = round(rnd.random(), 3)
        seed.scores.append({
            "event_id": str(uuid.UUID(int=rnd.getrandbits(128))), "project_id": line.project, "agent_id": line.agent,
            "timestamp": _ts(now - timedelta(minutes=rnd.randint(1, 47 * 60))),
            "trace_id": TRACE_ID if i < 2 else f"trace-{i}", "name": "helpfulness" if i % 2 else "correctness",
            "value": value, "passed": value >= 0.5, "evaluator": "llm-judge" if i % 3 else "regex", "comment": "",
        })
    for j, name in enumerate(["agent.run", "llm.chat", "tool.search"]):
        start = now - timedelta(minutes=30 - j)
        seed.spans.append({
            "event_id": str(uuid.UUID(int=rnd.getrandbits(128))), "project_id": "alpha", "agent_id": "planner",
            "trace_id": TRACE_ID, "span_id": f"s{j}", "parent_span_id": "" if j == 0 else "s0", "name": name,
            "start_time": _ts(start), "end_time": _ts(start + timedelta(seconds=2)), "duration_ms": 2000.0,
            "status": "ok",
        })
    return seed


def _event(t: datetime, kind: str, line: Line, **fields) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": kind, "timestamp": _ts(t), "received_at": _ts(t),
            "project_id": line.project, "agent_id": line.agent, "provider": line.provider, "model": line.model,
            **fields}


def load(client, seed: Seed) -> None:
    db = client.database

    def rows(items: list[dict]) -> bytes:
        return b"\n".join(orjson.dumps({k: v for k, v in r.items() if not k.startswith("_")}) for r in items)

    client.insert(f"{db}.rollups_1m", rows(seed.rollups))
    client.insert(f"{db}.events", rows(seed.events))
    client.insert(f"{db}.scores", rows(seed.scores))
    client.insert(f"{db}.spans", rows(seed.spans))

"""A known data set for the API tests, inserted straight into ClickHouse, and the truth computed
from it in plain Python (independently of the API's SQL).

Rollups are built from the same raw events with `schemas.sketch.Sketch`, as the streams would.
Times are recent (the tables have a retention TTL) and the range is minute-aligned.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.sketch import Sketch, exact_quantile

AGENTS = ["planner", "coder", "reviewer"]
MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4")]
USERS = ["u1", "u2", ""]
SESSIONS = ["s1", "s2", "s3"]
RELEASES = ["r1", "r2"]
VERSIONS = ["v1", ""]
NAMES = ["plan", "code", ""]
TAGS = [[], ["prod"], ["prod", "eu"], ["beta"]]
Q = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


def fmt(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@dataclass
class DataSet:
    start: datetime
    end: datetime
    events: list[dict[str, Any]] = field(default_factory=list)  # project A's raw events (deduplicated)
    other: list[dict[str, Any]] = field(default_factory=list)  # project B's

    @property
    def range_ms(self) -> tuple[int, int]:
        return int(self.start.timestamp() * 1000), int(self.end.timestamp() * 1000)


def build(project_a: str = "proj_a", project_b: str = "proj_b", n: int = 1500, seed: int = 7) -> DataSet:
    rnd = random.Random(seed)
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    start = end - timedelta(hours=2)
    ds = DataSet(start, end)
    span_ms = int((end - start).total_seconds() * 1000)
    for project, out, count in ((project_a, ds.events, n), (project_b, ds.other, n // 3)):
        for i in range(count):
            ts = start + timedelta(milliseconds=rnd.randrange(span_ms))
            kind = rnd.choices(["llm_call", "error", "span", "heartbeat"], [80, 8, 8, 4])[0]
            provider, model = rnd.choice(MODELS)
            ev: dict[str, Any] = {
                "event_id": str(uuid.UUID(int=rnd.getrandbits(128))), "type": kind, "timestamp": fmt(ts),
                "received_at": fmt(ts), "project_id": project, "agent_id": rnd.choice(AGENTS),
                "trace_id": f"{project}-t{rnd.randrange(60)}" if rnd.random() < 0.7 else "",
                "span_id": f"sp{i}", "session_id": rnd.choice(SESSIONS), "user_id": rnd.choice(USERS),
                "release": rnd.choice(RELEASES), "version": rnd.choice(VERSIONS), "name": rnd.choice(NAMES),
                "tags": rnd.choice(TAGS), "_ms": int(ts.timestamp() * 1000),
            }
            if project == project_b:  # values only B has, to see that A never gets them
                ev["user_id"], ev["tags"] = "b-user", [*ev["tags"], "b-only"]
            if kind == "llm_call":
                tin, tout = rnd.randrange(10, 5000), rnd.randrange(1, 2000)
                ev.update(provider=provider, model=model, tokens_in=tin, tokens_out=tout,
                          latency_ms=round(rnd.lognormvariate(6.5, 0.8), 3) if rnd.random() < 0.9 else None,
                          ttft_ms=round(rnd.lognormvariate(5, 0.6), 3) if rnd.random() < 0.6 else None,
                          status_code=rnd.choice([200] * 9 + [429, 500]),
                          cost_usd=round(tin * 2.5e-6 + tout * 1e-5, 8) if rnd.random() < 0.95 else None,
                          source="sdk")
            elif kind == "error":
                ev.update(error_type="ToolError", message=f"tool failed {i}")
            out.append(ev)
    return ds


def _row(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if not k.startswith("_") and v is not None}


def rollups(events: list[dict[str, Any]], version: int = 2) -> list[dict[str, Any]]:
    acc: dict[tuple, dict[str, Any]] = {}
    for ev in events:
        if ev["type"] not in ("llm_call", "error"):
            continue
        minute = ev["_ms"] // 60_000 * 60_000
        key = (minute, ev["project_id"], ev["agent_id"], ev.get("provider", ""), ev.get("model", ""))
        r = acc.setdefault(key, {"calls": 0, "errors": 0, "error_events": 0, "tokens_in": 0, "tokens_out": 0,
                                 "tokens_cached": 0, "cost_usd": 0.0, "latency_ms_sum": 0.0,
                                 "latency_ms_max": 0.0, "lat": Sketch(), "ttft": Sketch()})
        if ev["type"] == "error":
            r["errors"] += 1
            r["error_events"] += 1
            continue
        r["calls"] += 1
        r["errors"] += int((ev.get("status_code") or 0) >= 400)
        r["tokens_in"] += ev.get("tokens_in") or 0
        r["tokens_out"] += ev.get("tokens_out") or 0
        r["cost_usd"] += ev.get("cost_usd") or 0.0
        if ev.get("latency_ms") is not None:
            r["latency_ms_sum"] += ev["latency_ms"]
            r["latency_ms_max"] = max(r["latency_ms_max"], ev["latency_ms"])
            r["lat"].add(ev["latency_ms"])
        if ev.get("ttft_ms") is not None:
            r["ttft"].add(ev["ttft_ms"])
    out = []
    for (minute, project, agent, provider, model), r in acc.items():
        ws = datetime.fromtimestamp(minute / 1000, UTC)
        out.append({"window_start": ws.strftime("%Y-%m-%d %H:%M:%S"),
                    "window_end": (ws + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S"),
                    "project_id": project, "agent_id": agent, "provider": provider, "model": model,
                    **{k: v for k, v in r.items() if k not in ("lat", "ttft")},
                    "latency_sketch": r["lat"].to_json(), "ttft_sketch": r["ttft"].to_json(), "version": version})
    return out


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in rows)


def load(client: Any, db: str, ds: DataSet) -> None:
    events = ds.events + ds.other
    rows = [_row(e) for e in events]
    # Redelivered twins: the same rows again; readers must not count them twice.
    client.insert(f"{db}.events", jsonl(rows))
    client.insert(f"{db}.events", jsonl(rows[: len(rows) // 4]))
    roll = rollups(events)
    # An older version of every rollup with wrong numbers first: FINAL must pick version 2.
    stale = [{**r, "calls": r["calls"] + 100, "cost_usd": r["cost_usd"] + 5, "errors": r["errors"] + 7,
              "version": 1} for r in roll]
    client.insert(f"{db}.rollups_1m", jsonl(stale))
    client.insert(f"{db}.rollups_1m", jsonl(roll))
    # Hour and day rows as the sinks recompute them, after a stale first version.
    for src, dst, fn, width in (("rollups_1m", "rollups_1h", "toStartOfHour", 3600),
                                ("rollups_1h", "rollups_1d", "toStartOfDay", 86400)):
        for version, extra in ((1, "+ 1000"), (2, "")):
            client.command(f"""
INSERT INTO {db}.{dst} (window_start, window_end, project_id, agent_id, provider, model, calls, errors,
    error_events, tokens_in, tokens_out, tokens_cached, cost_usd, latency_ms_sum, latency_ms_max,
    latency_sketch, ttft_sketch, version)
SELECT {fn}(window_start) AS ws, ws + {width}, project_id, agent_id, provider, model, sum(calls) {extra},
       sum(errors), sum(error_events), sum(tokens_in), sum(tokens_out), sum(tokens_cached), sum(cost_usd) {extra},
       sum(latency_ms_sum), max(latency_ms_max), sumMap(latency_sketch), sumMap(ttft_sketch), {version}
FROM {db}.{src} FINAL GROUP BY ws, project_id, agent_id, provider, model""")


# -- the truth -------------------------------------------------------------------------------

SUM_FIELDS = {"cost": lambda e: e.get("cost_usd") or 0.0,
              "tokens": lambda e: (e.get("tokens_in") or 0) + (e.get("tokens_out") or 0),
              "tokens_in": lambda e: e.get("tokens_in") or 0, "tokens_out": lambda e: e.get("tokens_out") or 0}
DIST_FIELDS = {"latency": "latency_ms", "ttft": "ttft_ms"}
GROUP_KEYS = {"model": "model", "provider": "provider", "agent": "agent_id", "name": "name", "user_id": "user_id",
              "session_id": "session_id", "release": "release", "version": "version"}


def groups_of(ev: dict[str, Any], group_by: str) -> list[str]:
    if group_by == "none":
        return [""]
    if group_by == "tag":
        return ev["tags"] or [""]
    return [ev.get(GROUP_KEYS[group_by]) or ""]


def agg_values(values: list[float], agg: str) -> float | None:
    if not values:
        return None
    if agg == "count":
        return float(len(values))
    if agg == "sum":
        return float(sum(values))
    if agg == "avg":
        return sum(values) / len(values)
    if agg == "min":
        return float(min(values))
    if agg == "max":
        return float(max(values))
    return exact_quantile(values, Q[agg])


def counter(evs: list[dict[str, Any]], field_: str) -> float | None:
    calls = sum(1 for e in evs if e["type"] == "llm_call")
    errors = sum(1 for e in evs if e["type"] == "error" or (e["type"] == "llm_call" and (e.get("status_code") or 0) >= 400))
    if field_ == "calls":
        return float(calls) if calls else None
    if field_ == "errors":
        return float(errors) if any(e["type"] in ("llm_call", "error") for e in evs) else None
    if field_ == "error_rate":
        return errors / calls if calls else None
    traces = {e["trace_id"] for e in evs if e["trace_id"]}
    return float(len(traces)) if traces else None


def expected(events: list[dict[str, Any]], field_: str, agg: str, group_by: str, t0: int, t1: int,
             iv: int) -> dict[str, dict[int, float]]:
    """{group: {bucket_ms: value}} from the raw events."""
    inside = [e for e in events if t0 <= e["_ms"] < t1]
    cells: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for e in inside:
        for g in groups_of(e, group_by):
            cells[(g, e["_ms"] // iv * iv)].append(e)
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for (g, b), evs in cells.items():
        if field_ in SUM_FIELDS:
            vals = [SUM_FIELDS[field_](e) for e in evs if e["type"] == "llm_call"]
            v = agg_values(vals, agg)
        elif field_ in DIST_FIELDS:
            col = DIST_FIELDS[field_]
            vals = [e[col] for e in evs if e["type"] == "llm_call" and e.get(col) is not None]
            v = agg_values(vals, agg)
        elif agg in ("count", "sum"):
            v = counter(evs, field_)
        else:
            sub_ms = min(iv, 60_000)
            subs: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for e in evs:
                subs[e["_ms"] // sub_ms].append(e)
            per = [counter(s, field_) for s in subs.values()]
            v = agg_values([x for x in per if x is not None], agg)
        if v is not None:
            out[g][b] = v
    return {g: s for g, s in out.items() if s}


def close(a: float, b: float, rel: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def extras(ds: DataSet) -> dict[str, list[dict[str, Any]]]:
    """Scores, spans, alerts, agents and rules of both projects (small, hand-made)."""
    t = ds.end - timedelta(minutes=30)
    now = datetime.now(UTC)
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for project in ("proj_a", "proj_b"):
        for i in range(6):
            out["scores"].append({"event_id": str(uuid.uuid4()), "project_id": project, "agent_id": AGENTS[i % 3],
                                  "timestamp": fmt(t + timedelta(minutes=i)), "trace_id": f"{project}-t1",
                                  "name": "helpfulness" if i % 2 else "accuracy", "value": i / 10,
                                  "passed": i % 2 == 0, "evaluator": "eval", "comment": f"c{i}"})
        tid = f"{project}-tree"
        for sid, parent, name in (("root", "", "run"), ("a", "root", "plan"), ("b", "root", "act"),
                                  ("c", "b", "tool")):
            out["spans"].append({"event_id": str(uuid.uuid4()), "project_id": project, "agent_id": "planner",
                                 "trace_id": tid, "span_id": sid, "parent_span_id": parent, "name": name,
                                 "start_time": fmt(t), "duration_ms": 12.5, "status": "ok"})
        # After the metric range, so the metric truth stays the generated events alone.
        te = ds.end + timedelta(minutes=2)
        out["tree_events"].append({"event_id": str(uuid.uuid4()), "type": "llm_call", "timestamp": fmt(te),
                                   "received_at": fmt(te), "project_id": project, "agent_id": "planner",
                                   "trace_id": tid, "span_id": "c1", "parent_span_id": "c", "provider": "openai",
                                   "model": "gpt-4o", "tokens_in": 5, "tokens_out": 5, "latency_ms": 10.0,
                                   "status_code": 200, "cost_usd": 0.001})
        for agent, seen in (("planner", now - timedelta(minutes=1)), ("coder", now - timedelta(hours=3))):
            out["agents"].append({"project_id": project, "agent_id": f"{agent}" if project == "proj_a" else
                                  f"{agent}-b", "name": agent.title(), "last_seen": fmt(seen)})
        rule_id = f"{project}-rule"
        rule = {"id": rule_id, "project_id": project, "type": "error_rate", "threshold": 10, "window_minutes": 15}
        out["alert_rules"].append({"project_id": project, "id": rule_id, "type": "error_rate",
                                   "rule": orjson.dumps(rule).decode(), "enabled": True, "deleted": False,
                                   "updated_at": fmt(now), "version": 1})
        out["alert_rules"].append({"project_id": project, "id": f"{project}-gone", "type": "budget",
                                   "rule": "{}", "enabled": True, "deleted": True, "updated_at": fmt(now),
                                   "version": 2})
        base = {"rule_id": rule_id, "rule_type": "error_rate", "project_id": project, "agent_id": "planner",
                "subject": "planner", "threshold": 10.0, "window_minutes": 15}
        out["alerts"] += [
            {**base, "alert_id": f"{project}-a1", "state": "fired", "outcome": "fired", "value": 25.0,
             "message": "error rate 25%", "timestamp": fmt(t)},
            {**base, "alert_id": f"{project}-a1", "state": "fired", "outcome": "failed", "channel": "webhook",
             "target": "http://hook", "attempt": 1, "error": "503", "message": "error rate 25%",
             "timestamp": fmt(t)},
            {**base, "alert_id": f"{project}-a1", "state": "fired", "outcome": "delivered", "channel": "webhook",
             "target": "http://hook", "attempt": 2, "message": "error rate 25%", "timestamp": fmt(t)},
        ]
    return out


def load_extras(client: Any, db: str, ds: DataSet) -> dict[str, list[dict[str, Any]]]:
    ex = extras(ds)
    for tbl in ("scores", "spans", "agents", "alert_rules", "alerts"):
        client.insert(f"{db}.{tbl}", jsonl(ex[tbl]))
    client.insert(f"{db}.events", jsonl(ex["tree_events"]))
    return ex

"""REST under /api against the known data set."""

from __future__ import annotations

import csv
import io

import orjson

from tests.api import dataset


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


async def test_events_pages_through_every_event_once(env):
    t0, t1 = env.ds.range_ms
    params = {"agent_id": "coder", "from": _iso(t0), "to": _iso(t1), "limit": 37}
    seen, cursor, pages = [], None, 0
    while True:
        res = await env.client.get("/api/events", params={**params, **({"cursor": cursor} if cursor else {})},
                                   headers=env.h())
        assert res.status_code == 200, res.text
        doc = res.json()
        seen += doc["events"]
        pages += 1
        cursor = doc["next_cursor"]
        if not cursor:
            break
    want = {e["event_id"] for e in env.ds.events if e["agent_id"] == "coder"}
    assert [e["event_id"] for e in seen if True] and len(seen) == len(want) == len({e["event_id"] for e in seen})
    assert {e["event_id"] for e in seen} == want and pages > 2
    stamps = [e["timestamp"] for e in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert all(e["event_type"] == e["type"] and e["project_id"] == "proj_a" for e in seen)


async def test_events_filters_and_search(env):
    t0, t1 = env.ds.range_ms
    base = {"from": _iso(t0), "to": _iso(t1), "limit": 1000}
    res = await env.client.get("/api/events", params={**base, "provider": "anthropic", "type": "llm_call"},
                               headers=env.h())
    want = [e for e in env.ds.events if e.get("provider") == "anthropic"]
    assert {e["event_id"] for e in res.json()["events"]} == {e["event_id"] for e in want}
    res = await env.client.get("/api/events", params={**base, "search": "TOOL FAILED 1"}, headers=env.h())
    want = [e for e in env.ds.events if "tool failed 1" in e.get("message", "")]
    assert want and {e["event_id"] for e in res.json()["events"]} == {e["event_id"] for e in want}
    bad = await env.client.get("/api/events", params={"cursor": "!!nonsense"}, headers=env.h())
    assert bad.status_code == 400 and "cursor" in bad.json()["error"]
    bad = await env.client.get("/api/events", params={"from": "2026-13-45"}, headers=env.h())
    assert bad.status_code == 400 and "bad time range" in bad.json()["error"]


async def test_exports_in_every_format(env):
    t0, t1 = env.ds.range_ms
    params = {"from": _iso(t0), "to": _iso(t1), "model": "gpt-4o"}
    want = {e["event_id"] for e in env.ds.events if e.get("model") == "gpt-4o"}
    res = await env.client.get("/api/events/export", params={**params, "format": "csv"}, headers=env.h())
    assert res.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(res.text)))
    assert {r["event_id"] for r in rows} == want and len(rows) == len(want)
    res = await env.client.get("/api/events/export", params={**params, "format": "json"}, headers=env.h())
    doc = orjson.loads(res.content)
    assert isinstance(doc, list) and {r["event_id"] for r in doc} == want and len(doc) == len(want)
    res = await env.client.get("/api/events/export", params={**params, "format": "ndjson"}, headers=env.h())
    lines = [orjson.loads(x) for x in res.content.splitlines() if x]
    assert {r["event_id"] for r in lines} == want and all(r["project_id"] == "proj_a" for r in lines)
    empty = await env.client.get("/api/events/export", params={**params, "format": "json", "model": "none"},
                                 headers=env.h())
    assert orjson.loads(empty.content) == []
    bad = await env.client.get("/api/events/export", params={"format": "xml"}, headers=env.h())
    assert bad.status_code == 400 and "bad format" in bad.json()["error"]


async def test_stats_summary_and_timeseries(env):
    t0, t1 = env.ds.range_ms
    calls = [e for e in env.ds.events if e["type"] == "llm_call" and e["agent_id"] == "planner"]
    errs = [e for e in env.ds.events if e["agent_id"] == "planner" and (
        e["type"] == "error" or (e["type"] == "llm_call" and e["status_code"] >= 400))]
    res = await env.client.get("/api/stats/summary", params={"from": _iso(t0), "to": _iso(t1),
                                                              "agent_id": "planner"}, headers=env.h())
    doc = res.json()
    assert doc["calls"] == len(calls) and doc["errors"] == len(errs)
    assert dataset.close(doc["cost_usd"], sum(e.get("cost_usd") or 0 for e in calls), 1e-9)
    lat = [e["latency_ms"] for e in calls if e["latency_ms"] is not None]
    assert dataset.close(doc["p95_latency_ms"], dataset.exact_quantile(lat, 0.95), 0.01)
    assert dataset.close(doc["avg_latency_ms"], sum(lat) / len(lat), 1e-9)
    for bucket, ms in (("minute", 60_000), ("hour", 3_600_000), ("day", 86_400_000)):
        res = await env.client.get("/api/stats/timeseries", params={"from": _iso(t0), "to": _iso(t1),
                                                                     "bucket": bucket}, headers=env.h())
        points = res.json()["points"]
        assert sum(p["calls"] for p in points) == sum(1 for e in env.ds.events if e["type"] == "llm_call")
        want = dataset.expected(env.ds.events, "calls", "sum", "none", t0, t1, ms)[""]
        assert len(points) == len(want)
    bad = await env.client.get("/api/stats/timeseries", params={"bucket": "fortnight"}, headers=env.h())
    assert bad.status_code == 400 and "bad bucket" in bad.json()["error"]


async def test_agents_with_status(env):
    res = await env.client.get("/api/agents", headers=env.h())
    agents = {a["agent_id"]: a for a in res.json()["agents"]}
    assert {k: a["status"] for k, a in agents.items()} == {"planner": "up", "coder": "down"}
    assert agents["planner"]["name"] == "Planner"
    res = await env.client.get("/api/agents", params={"down_after_minutes": 600}, headers=env.h())
    assert {a["status"] for a in res.json()["agents"]} == {"up"}


async def test_alert_rules_state_and_history(env):
    res = await env.client.get("/api/alerts", headers=env.h())
    rules = res.json()["alerts"]
    assert [r["id"] for r in rules] == ["proj_a-rule"]  # the deleted rule is gone, B's rule invisible
    assert rules[0]["state"] == "firing" and rules[0]["threshold"] == 10
    assert rules[0]["firing"][0]["subject"] == "planner"
    hist = (await env.client.get("/api/alert-history", headers=env.h())).json()["history"]
    assert sorted((h["kind"], h["outcome"]) for h in hist) == [
        ("delivery", "delivered"), ("delivery", "failed"), ("transition", "fired")]
    only = (await env.client.get("/api/alert-history", params={"kind": "transition"}, headers=env.h())).json()
    assert [h["outcome"] for h in only["history"]] == ["fired"]


async def test_trace_tree(env):
    res = await env.client.get("/api/traces/proj_a-tree", headers=env.h())
    doc = res.json()
    assert doc["span_count"] == 4
    (root,) = doc["spans"]
    assert root["name"] == "run" and sorted(c["name"] for c in root["children"]) == ["act", "plan"]
    act = next(c for c in root["children"] if c["name"] == "act")
    (tool,) = act["children"]
    assert tool["name"] == "tool" and tool["events"][0]["model"] == "gpt-4o"
    missing = await env.client.get("/api/traces/nope", headers=env.h())
    assert missing.status_code == 404 and "no trace" in missing.json()["error"]


async def test_health_metrics_and_openapi(env):
    assert (await env.client.get("/livez")).status_code == 200
    ready = await env.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["clickhouse"]["status"] == "healthy"
    assert (await env.client.get("/version")).json()["service"] == "api"
    await env.client.get("/api/agents", headers=env.h())
    text = (await env.client.get("/metrics")).text
    assert 'http_requests_total{method="GET",path="/api/agents",status="200"}' in text
    assert 'db_query_duration_seconds_count{query="agents"}' in text
    assert "http_request_duration_seconds_bucket" in text
    spec = (await env.client.get("/openapi.json")).json()
    assert {"/api/events", "/api/events/export", "/grafana/query", "/api/traces/{trace_id}"} <= set(spec["paths"])

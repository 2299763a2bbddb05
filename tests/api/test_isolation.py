"""A key reads only its project, whatever it sends; hostile strings are data, never SQL."""

from __future__ import annotations

from urllib.parse import quote

import orjson
import pytest

HOSTILE = [
    "' OR 1=1 --",
    "proj_b",
    "x') UNION ALL SELECT name, name, name FROM system.tables --",
    "{p0:String}",
    "\\'; DROP TABLE events; --",
    "`events`",
    "1; DROP DATABASE default",
    "a\nb\r\n\t\x00",
    "') OR project_id = 'proj_b",
    "(?i).*",
]


async def _calls(env, key, **extra) -> float:
    body = {"range": env.grafana_range(), "intervalMs": 600_000,
            "targets": [{"target": "metrics", "payload": {"field": "calls", "aggregation": "count"}}], **extra}
    res = await env.query(body, key)
    assert res.status_code == 200, res.text
    return sum(v for s in res.json() for v, _ in s["datapoints"])


async def test_each_key_sees_only_its_project(env):
    calls_a = sum(1 for e in env.ds.events if e["type"] == "llm_call")
    calls_b = sum(1 for e in env.ds.other if e["type"] == "llm_call")
    assert await _calls(env, env.key_a) == calls_a
    assert await _calls(env, env.key_b) == calls_b
    # Asking for the other project through ad hoc filters yields nothing, never B's rows.
    assert await _calls(env, env.key_a, filters=[{"key": "project", "operator": "=", "value": "proj_b"}]) == 0
    assert await _calls(env, env.key_a, filters=[{"key": "project", "operator": "!=", "value": "proj_a"}]) == 0
    assert await _calls(env, env.key_a, filters=[{"key": "project_id", "operator": "=~", "value": ".*"}]) == calls_a
    assert await _calls(env, env.key_a, filters=[{"key": "user_id", "operator": "=", "value": "b-user"}]) == 0


async def test_tables_variables_and_tag_values_stay_in_the_project(env):
    res = await env.query({"range": env.grafana_range(), "targets": [
        {"target": t, "payload": {"limit": 10000}} for t in ("traces", "observations", "scores", "alerts")]
        + [{"target": "costs"}]})
    blob = res.text
    assert res.status_code == 200 and "proj_b" not in blob and "b-user" not in blob
    for key in ("tag", "user_id"):
        vals = (await env.client.post("/grafana/tag-values", json={"key": key}, headers=env.h())).json()
        assert vals and not {"b-only", "b-user"} & {v["text"] for v in vals}
    vals_b = (await env.client.post("/grafana/tag-values", json={"key": "tag"}, headers=env.h(env.key_b))).json()
    assert "b-only" in {v["text"] for v in vals_b}


async def test_rest_and_exports_stay_in_the_project(env):
    for fmt in ("csv", "json", "ndjson"):
        res = await env.client.get("/api/events/export", headers=env.h(),
                                   params={"format": fmt, "project_id": "proj_b", "user_id": "b-user"})
        assert res.status_code == 200 and "proj_b" not in res.text and "b-user" not in res.text
        res = await env.client.get("/api/events/export", headers=env.h(), params={"format": fmt})
        assert "proj_a" in res.text and "proj_b" not in res.text
    res = await env.client.get("/api/events", headers=env.h(), params={"project_id": "proj_b", "limit": 1000})
    assert res.json()["events"] and all(e["project_id"] == "proj_a" for e in res.json()["events"])
    assert (await env.client.get("/api/traces/proj_b-tree", headers=env.h())).status_code == 404
    assert "proj_b" not in (await env.client.get("/api/alerts", headers=env.h())).text
    assert "proj_b" not in (await env.client.get("/api/alert-history", headers=env.h())).text
    agents = (await env.client.get("/api/agents", headers=env.h())).json()["agents"]
    assert {a["agent_id"] for a in agents} == {"planner", "coder"}


def _count(env) -> int:
    return env.ch.query(f"SELECT count() AS n FROM {env.db}.events")[0]["n"]


@pytest.mark.parametrize("evil", HOSTILE)
async def test_injection_attempts_in_every_string_field_are_harmless(env, evil):
    before = _count(env)
    rng = env.grafana_range()
    bodies = [
        {"range": rng, "targets": [{"target": evil}]},
        {"range": rng, "targets": [{"target": "metrics", "payload": {"field": evil}}]},
        {"range": rng, "targets": [{"target": "metrics", "payload": {"aggregation": evil}}]},
        {"range": rng, "targets": [{"target": "metrics", "payload": {"group_by": evil}}]},
        {"range": {"from": evil, "to": evil}, "targets": []},
        {"range": rng, "filters": [{"key": evil, "operator": "=", "value": "x"}], "targets": []},
        {"range": rng, "filters": [{"key": "model", "operator": evil, "value": "x"}], "targets": []},
        {"range": rng, "targets": [{"target": "traces", "payload": {"limit": evil}}]},
    ]
    for body in bodies:
        res = await env.query(body)
        assert res.status_code == 400 and res.json()["error"], (body, res.text)
    # As values they are data: accepted, and they match nothing of B.
    for key in ("model", "provider", "agent", "name", "user_id", "session_id", "release", "version", "tag",
                "type", "project"):
        for op in ("=", "!="):
            res = await env.query({"range": rng, "filters": [{"key": key, "operator": op, "value": evil}],
                                   "targets": [{"target": "observations", "payload": {"limit": 10000, key: evil}}]})
            assert res.status_code == 200, (key, res.text)
            assert "proj_b" not in res.text
    for path, params in (("/api/events", {"agent_id": evil, "model": evil, "provider": evil, "type": evil,
                                          "search": evil, "user_id": evil, "session_id": evil}),
                         ("/api/events", {"cursor": evil}), ("/api/events", {"from": evil}),
                         ("/api/events/export", {"format": "json", "agent_id": evil, "search": evil}),
                         ("/api/events/export", {"format": evil}),
                         ("/api/stats/summary", {"agent_id": evil, "model": evil, "provider": evil}),
                         ("/api/stats/timeseries", {"bucket": evil}), ("/api/stats/timeseries", {"agent_id": evil}),
                         ("/api/alert-history", {"rule_id": evil, "agent_id": evil}),
                         ("/api/alert-history", {"kind": evil})):
        res = await env.client.get(path, params=params, headers=env.h())
        assert res.status_code in (200, 400), (path, res.text)
        assert "Traceback" not in res.text
        if res.status_code == 200:  # (a 400 may quote the bad input back)
            assert "proj_b" not in res.text
        if res.status_code == 200 and path == "/api/events":
            assert res.json()["events"] == []
        if res.status_code == 200 and path == "/api/events/export":
            assert orjson.loads(res.content) == []
    res = await env.client.get(f"/api/traces/{quote(evil, safe='')}", headers=env.h())
    assert res.status_code in (404, 400)
    res = await env.client.post("/grafana/variable", json={"payload": {"target": evil}}, headers=env.h())
    assert res.status_code == 400
    res = await env.client.post("/grafana/tag-values", json={"key": evil}, headers=env.h())
    assert res.status_code == 400
    assert _count(env) == before
    tables = env.ch.query("SELECT count() AS n FROM system.tables WHERE database = {d:String}", {"d": env.db})
    assert tables[0]["n"] >= 7

"""Grafana JSON datasource: discovery, variables, ad hoc filters, tables and error messages."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.api import dataset


async def test_connection_needs_a_key(env):
    assert (await env.client.get("/grafana/")).status_code == 401
    bad = await env.client.get("/grafana/", headers={"x-api-key": "sk-at-nope"})
    assert bad.status_code == 401 and "invalid" in bad.json()["error"]
    ok = await env.client.get("/grafana/", headers=env.h())
    assert ok.status_code == 200 and ok.json()["project_id"] == "proj_a"


async def test_metrics_and_payload_options(env):
    res = await env.client.post("/grafana/metrics", json={}, headers=env.h())
    values = {m["value"]: m for m in res.json()}
    assert set(values) == {"metrics", "traces", "observations", "scores", "costs", "alerts"}
    names = {p["name"] for p in values["metrics"]["payloads"]}
    assert {"aggregation", "field", "group_by", "model", "agent", "tag"} <= names
    opts = await env.client.post("/grafana/metric-payload-options", headers=env.h(),
                                 json={"metric": "metrics", "payload": {}, "name": "aggregation"})
    assert [o["value"] for o in opts.json()] == ["count", "sum", "avg", "min", "max", "p50", "p95", "p99"]
    models = await env.client.post("/grafana/metric-payload-options", headers=env.h(),
                                   json={"metric": "metrics", "payload": {}, "name": "model"})
    assert {o["value"] for o in models.json()} == {m for _, m in dataset.MODELS}


VARIABLES = {
    "models": lambda e: [e.get("model", "")] if e["type"] in ("llm_call", "error") else [],
    "agents": lambda e: [e["agent_id"]] if e["type"] in ("llm_call", "error") else [],
    "users": lambda e: [e["user_id"]], "sessions": lambda e: [e["session_id"]], "names": lambda e: [e["name"]],
    "releases": lambda e: [e["release"]], "tags": lambda e: e["tags"],
}


@pytest.mark.parametrize("variable", sorted(VARIABLES))
async def test_variables_list_the_project_values(env, variable):
    res = await env.client.post("/grafana/variable", headers=env.h(),
                                json={"payload": {"target": variable}, "range": env.grafana_range()})
    assert res.status_code == 200, res.text
    got = {v["value"] for v in res.json()}
    assert all(v["text"] == v["value"] for v in res.json())
    want = {x for e in env.ds.events for x in VARIABLES[variable](e)}
    if variable == "agents":
        want |= {a["agent_id"] for a in env.extras["agents"] if a["project_id"] == "proj_a"}
    want.discard("")  # empty values are no useful choice
    assert got == want


async def test_projects_variable_is_only_the_keys_project(env):
    res = await env.client.post("/grafana/variable", headers=env.h(), json={"payload": {"target": "projects"}})
    assert [v["value"] for v in res.json()] == ["proj_a"]


async def test_tag_keys_and_values(env):
    keys = {k["text"] for k in (await env.client.post("/grafana/tag-keys", json={}, headers=env.h())).json()}
    assert {"model", "agent", "user_id", "session_id", "tag", "release"} <= keys
    vals = await env.client.post("/grafana/tag-values", json={"key": "tag"}, headers=env.h())
    assert {v["text"] for v in vals.json()} == {"prod", "eu", "beta"}
    bad = await env.client.post("/grafana/tag-values", json={"key": "password"}, headers=env.h())
    assert bad.status_code == 400 and "unknown key" in bad.json()["error"]


def _match(e: dict, key: str, op: str, value: str) -> bool:
    import re

    vals = e["tags"] if key == "tag" else [e.get(dataset.GROUP_KEYS.get(key, key)) or ""]
    if op in ("=", "!="):
        hit = value in vals
    else:
        hit = any(re.fullmatch(value, v) for v in vals)
    return hit if op in ("=", "=~") else not hit


@pytest.mark.parametrize("filters", [
    [("model", "=", "gpt-4o")],
    [("agent", "!=", "planner")],
    [("model", "=~", "gpt-4o.*"), ("agent", "=", "coder")],
    [("user_id", "=", "u1")],
    [("tag", "=", "prod")],
    [("tag", "!~", "b.*")],
    [("session_id", "!~", "s[12]"), ("release", "=", "r2")],
])
async def test_ad_hoc_filters_apply_to_metrics(env, filters):
    t0, t1 = env.ds.range_ms
    kept = [e for e in env.ds.events if all(_match(e, k, op, v) for k, op, v in filters)]
    assert 0 < len(kept) < len(env.ds.events)
    for field, agg in (("calls", "count"), ("cost", "sum"), ("latency", "p95"), ("errors", "max")):
        res = await env.query({"range": env.grafana_range(), "intervalMs": 600_000,
                               "filters": [{"key": k, "operator": op, "value": v} for k, op, v in filters],
                               "targets": [{"target": "metrics", "payload": {"field": field, "aggregation": agg,
                                                                             "group_by": "agent"}}]})
        assert res.status_code == 200, res.text
        got = {s["target"]: {ts: v for v, ts in s["datapoints"]} for s in res.json()}
        want = dataset.expected(kept, field, agg, "agent", t0, t1, 600_000)
        assert set(got) == set(want)
        for g in want:
            assert set(got[g]) == set(want[g])
            for b, v in want[g].items():
                assert dataset.close(got[g][b], v, 0.01), (field, agg, g, b)


async def test_payload_filters_and_template_variable_values(env):
    t0, t1 = env.ds.range_ms
    res = await env.query({"range": env.grafana_range(), "intervalMs": 600_000, "targets": [
        {"target": "metrics", "payload": {"field": "tokens", "aggregation": "sum", "model": "{gpt-4o,gpt-4o-mini}",
                                          "agent": ["coder", "reviewer"]}},
        {"target": "metrics", "payload": {"field": "tokens", "aggregation": "sum", "model": "$__all"}}]})
    a, b = res.json()
    kept = [e for e in env.ds.events if e.get("model") in ("gpt-4o", "gpt-4o-mini")
            and e["agent_id"] in ("coder", "reviewer")]
    want = dataset.expected(kept, "tokens", "sum", "none", t0, t1, 600_000)[""]
    assert {ts: v for v, ts in a["datapoints"]} == want
    assert sum(v for v, _ in b["datapoints"]) == sum(
        (e.get("tokens_in") or 0) + (e.get("tokens_out") or 0) for e in env.ds.events if e["type"] == "llm_call")


async def test_tables(env):
    res = await env.query({"range": env.grafana_range(), "targets": [
        {"target": "traces", "refId": "T", "payload": {"limit": 500}},
        {"target": "observations", "refId": "O", "payload": {"limit": 50, "model": "gpt-4o"}},
        {"target": "scores", "refId": "S"},
        {"target": "costs", "refId": "C"},
        {"target": "alerts", "refId": "A"}]})
    assert res.status_code == 200, res.text
    tables = {t["refId"]: t for t in res.json()}
    assert all(t["type"] == "table" for t in tables.values())

    def rows(ref):
        cols = [c["text"] for c in tables[ref]["columns"]]
        return [dict(zip(cols, r, strict=True)) for r in tables[ref]["rows"]]

    traces = rows("T")
    want = defaultdict(list)
    for e in env.ds.events:
        if e["trace_id"]:
            want[e["trace_id"]].append(e)
    assert {t["trace_id"] for t in traces} == set(want)
    for t in traces:
        evs = want[t["trace_id"]]
        assert t["events"] == len(evs)
        assert dataset.close(t["cost_usd"], sum(e.get("cost_usd") or 0 for e in evs), 1e-9)
        assert t["start_time"] == min(e["_ms"] for e in evs)
    obs = rows("O")
    assert len(obs) == 50 and all(o["model"] == "gpt-4o" for o in obs)
    assert [o["time"] for o in obs] == sorted((o["time"] for o in obs), reverse=True)
    assert len(rows("S")) == 6 and {s["name"] for s in rows("S")} == {"accuracy", "helpfulness"}
    costs = rows("C")
    per_model = defaultdict(float)
    for e in env.ds.events:
        if e["type"] == "llm_call":
            per_model[e["model"]] += e.get("cost_usd") or 0
    got = defaultdict(float)
    for c in costs:
        got[c["model"]] += c["cost_usd"]
    assert set(got) == set(per_model) and all(dataset.close(got[m], per_model[m], 1e-9) for m in got)
    for c in costs:
        assert dataset.close(c["day_cost_usd"], sum(x["cost_usd"] for x in costs if x["day"] == c["day"]), 1e-9)
    alerts = rows("A")
    assert [(a["rule_id"], a["state"]) for a in alerts] == [("proj_a-rule", "fired")]


@pytest.mark.parametrize("body,needle", [
    ({"targets": [{"target": "nope"}]}, "unknown metric 'nope'"),
    ({"targets": [{"target": "metrics", "payload": {"aggregation": "median"}}]}, "bad aggregation 'median'"),
    ({"targets": [{"target": "metrics", "payload": {"field": "vibes"}}]}, "unknown metric field 'vibes'"),
    ({"targets": [{"target": "metrics", "payload": {"group_by": "password"}}]}, "bad group_by"),
    ({"range": {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "targets": []}, "bad time range"),
    ({"range": {"from": "yesterday-ish", "to": "now"}, "targets": []}, "bad time range"),
    ({"filters": [{"key": "model", "operator": "<>", "value": "x"}], "targets": []}, "bad filter"),
    ({"filters": [{"key": "model", "operator": "=~", "value": "(("}], "targets": []}, "regular expression"),
    ({"targets": [{"target": "traces", "payload": {"limit": "lots"}}]}, "bad limit"),
])
async def test_errors_say_what_was_wrong(env, body, needle):
    res = await env.query(body)
    assert res.status_code == 400
    assert needle in res.json()["error"]
    assert "Traceback" not in res.text

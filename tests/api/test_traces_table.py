"""The traces table picks the newest traces first and aggregates only those; the answer must be the
same as aggregating every trace and keeping the newest (checked against the raw events), and the
rollup percentiles must equal the merged-sketch rule of schemas.sketch exactly."""

from __future__ import annotations

from collections import defaultdict

import pytest

from api import queries
from api.params import TimeRange
from schemas.sketch import clickhouse_quantile_sql
from tests.api import dataset


def _truth(events: list[dict], keep, limit: int) -> list[dict]:
    by_trace: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if e["trace_id"] and keep(e):
            by_trace[e["trace_id"]].append(e)
    out = []
    for tid, evs in by_trace.items():
        start = min(e["_ms"] for e in evs)
        named = sorted((e["_ms"], e["name"]) for e in evs if e["name"])
        out.append({"trace_id": tid, "start_time": start, "events": len(evs),
                    "calls": sum(e["type"] == "llm_call" for e in evs),
                    "errors": sum(e["type"] == "error" or (e["type"] == "llm_call" and
                                                          (e.get("status_code") or 0) >= 400) for e in evs),
                    "cost_usd": sum(e.get("cost_usd") or 0 for e in evs),
                    "tokens_in": sum(e.get("tokens_in") or 0 for e in evs),
                    "latency_ms": max(e["_ms"] + (e.get("latency_ms") or 0) for e in evs) - start,
                    "name": named[0][1] if named else "",
                    "tags": ",".join(sorted({t for e in evs for t in e["tags"]}))})
    out.sort(key=lambda t: (-t["start_time"], t["trace_id"]))
    return out[:limit]


async def _table(env, payload: dict, filters: list[dict] | None = None) -> list[dict]:
    res = await env.query({"range": env.grafana_range(), "filters": filters or [],
                           "targets": [{"target": "traces", "payload": payload}]})
    assert res.status_code == 200, res.text
    table = res.json()[0]
    cols = [c["text"] for c in table["columns"]]
    return [dict(zip(cols, r, strict=True)) for r in table["rows"]]


@pytest.mark.parametrize("payload,filters,keep", [
    ({"limit": 7}, [], lambda e: True),
    ({"limit": 5, "model": "gpt-4o"}, [], lambda e: e.get("model") == "gpt-4o"),
    ({"limit": 4, "agent": "coder"}, [{"key": "tag", "operator": "=", "value": "prod"}],
     lambda e: e["agent_id"] == "coder" and "prod" in e["tags"]),
    ({"limit": 1000, "model": "gpt-4o-mini"}, [], lambda e: e.get("model") == "gpt-4o-mini"),
])
async def test_newest_traces_with_filters_match_the_raw_events(env, payload, filters, keep):
    got = await _table(env, payload, filters)
    want = _truth(env.ds.events, keep, int(payload["limit"]))
    assert 0 < len(want) and [t["trace_id"] for t in got] == [t["trace_id"] for t in want]
    for g, w in zip(got, want, strict=True):
        for k in ("start_time", "events", "calls", "errors", "tokens_in", "name", "tags"):
            assert g[k] == w[k], (k, g, w)
        assert dataset.close(g["cost_usd"], w["cost_usd"], 1e-9)
        assert dataset.close(g["latency_ms"], w["latency_ms"], 1e-9)


async def test_traces_table_empty_when_nothing_matches(env):
    assert await _table(env, {"limit": 10, "model": "no-such-model"}) == []


async def test_sketch_quantile_equals_the_merged_map_rule(env):
    tr = TimeRange(env.ds.start, env.ds.end)
    src = queries.Sql("proj_a")
    # Minute rows grouped by 10 minutes: many merged groups whatever the time of day (hour rows are few).
    rollups, used = queries.rollup_source(src, env.db, tr, 60_000, [])
    assert used == "rollups_1m"
    for q in ("0.5", "0.95", "0.99"):
        for col in ("latency_sketch", "ttft_sketch"):
            sql = (f"SELECT intDiv(toUnixTimestamp(window_start), 600) AS t, agent_id AS g, "
                   f"{queries.sketch_quantile_sql(col, q)} AS new, "
                   f"{clickhouse_quantile_sql(f'sumMap({col})', q)} AS old, "
                   f"{queries._sketch_count(col)} AS n "
                   f"FROM {rollups} GROUP BY t, g ORDER BY t, g")
            rows = env.ch.query(sql, src.params)
            assert len(rows) > 20 and any(r["n"] > 1 for r in rows)
            assert all(r["new"] == r["old"] for r in rows), [r for r in rows if r["new"] != r["old"]][:3]


TRACE_CASES = [
    ({"limit": 7}, []),
    ({"limit": 1000}, []),
    ({"limit": 5, "model": "gpt-4o"}, []),
    ({"limit": 4, "agent": "coder"}, [{"key": "tag", "operator": "=", "value": "prod"}]),
    ({"limit": 50, "name": "plan"}, [{"key": "model", "operator": "!=", "value": "gpt-4o"}]),
]


@pytest.mark.parametrize("payload,adhoc", TRACE_CASES)
async def test_python_sums_equal_the_clickhouse_aggregates(env, payload, adhoc):
    """The fast path (rows summed in Python) gives exactly the SQL aggregates' rows, floats included
    (the data set has many events per trace, nulls, and redelivered twins that FINAL folds)."""
    from api.params import adhoc_filters, payload_filters

    db, limit = env.app.state.db, int(payload["limit"])
    filters = [*payload_filters(payload), *adhoc_filters(adhoc)]
    tr = TimeRange(env.ds.start, env.ds.end)
    sql, params = queries.traces_query(env.db, "proj_a", tr, filters, limit)
    slow = db.rows_sync("t", sql, params, queries.TRACES_SETTINGS)
    sql, params = queries.traces_rows_query(env.db, "proj_a", tr, filters, limit, 100_000)
    rows = db.rows_sync("t", sql, params, queries.TRACES_SETTINGS)
    assert slow and len(rows) > len(slow)
    assert queries.aggregate_traces(rows, limit) == slow


async def test_traces_with_more_rows_than_the_python_cap_come_from_sql(env, monkeypatch):
    payload = {"limit": 20}
    fast = await _table(env, payload)

    def refuse(rows, limit):
        raise AssertionError("more rows than the cap must not be summed in Python")

    env.app.state.db.limits.traces_python_rows = 10  # the newest 20 traces have far more rows
    monkeypatch.setattr(queries, "aggregate_traces", refuse)
    slow = await _table(env, payload)
    assert len(fast) == 20 and slow == fast

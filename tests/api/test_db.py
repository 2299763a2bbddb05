"""Query sharing: equal dashboard queries in flight run once; answers are reused for a short while."""

from __future__ import annotations

import asyncio

from api.db import QUERY_SECONDS, Db, Limits


def _runs(name: str) -> float:
    return sum(
        s.value for m in QUERY_SECONDS.collect() for s in m.samples
        if s.name.endswith("_count") and s.labels.get("query") == name)


async def test_equal_queries_in_flight_run_once_and_answers_expire(clickhouse):
    sql = "SELECT sleep(0.2) AS z, {n:UInt32} AS n"
    db = Db(clickhouse, Limits(cache_seconds=0.5))
    before = _runs("shared_test")
    results = await asyncio.gather(*(db.shared_rows("shared_test", sql, {"n": 7}) for _ in range(10)))
    assert all(r == [{"z": 0, "n": 7}] for r in results)
    assert _runs("shared_test") - before == 1
    await db.shared_rows("shared_test", sql, {"n": 7})  # within cache_seconds: reused
    assert _runs("shared_test") - before == 1
    await db.shared_rows("shared_test", sql, {"n": 8})  # another question runs
    assert _runs("shared_test") - before == 2
    await asyncio.sleep(0.6)
    # Just expired: the previous answer comes back at once while one refresh runs behind it.
    assert await db.shared_rows("shared_test", sql, {"n": 7}) == [{"z": 0, "n": 7}]
    await asyncio.sleep(0.4)
    assert _runs("shared_test") - before == 3
    await asyncio.sleep(1.2)  # long expired: the caller waits for a fresh answer
    await db.shared_rows("shared_test", sql, {"n": 7})
    assert _runs("shared_test") - before == 4


async def test_sharing_can_be_switched_off(clickhouse):
    db = Db(clickhouse, Limits(share_queries=False))
    before = _runs("unshared_test")
    await asyncio.gather(*(db.shared_rows("unshared_test", "SELECT 1 AS one", {}) for _ in range(3)))
    assert _runs("unshared_test") - before == 3


def test_whole_seconds_rounds_both_bounds_up():
    from datetime import UTC, datetime

    from api.params import TimeRange

    t = datetime(2026, 12, 8, 1, 2, 3, tzinfo=UTC)
    r = TimeRange(t.replace(microsecond=1), t.replace(second=9, microsecond=999_000)).whole_seconds()
    assert r == TimeRange(t.replace(second=4), t.replace(second=10))
    assert TimeRange(t, t.replace(second=9)).whole_seconds() == TimeRange(t, t.replace(second=9))


async def test_viewers_of_one_traces_table_share_its_query(env):
    # Two viewers' "now" a few hundred ms apart within one second: one ClickHouse query, one answer.
    end = env.ds.end.replace(microsecond=100_000)

    def body(ms: int, agent: str) -> dict:
        return {"range": {"from": env.ds.start.isoformat(), "to": end.replace(microsecond=ms * 1000).isoformat()},
                "targets": [{"target": "traces", "refId": "T", "payload": {"limit": 20, "agent": agent}}]}

    before = _runs("traces")
    a, b = await asyncio.gather(env.query(body(100, "coder")), env.query(body(700, "coder")))
    assert a.status_code == b.status_code == 200 and a.content == b.content
    assert a.json()[0]["rows"] and a.json()[0]["refId"] == "T"
    assert _runs("traces") - before == 1
    other = await env.query(body(700, "reviewer"))  # another question runs
    assert _runs("traces") - before == 2 and other.json()[0]["rows"] != a.json()[0]["rows"]


async def test_a_shared_series_carries_each_requests_refid(env):
    def body(refid: str | None) -> dict:
        target = {"target": "metrics", "payload": {"field": "calls", "aggregation": "count", "group_by": "model"}}
        return {"range": env.grafana_range(), "intervalMs": 600_000,
                "targets": [{**target, "refId": refid} if refid else target]}

    plain, tagged = (await env.query(body(None))).json(), (await env.query(body("B"))).json()
    assert plain and all("refId" not in s for s in plain)
    assert [s.pop("refId") for s in tagged] == ["B"] * len(plain) and tagged == plain

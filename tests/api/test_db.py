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

"""Rollups: a higher version replaces; hour/day percentiles from merged sketches within 1% of exact,
with a replaced minute counted once. Rules: the compacted topic's current state, deletes included."""

from __future__ import annotations

import random
from datetime import timedelta

import orjson

from schemas.alerts import AlertRule
from schemas.rollups import Rollup
from schemas.sketch import Sketch, clickhouse_quantile_sql, exact_quantile
from schemas.topics import ALERT_RULES, ROLLUPS
from tests.sinks.helpers import now_minus, produce, running_sinks, scalar, until


def rollup(start, values: list[float], version: int = 1, agent: str = "a1", calls: int | None = None) -> Rollup:
    return Rollup(window_start=start, window_end=start + timedelta(minutes=1), project_id="p1", agent_id=agent,
                  provider="openai", model="gpt-4o", calls=calls if calls is not None else len(values),
                  latency_ms_sum=sum(values), latency_ms_max=max(values),
                  latency_sketch=Sketch.of(values).to_json(), version=version, tokens_in=10 * len(values))


async def test_rollups_replace_and_hour_day_percentiles(kafka_settings, clickhouse):
    rng = random.Random(7)
    hour = now_minus(180).replace(minute=0, second=0, microsecond=0)
    all_values: list[float] = []
    records = []
    for minute in range(0, 60, 3):
        for agent in ("a1", "a2"):
            vals = [rng.lognormvariate(5, 0.8) for _ in range(200)]
            all_values += vals
            r = rollup(hour + timedelta(minutes=minute), vals, agent=agent)
            records.append((r.key().encode(), r.model_dump_json().encode()))
    # A correction of minute 0 / a1: version 2 replaces version 1 (whose values must not count).
    first = orjson.loads(records[0][1])
    replaced = Sketch.from_json(first["latency_sketch"])
    new_vals = [rng.uniform(1, 50) for _ in range(300)]
    corr = rollup(hour, new_vals, version=2, agent="a1")
    old_vals_count = replaced.count
    records.append((corr.key().encode(), corr.model_dump_json().encode()))
    produce(kafka_settings, ROLLUPS, records[:len(records) // 2])
    db = clickhouse.database
    async with running_sinks(kafka_settings, clickhouse):
        await until(lambda: scalar(clickhouse, "SELECT count() FROM {db}.rollups_1m") >= len(records) // 2,
                    what="first half")
        # The correction arrives in a later batch, after the hour was already built once.
        produce(kafka_settings, ROLLUPS, records[len(records) // 2:])
        await until(lambda: scalar(clickhouse, "SELECT sum(calls) FROM {db}.rollups_1h FINAL")
                    == len(all_values) - old_vals_count + len(new_vals), what="hour reflects the correction")
    assert scalar(clickhouse, "SELECT count() FROM {db}.rollups_1m FINAL") == len(records) - 1
    assert clickhouse.query(f"SELECT calls, version FROM {db}.rollups_1m FINAL WHERE agent_id = 'a1' "
                            "AND window_start = {t:DateTime}", {"t": hour.strftime("%Y-%m-%d %H:%M:%S")}) \
        == [{"calls": 300, "version": 2}]
    # exact values of the hour: everything but the replaced minute's first version
    a1_min0 = [v for v in all_values[:200]]
    exact_vals = [v for v in all_values if v not in set(a1_min0)] + new_vals
    assert len(exact_vals) == len(all_values) - old_vals_count + len(new_vals)
    for table, bucket in (("rollups_1h", "toStartOfHour"), ("rollups_1d", "toStartOfDay")):
        q = clickhouse_quantile_sql("m", "{q:Float64}")
        for qq in (0.5, 0.95, 0.99):
            got = clickhouse.query(
                f"SELECT {q} AS v FROM (SELECT sumMap(latency_sketch) AS m FROM {db}.{table} FINAL "
                f"WHERE project_id = 'p1' AND window_start = {bucket}({{t:DateTime}}))",
                {"q": qq, "t": hour.strftime("%Y-%m-%d %H:%M:%S")})[0]["v"]
            exact = exact_quantile(exact_vals, qq)
            assert abs(got - exact) / exact < 0.01, (table, qq, got, exact)
        row = clickhouse.query(f"SELECT sum(calls) AS c, sum(tokens_in) AS t FROM {db}.{table} FINAL")[0]
        assert row == {"c": len(exact_vals), "t": 10 * len(exact_vals)}


async def test_rules_table_follows_compacted_topic(kafka_settings, clickhouse):
    r1 = AlertRule(id="r1", project_id="p1", type="error_rate", threshold=10)
    r2 = AlertRule(id="r2", project_id="p2", type="budget", threshold=5, webhook_url="http://127.0.0.1:1/x")
    r1b = r1.model_copy(update={"threshold": 20.0, "enabled": False})
    produce(kafka_settings, ALERT_RULES, [(b"r1", r1.model_dump_json().encode()), (b"r2", r2.model_dump_json().encode()),
                                          (b"bad", b'{"type": "nope"}')])
    async with running_sinks(kafka_settings, clickhouse):
        await until(lambda: scalar(clickhouse, "SELECT count() FROM {db}.alert_rules FINAL") == 2, what="rules")
        produce(kafka_settings, ALERT_RULES, [(b"r1", r1b.model_dump_json().encode()), (b"r2", None)])
        await until(lambda: scalar(clickhouse, "SELECT countIf(deleted) FROM {db}.alert_rules FINAL") == 1,
                    what="tombstone")
        await until(lambda: scalar(clickhouse, "SELECT max(version) FROM {db}.alert_rules FINAL") == 4, what="r1 v2")
    rows = {r["id"]: r for r in clickhouse.query(
        f"SELECT id, project_id, type, enabled, deleted, rule, version FROM {clickhouse.database}.alert_rules FINAL")}
    assert rows["r1"]["enabled"] is False and orjson.loads(rows["r1"]["rule"])["threshold"] == 20.0
    assert rows["r1"]["version"] == 3
    assert rows["r2"]["deleted"] is True and rows["r2"]["project_id"] == "p2" and rows["r2"]["type"] == "budget"


def test_touched_ranges_split_far_apart_hours():
    from sinks.rollups_sink import touched_ranges

    h = now_minus(0).replace(minute=0, second=0, microsecond=0)
    items = [rollup(h - timedelta(days=3) + timedelta(minutes=5), [1.0]), rollup(h, [1.0]),
             rollup(h - timedelta(hours=1), [2.0]), rollup(h + timedelta(minutes=30), [3.0])]
    assert touched_ranges(items) == [("p1", h - timedelta(days=3), h - timedelta(days=3)),
                                     ("p1", h - timedelta(hours=1), h)]

import random

import orjson
import pytest

from schemas.sketch import ALPHA, Sketch, clickhouse_quantile_sql, exact_quantile


def test_quantiles_are_within_relative_accuracy_and_merge():
    rng = random.Random(7)
    values = [rng.lognormvariate(6, 1.2) for _ in range(20_000)] + [0.0] * 50
    parts = [Sketch.of(values[i::7]) for i in range(7)]
    merged = Sketch()
    for p in parts:
        merged.merge(p)
    assert merged.count == len(values)
    for q in (0.5, 0.9, 0.95, 0.99):
        exact = exact_quantile(values, q)
        assert merged.quantile(q) == pytest.approx(exact, rel=ALPHA * 1.01)
    assert Sketch.from_json(merged.to_json()).counts == merged.counts


def test_clickhouse_computes_the_same_quantile_from_merged_maps(settings, clickhouse):
    rng = random.Random(3)
    values = [rng.uniform(1, 5000) for _ in range(3000)]
    a, b = Sketch.of(values[:1000]), Sketch.of(values[1000:])
    db = settings.clickhouse_database
    clickhouse.command(f"CREATE TABLE {db}.sk (s Map(Int32, UInt64)) ENGINE = MergeTree ORDER BY tuple()")
    # Sketches travel as JSON objects with string keys, as rollup messages carry them.
    clickhouse.insert(f"{db}.sk", b"\n".join(orjson.dumps({"s": x.to_json()}) for x in (a, b)))
    rows = clickhouse.query(
        f"SELECT {clickhouse_quantile_sql('m', '{q:Float64}')} AS v FROM (SELECT sumMap(s) AS m FROM {db}.sk)",
        {"q": 0.95},
    )
    expected = Sketch(a.counts).merge(b).quantile(0.95)
    assert rows[0]["v"] == pytest.approx(expected, rel=1e-9)
    assert rows[0]["v"] == pytest.approx(exact_quantile(values, 0.95), rel=0.01)

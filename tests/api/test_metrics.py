"""Every metric x aggregation x group-by equals the values computed from the raw events."""

from __future__ import annotations

import pytest

from api import queries
from api.params import TimeRange
from tests.api import dataset

GROUPS = ["none", *queries.GROUP_BYS]


async def check_all(env, iv: int, fields=queries.FIELDS, groups=GROUPS) -> dict[str, int]:
    t0, t1 = env.ds.range_ms
    checked = {"series": 0, "points": 0}
    for field in fields:
        for group in groups:
            targets = [{"target": "metrics", "refId": agg,
                        "payload": {"field": field, "aggregation": agg, "group_by": group}}
                       for agg in queries.AGGREGATIONS]
            res = await env.query({"range": env.grafana_range(), "intervalMs": iv, "targets": targets})
            assert res.status_code == 200, res.text
            got: dict[str, dict[str, dict[int, float]]] = {}
            for s in res.json():
                name = s["target"] if group != "none" else ""
                if name == "(none)":
                    name = ""
                got.setdefault(s["refId"], {})[name] = {int(ts): v for v, ts in s["datapoints"]}
            for agg in queries.AGGREGATIONS:
                want = dataset.expected(env.ds.events, field, agg, group, t0, t1, iv)
                have = got.get(agg, {})
                assert set(have) == set(want), (field, agg, group, sorted(have), sorted(want))
                rel = 0.01 if agg.startswith("p") else 1e-9
                for g, series in want.items():
                    assert set(have[g]) == set(series), (field, agg, group, g)
                    for b, v in series.items():
                        assert dataset.close(have[g][b], v, rel), (field, agg, group, g, b, have[g][b], v)
                        checked["points"] += 1
                    checked["series"] += 1
    return checked


async def test_every_metric_aggregation_and_group_by_at_rollup_intervals(env):
    checked = await check_all(env, 600_000)
    assert checked["points"] > 5000


async def test_hour_and_day_buckets_read_the_coarse_rollups_and_match_too(env):
    for iv in (3_600_000, 86_400_000):
        checked = await check_all(env, iv, groups=["none", "model", "agent", "provider"])
        assert checked["points"] > 200


async def test_every_metric_aggregation_at_sub_minute_intervals_reads_raw_events(env):
    checked = await check_all(env, 45_000, groups=["none", "model", "agent"])
    assert checked["points"] > 1000


@pytest.mark.parametrize("iv", [60_000, 7_000, 3_600_000])
async def test_buckets_align_with_interval_ms(env, iv):
    t0, t1 = env.ds.range_ms
    res = await env.query({"range": env.grafana_range(), "intervalMs": iv, "targets": [
        {"target": "metrics", "payload": {"field": "calls", "aggregation": "count"}}]})
    points = res.json()[0]["datapoints"]
    assert points and all(ts % iv == 0 and t0 - iv < ts < t1 for _, ts in points)
    assert sum(v for v, _ in points) == sum(1 for e in env.ds.events if e["type"] == "llm_call")
    assert [ts for _, ts in points] == sorted(ts for _, ts in points)


def test_segments_cover_the_range_once():
    day, hour, minute = 86_400_000, 3_600_000, 60_000
    t0, t1 = 5 * day + 3 * hour + 17 * minute + 123, 9 * day + 2 * hour + 5 * minute
    segs = queries.rollup_segments(t0, t1, day)
    assert segs[0] == ("rollups_1m", 5 * day + 3 * hour + 18 * minute, 5 * day + 4 * hour)
    assert ("rollups_1d", 6 * day, 9 * day) in segs and segs[-1] == ("rollups_1m", 9 * day + 2 * hour, t1)
    assert all(a[2] == b[1] for a, b in zip(segs, segs[1:], strict=False))


# The hour of the day decides which edges a week has (at 23:17 the start needs no hour rows).
@pytest.mark.parametrize("hour", [0, 12, 23])
def test_rollups_serve_minute_multiples_and_raw_serves_the_rest(hour):
    from datetime import UTC, datetime, timedelta

    # Not on a whole hour (a run at hh:00 would have no minute edges): 17 min 23 s past the hour.
    end = datetime.now(UTC).replace(hour=hour, minute=17, second=23, microsecond=0)
    tr = TimeRange(end - timedelta(days=7), end)

    def src(field, agg, group, iv, filters=()):
        return queries.metric_query("db", "p", field, agg, group, tr, iv, list(filters)).source

    # A week from a non-aligned instant: minutes at the edges, hours inside (and days for day buckets).
    assert src("cost", "sum", "model", 3_600_000) == "rollups_1m+rollups_1h"
    assert src("latency", "p95", "agent", 3_600_000) == "rollups_1m+rollups_1h"
    assert src("cost", "sum", "model", 86_400_000) == "rollups_1m+rollups_1h+rollups_1d"
    assert src("calls", "max", "agent", 3_600_000) == "rollups_1m"  # per-minute values need minutes
    assert src("error_rate", "max", "provider", 60_000) == "rollups_1m"
    assert src("cost", "sum", "model", 30_000) == "events"  # finer than the rollups
    assert src("cost", "sum", "model", 90_000) == "events"  # not a whole number of minutes
    assert src("cost", "max", "model", 3_600_000) == "events"  # rollups keep no per-call max of cost
    assert src("latency", "sum", "user_id", 3_600_000) == "events"
    assert src("traces", "count", "none", 3_600_000) == "events"

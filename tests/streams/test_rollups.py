"""Rollups against the real broker: exact answers per window, hour merges, lateness, replay."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from schemas.alerts import Alert, AlertRule
from schemas.events import LlmCall
from schemas.pricing import model_family, price_event
from schemas.rollups import Rollup
from schemas.sketch import ALPHA, Sketch, exact_quantile
from schemas.topics import ALERT_RULES, ALERTS, DLQ, EVENTS
from streams import metrics
from streams import replay as replay_mod
from tests.streams.helpers import (
    base_time,
    event_set,
    expected_rollups,
    final_rollups,
    produce,
    produce_raw,
    rollup_messages,
    run_bounded,
    split_after,
    stream_config,
)
from tests.support import read_topic


def test_rollups_match_known_answers(kafka_settings):
    events = event_set(base_time())
    produce(kafka_settings, events)
    run_bounded(kafka_settings)
    got = final_rollups(rollup_messages(kafka_settings))
    want = expected_rollups(events)
    assert set(got) == set(want)
    for key, value in got.items():
        r = Rollup.model_validate_json(value)
        assert r.key() == key
        w = want[key]
        assert (r.calls, r.errors, r.error_events) == (w["calls"], w["errors"], w["error_events"])
        assert (r.tokens_in, r.tokens_out, r.tokens_cached) == (w["tokens_in"], w["tokens_out"], w["tokens_cached"])
        assert r.cost_usd == pytest.approx(w["cost"], abs=1e-9)
        assert r.version == w["n"]
        assert (r.window_end - r.window_start) == timedelta(minutes=1)
        if w["lat"]:
            assert r.latency_ms_sum == pytest.approx(sum(w["lat"]), abs=1e-6)
            assert r.latency_ms_max == max(w["lat"])
            lat, ttft = Sketch.from_json(r.latency_sketch), Sketch.from_json(r.ttft_sketch)
            assert lat.counts == Sketch.of(w["lat"]).counts
            for q in (0.5, 0.95, 0.99):
                exact = exact_quantile(w["lat"], q)
                assert lat.quantile(q) == pytest.approx(exact, rel=ALPHA * 1.01)
                assert ttft.quantile(q) == pytest.approx(exact_quantile(w["ttft"], q), rel=ALPHA * 1.01)


def test_hour_merge_quantiles_within_one_percent(kafka_settings):
    events = event_set(base_time(), minutes=30, seed=11)
    produce(kafka_settings, events)
    run_bounded(kafka_settings)
    merged: dict[str, Sketch] = {}
    for value in final_rollups(rollup_messages(kafka_settings)).values():
        r = Rollup.model_validate_json(value)
        merged.setdefault(r.agent_id, Sketch()).merge(Sketch.from_json(r.latency_sketch))
    raw: dict[str, list[float]] = {}
    for e in events:
        if isinstance(e, LlmCall):
            raw.setdefault(e.agent_id, []).append(e.latency_ms)
    assert set(merged) == set(raw)
    for agent, values in raw.items():
        assert merged[agent].count == len(values)
        for q in (0.5, 0.95, 0.99):
            exact = exact_quantile(values, q)
            assert abs(merged[agent].quantile(q) - exact) / exact < 0.01


def test_same_input_same_messages_and_replay_identical(kafka_settings):
    produced_at = datetime.now(UTC)
    events = event_set(base_time(), minutes=4)
    produce(kafka_settings, events)
    run_bounded(kafka_settings)
    live = rollup_messages(kafka_settings)
    rule = AlertRule(id="spend", project_id="proj", type="budget", threshold=0.001, agent_id="alpha")
    produce_raw(kafka_settings, kafka_settings.topic(ALERT_RULES), b"spend", rule.model_dump_json().encode())
    replay_mod.run(kafka_settings, argparse.Namespace(start=produced_at - timedelta(minutes=1), end=None,
                                                      reprice=False, workers=1))
    everything = rollup_messages(kafka_settings)
    replayed = split_after(everything, live)
    assert len(replayed) == len(live)
    assert final_rollups(replayed) == final_rollups(live)  # byte-identical values per key
    alerts = [Alert.model_validate_json(m.value())
              for m in read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(ALERTS), expect=1)]
    assert [(a.rule_id, a.subject, a.state, a.replay) for a in alerts] == [("spend", "alpha", "fired", True)]


def test_replay_reprice_recomputes_cost(kafka_settings):
    produced_at = datetime.now(UTC)
    t0 = base_time()
    events = [LlmCall(timestamp=t0 + timedelta(seconds=i), project_id="p", agent_id="a", provider="openai",
                      model="gpt-4o", tokens_in=1000, tokens_out=500, latency_ms=10, cost_usd=0.0) for i in range(5)]
    produce(kafka_settings, events)
    run_bounded(kafka_settings)
    live = rollup_messages(kafka_settings)
    assert [orjson.loads(m.value())["cost_usd"] for m in live] == [0.0]
    replay_mod.run(kafka_settings, argparse.Namespace(start=produced_at - timedelta(minutes=1), end=None,
                                                      reprice=True, workers=1))
    after = split_after(rollup_messages(kafka_settings), live)
    priced = events[0].model_copy()
    price_event(priced)
    assert model_family("openai", "gpt-4o") and priced.cost_usd
    doc = orjson.loads(after[-1].value())
    assert doc["cost_usd"] == pytest.approx(5 * priced.cost_usd, rel=1e-9)
    assert doc["version"] == orjson.loads(live[0].value())["version"]  # same window, same event count


def test_late_events_correct_and_too_late_go_to_dlq(kafka_settings):
    t0 = base_time()

    def call(sec: int) -> LlmCall:
        return LlmCall(timestamp=t0 + timedelta(seconds=sec), project_id="p", agent_id="late", provider="openai",
                       model="m", tokens_in=1, latency_ms=5.0)

    seq = [call(10), call(70), call(130), call(20), call(700), call(30)]
    produce(kafka_settings, seq)
    before = metrics.LATE.labels("too_late")._value.get(), metrics.LATE.labels("late")._value.get()
    run_bounded(kafka_settings, stream_config(batch_size=1))
    msgs = rollup_messages(kafka_settings)
    first = f"{t0.isoformat()}/p/late/openai/m"
    versions = [orjson.loads(m.value())["version"] for m in msgs if m.key().decode() == first]
    assert versions == [1, 2]  # emitted when closed, re-emitted with the late event, higher version
    final = orjson.loads(final_rollups(msgs)[first])
    assert final["calls"] == 2
    dlq = read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(DLQ), expect=1)
    assert len(dlq) == 1
    headers = dict(dlq[0].headers())
    assert headers["reason"] == b"late"
    assert headers["original_topic"] == kafka_settings.topic(EVENTS).encode()
    assert int(headers["original_offset"]) == 5
    assert dlq[0].value() == seq[5].to_json() and dlq[0].key() == b"p/late"
    assert metrics.LATE.labels("too_late")._value.get() - before[0] == 1
    assert metrics.LATE.labels("late")._value.get() - before[1] == 1


def test_undecodable_event_goes_to_dlq_and_the_rest_is_kept(kafka_settings):
    events = event_set(base_time(), minutes=1)
    produce(kafka_settings, events[:5])
    produce_raw(kafka_settings, kafka_settings.topic(EVENTS), b"p/x", b'{"type":"llm_call","agent_id":""}')
    run_bounded(kafka_settings)
    dlq = read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(DLQ), expect=1)
    assert dict(dlq[0].headers())["reason"] == b"invalid" and b"agent_id" in dict(dlq[0].headers())["error"]
    got = final_rollups(rollup_messages(kafka_settings))
    assert sum(orjson.loads(v)["version"] for v in got.values()) == sum(
        w["n"] for w in expected_rollups(events[:5]).values())


def test_rollup_messages_merge_to_hour_quantiles_in_clickhouse(kafka_settings, clickhouse):
    """The messages as they are land in `rollups_1m`; ClickHouse merges an hour with sumMap and answers
    p50/p95/p99 within 1% of the exact quantiles of the raw events."""
    from schemas.sketch import clickhouse_quantile_sql

    events = event_set(base_time(), minutes=20, seed=23)
    produce(kafka_settings, events)
    run_bounded(kafka_settings)
    msgs = rollup_messages(kafka_settings)
    db = kafka_settings.clickhouse_database
    clickhouse.insert(f"{db}.rollups_1m", b"\n".join(m.value() for m in msgs))
    qs = ", ".join(f"{clickhouse_quantile_sql('m', str(q))} AS q{int(q * 100)}" for q in (0.5, 0.95, 0.99))
    rows = clickhouse.query(
        f"SELECT agent_id, h, calls, {qs} FROM ("
        f" SELECT agent_id, toStartOfHour(window_start) AS h, sum(calls) AS calls, sumMap(latency_sketch) AS m"
        f" FROM {db}.rollups_1m FINAL GROUP BY agent_id, h) ORDER BY agent_id")
    raw: dict[str, list[float]] = {}
    for e in events:
        if isinstance(e, LlmCall):
            raw.setdefault(e.agent_id, []).append(e.latency_ms)
    by_agent = {r["agent_id"]: r for r in rows}
    assert set(by_agent) == set(raw)
    for agent, values in raw.items():
        r = by_agent[agent]
        assert int(r["calls"]) == len(values)
        for q in (50, 95, 99):
            exact = exact_quantile(values, q / 100)
            assert abs(float(r[f"q{q}"]) - exact) / exact < 0.01, (agent, q)

"""Events land in ClickHouse with exact counts and sums; poison goes to the DLQ; agents are tracked."""

from __future__ import annotations

import orjson

from agenttrace.kafka import event_record
from schemas.events import ErrorEvent, Heartbeat, LlmCall, Score, Span
from schemas.topics import DLQ, EVENTS
from tests.sinks.helpers import now_minus, produce, running_sinks, scalar, until
from tests.support import read_topic


def known_events(n_calls: int = 300) -> list:
    evs: list = []
    for i in range(n_calls):
        evs.append(LlmCall(project_id="p1", agent_id=f"a{i % 7}", timestamp=now_minus(i % 50), received_at=now_minus(0),
                           provider="openai", model="gpt-4o-mini", tokens_in=100 + i, tokens_out=i, latency_ms=10.0 + i,
                           cost_usd=0.001 * i, status_code=500 if i % 10 == 0 else 200))
    evs.append(ErrorEvent(project_id="p1", agent_id="a1", error_type="Timeout", message="boom",
                          timestamp=now_minus(1), received_at=now_minus(0)))
    evs.append(Span(project_id="p1", agent_id="a2", trace_id="t1", span_id="s1", name="plan", duration_ms=12.5,
                    status="ok", attributes={"k": 1}, timestamp=now_minus(1), received_at=now_minus(0)))
    evs.append(Score(project_id="p1", agent_id="a2", trace_id="t1", name="helpful", value=0.75, passed=True,
                     timestamp=now_minus(1), received_at=now_minus(0)))
    evs.append(Heartbeat(project_id="p1", agent_id="a3", status="registered", name="Agent Three",
                         timestamp=now_minus(2), received_at=now_minus(0)))
    evs.append(Heartbeat(project_id="p1", agent_id="a3", status="ok", timestamp=now_minus(0), received_at=now_minus(0)))
    return evs


async def test_events_land_exactly_with_side_tables_and_poison(kafka_settings, clickhouse):
    evs = known_events()
    records = [event_record(e)[:2] for e in evs]
    poison = [(b"p1/a1", b"{not json"), (b"p1/a1", orjson.dumps({"type": "llm_call", "agent_id": "x"})),
              (b"p1/a1", orjson.dumps({"type": "llm_call", "event_id": "nope", "agent_id": "x", "project_id": "p",
                                       "timestamp": "2026-01-01T00:00:00Z"}))]
    produce(kafka_settings, EVENTS, records[:150] + poison + records[150:])
    async with running_sinks(kafka_settings, clickhouse):
        await until(lambda: scalar(clickhouse, "SELECT count() FROM {db}.events FINAL") == len(evs),
                    what="all events landed")
        await until(lambda: scalar(clickhouse, "SELECT count() FROM {db}.agents FINAL") == 7, what="agents")
    calls = [e for e in evs if isinstance(e, LlmCall)]
    row = clickhouse.query(
        f"SELECT count() AS n, sum(tokens_in) AS tin, sum(tokens_out) AS tout, round(sum(cost_usd), 6) AS cost, "
        f"countIf(status_code >= 400) AS errs, sum(kafka_offset > 0) > 0 AS offs "
        f"FROM {clickhouse.database}.events FINAL WHERE type = 'llm_call'")[0]
    assert row["n"] == len(calls)
    assert row["tin"] == sum(e.tokens_in for e in calls)
    assert row["tout"] == sum(e.tokens_out for e in calls)
    assert abs(row["cost"] - round(sum(e.cost_usd for e in calls), 6)) < 1e-6
    assert row["errs"] == sum(1 for e in calls if e.status_code >= 400)
    assert row["offs"] == 1
    span = clickhouse.query(f"SELECT trace_id, name, duration_ms, status, attributes FROM {clickhouse.database}.spans FINAL")
    assert span == [{"trace_id": "t1", "name": "plan", "duration_ms": 12.5, "status": "ok", "attributes": '{"k":1}'}]
    score = clickhouse.query(f"SELECT name, value, passed FROM {clickhouse.database}.scores FINAL")
    assert score == [{"name": "helpful", "value": 0.75, "passed": True}]
    err = clickhouse.query(f"SELECT error_type, message FROM {clickhouse.database}.events FINAL WHERE type = 'error'")
    assert err == [{"error_type": "Timeout", "message": "boom"}]
    a3 = clickhouse.query(f"SELECT name, registered_at IS NOT NULL AS reg, last_seen FROM {clickhouse.database}.agents "
                          "FINAL WHERE agent_id = 'a3'")[0]
    assert a3["name"] == "Agent Three" and a3["reg"] == 1  # the later plain heartbeat kept the registration
    dead = read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(DLQ), expect=3, timeout=10)
    assert len(dead) == 3
    reasons = sorted(dict(m.headers())["reason"].decode() for m in dead)
    assert reasons == ["invalid_event", "invalid_event", "invalid_json"]
    assert {m.value() for m in dead} == {v for _, v in poison}


async def test_row_refused_by_clickhouse_is_isolated_to_dlq(kafka_settings, clickhouse):
    """A message that decodes but that ClickHouse refuses: found by bisection, dead-lettered, the rest lands."""
    evs = known_events(60)
    bad = orjson.loads(evs[10].to_json())
    bad["event_id"] = "0e7c4a0e-1b7c-4bd7-9d8e-3f7a6d2b9c11"
    bad["timestamp"] = "yesterday-ish"
    records = [event_record(e)[:2] for e in evs]
    produce(kafka_settings, EVENTS, records[:30] + [(b"p1/a1", orjson.dumps(bad))] + records[30:])
    async with running_sinks(kafka_settings, clickhouse):
        dead = await until(lambda: read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(DLQ), expect=1,
                                              timeout=2), what="dead letter")
        await until(lambda: scalar(clickhouse, "SELECT count() FROM {db}.events FINAL") == len(evs), what="the rest")
    assert len(dead) == 1 and dict(dead[0].headers())["reason"] == b"rejected_by_clickhouse"
    assert orjson.loads(dead[0].value())["timestamp"] == "yesterday-ish"
    assert scalar(clickhouse, "SELECT count() FROM {db}.events WHERE event_id = '0e7c4a0e-1b7c-4bd7-9d8e-3f7a6d2b9c11'") == 0

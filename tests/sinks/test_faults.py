"""Faults: a crash between insert and commit leaves no visible duplicates; ClickHouse away for a while
loses and skips nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson

from agenttrace.kafka import event_record
from schemas.events import LlmCall
from schemas.topics import EVENTS
from sinks.metrics import INSERT_ERRORS
from tests.sinks.helpers import now_minus, produce, running_sinks, scalar, until
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


def calls(n: int, agent: str = "a") -> list[LlmCall]:
    return [LlmCall(project_id="p1", agent_id=f"{agent}{i % 5}", timestamp=now_minus(i % 30), received_at=now_minus(0),
                    provider="openai", model="gpt-4o", tokens_in=i, tokens_out=1) for i in range(n)]


def child(settings, tmp_path: Path, expect: int, crash: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "AGENTTRACE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "AGENTTRACE_TOPIC_PREFIX": settings.topic_prefix, "AGENTTRACE_HOME": str(tmp_path / "childhome"),
           "AGENTTRACE_CLICKHOUSE_DIR": str(tmp_path / "child-ch"), "AGENTTRACE_CLICKHOUSE_URL": "",
           "AGENTTRACE_CLICKHOUSE_DATABASE": "crash", "AGENTTRACE_SINK_METRICS_PORT": str(free_port()),
           "AGENTTRACE_SINK_CRASH_AFTER_INSERT": "1" if crash else "0", "AGENTTRACE_SINK_BATCH_SECONDS": "1.0",
           "AGENTTRACE_LOG_LEVEL": "warning"}
    return subprocess.run([sys.executable, "-m", "tests.sinks.crash_child", str(expect)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_crash_between_insert_and_commit_no_visible_duplicates(kafka_settings, tmp_path):
    evs = calls(2000)
    produce(kafka_settings, EVENTS, [event_record(e)[:2] for e in evs])
    first = await asyncio.to_thread(child, kafka_settings, tmp_path, len(evs), True)
    assert first.returncode == 86, first.stderr[-2000:]  # died after inserting, before committing
    second = await asyncio.to_thread(child, kafka_settings, tmp_path, len(evs), False)
    assert second.returncode == 0, second.stderr[-2000:]
    out = orjson.loads(second.stdout.strip().splitlines()[-1])
    assert out["final"] == len(evs) and out["ids"] == len(evs)
    assert out["tokens"] == sum(e.tokens_in for e in evs)
    assert out["raw"] >= len(evs)  # the batch was read again; raw may hold twins, readers never see them


class FlakyClient:
    """The real chDB client behind a switch that makes ClickHouse unreachable while `down` is set."""

    def __init__(self, inner):
        self.inner, self.database = inner, inner.database
        self.down = False
        self.refused = 0

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            raise ConnectionRefusedError("ClickHouse unreachable (test outage)")

    def command(self, *a, **k):
        self._check()
        return self.inner.command(*a, **k)

    def query(self, *a, **k):
        self._check()
        return self.inner.query(*a, **k)

    def insert(self, *a, **k):
        self._check()
        return self.inner.insert(*a, **k)

    def ping(self) -> bool:
        return not self.down and self.inner.ping()

    def close(self) -> None:
        pass


async def test_clickhouse_unavailable_then_everything_lands(kafka_settings, clickhouse):
    evs = calls(3000)
    before = INSERT_ERRORS.labels("events")._value.get()
    flaky = FlakyClient(clickhouse)
    count = "SELECT count() FROM {db}.events FINAL"
    async with running_sinks(kafka_settings, flaky):
        produce(kafka_settings, EVENTS, [event_record(e)[:2] for e in evs[:100]])
        await until(lambda: scalar(clickhouse, count) == 100, what="first events")
        flaky.down = True
        produce(kafka_settings, EVENTS, [event_record(e)[:2] for e in evs[100:1500]])
        await asyncio.sleep(2.0)
        assert scalar(clickhouse, count) == 100  # nothing more could land
        produce(kafka_settings, EVENTS, [event_record(e)[:2] for e in evs[1500:]])
        await asyncio.sleep(1.0)
        flaky.down = False
        await until(lambda: scalar(clickhouse, count) == len(evs), timeout=40, what="everything landed after the outage")
    assert flaky.refused > 1  # retried, not given up
    assert INSERT_ERRORS.labels("events")._value.get() > before
    assert scalar(clickhouse, "SELECT sum(tokens_in) FROM {db}.events FINAL") == sum(e.tokens_in for e in evs)
    assert scalar(clickhouse, "SELECT uniqExact(event_id) FROM {db}.events") == len(evs)

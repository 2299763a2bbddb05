"""The landing loop's own rules: the fast decode agrees with the full one, inserts overlap but
offsets are committed in read order, and a caught-up batch is flushed without waiting its full time."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from agenttrace.clickhouse import ClickHouse
from agenttrace.kafka import event_record
from schemas.topics import EVENTS
from sinks.config import SinkSettings
from sinks.consumer import LandingConsumer
from sinks.dlq import DeadLetters
from sinks.rows import Poison, _event_rows_full, event_rows
from tests.sinks.helpers import produce
from tests.sinks.test_events import known_events


def _outcome(value: bytes, full: bool) -> Any:
    try:
        r = (_event_rows_full if full else event_rows)(value, 3, 17)
    except Poison as exc:
        return ("poison", exc.reason, str(exc))
    return (r.event, r.project_id, r.agent_id, r.timestamp, r.type, r.span, r.score, r.registration)


def _variants() -> list[bytes]:
    out = [event_record(e)[1] for e in known_events(5)]
    base = orjson.loads(out[0])
    tweaks: list[dict[str, Any]] = [
        {"type": "heartbeat", "status": "registered"}, {"type": "heartbeat", "status": "ok"}, {"type": "span"},
        {"type": "score"}, {"type": "bogus"}, {"type": 3}, {"project_id": ""}, {"agent_id": None}, {"timestamp": 5},
        {"event_id": "nope"}, {"event_id": base["event_id"].replace("-", "")}, {"event_id": base["event_id"] + "\n"},
        {"event_id": base["event_id"].upper()}, {"kafka_offset": 9}, {"kafka_partition": None}, {"received_at": None},
        {"status": "registered"},
    ]
    out += [orjson.dumps({**base, **t}) for t in tweaks]
    out.append(orjson.dumps({k: v for k, v in base.items() if k != "received_at"}))
    out += [b"", b"[1]", b"{", b'{"a":1} x', orjson.dumps(base) + b" \n", b"\xff\xfe", b"null"]
    return out


@pytest.mark.parametrize("value", _variants())
def test_fast_decode_gives_the_full_parse_rows_or_poison(value: bytes):
    assert _outcome(value, full=False) == _outcome(value, full=True)


class _Recorder:
    """In-memory double of a sink: records writes; with `hold_first`, the first write blocks until released."""

    name = "recorder"
    parallel_writes = True

    def __init__(self, hold_first: bool = False) -> None:
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.first_started = threading.Event()
        self.later_written = threading.Event()
        self.written = 0
        self._first = True
        self._lock = threading.Lock()

    def on_assign(self) -> None:
        pass

    def decode(self, msg: Message) -> int:
        return msg.offset()

    def write(self, client: ClickHouse, items: list[int], token: str) -> None:
        with self._lock:
            first, self._first = self._first, False
        if first:
            self.first_started.set()
            assert self.release.wait(30)
        else:
            self.later_written.set()
        with self._lock:
            self.written += len(items)


def _run(lc: LandingConsumer) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    t = threading.Thread(target=lc.run, args=(stop,), daemon=True)
    t.start()
    return stop, t


def _wait(cond, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(cond())


def _committed(settings, group: str, topic: str) -> list[int]:
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.topic_prefix + group})
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        return [tp.offset for tp in c.committed(parts, timeout=10)]
    finally:
        c.close()


def test_overlapping_inserts_commit_in_read_order(kafka_settings):
    topic = kafka_settings.topic(EVENTS)
    produce(kafka_settings, EVENTS, [(b"k%d" % i, b"m%d" % i) for i in range(60)])
    sink = SinkSettings(sink_batch_rows=10, sink_batch_seconds=0.05, sink_insert_threads=2)
    handler = _Recorder(hold_first=True)
    lc = LandingConsumer(kafka_settings, sink, topic, "order", handler, None, DeadLetters(kafka_settings))  # type: ignore[arg-type]
    stop, t = _run(lc)
    try:
        assert handler.first_started.wait(30)
        assert handler.later_written.wait(30), "no second batch written while the first was in flight"
        time.sleep(0.3)  # every chance to commit what it must not
        assert lc.landed == 0
        assert all(o < 0 for o in _committed(kafka_settings, "order", topic)), "committed past a batch in flight"
        handler.release.set()
        assert _wait(lambda: lc.landed == 60)
        assert handler.written == 60
    finally:
        handler.release.set()
        stop.set()
        t.join(30)
    assert sum(_committed(kafka_settings, "order", topic)) == 60


def test_caught_up_batch_lands_before_its_time_is_up(kafka_settings):
    """At the end of the log a batch goes out after sink_batch_min_seconds,
    not after sink_batch_seconds (an hour here)."""
    topic = kafka_settings.topic(EVENTS)
    sink = SinkSettings(sink_batch_rows=50_000, sink_batch_seconds=3600, sink_batch_min_seconds=0.1)
    handler = _Recorder()
    lc = LandingConsumer(kafka_settings, sink, topic, "idle", handler, None, DeadLetters(kafka_settings))  # type: ignore[arg-type]
    stop, t = _run(lc)
    try:
        assert lc.ready.wait(30)
        produce(kafka_settings, EVENTS, [(b"k%d" % i, b"m%d" % i) for i in range(5)])
        assert _wait(lambda: lc.landed == 5), f"landed {lc.landed} of 5"
        produce(kafka_settings, EVENTS, [(b"k%d" % i, b"m%d" % i) for i in range(7)])
        assert _wait(lambda: lc.landed == 12), f"landed {lc.landed} of 12"
    finally:
        stop.set()
        t.join(30)
    assert handler.written == 12

"""A broker outage under the live dataflow (on a broker of this test's own): the stream waits it out
and, once the broker is back, every window comes out complete: nothing read is lost or counted twice."""

from __future__ import annotations

import time
from datetime import timedelta

import orjson

from agenttrace import stack
from schemas.settings import Settings
from tests.streams.helpers import (
    StreamProcess,
    base_time,
    event_set,
    expected_rollups,
    final_rollups,
    produce,
    rollup_messages,
)
from tests.streams.test_recovery import _flush_watermarks
from tests.support import free_port, wait_for


def test_stream_survives_a_broker_outage(tmp_path):
    port = free_port()
    s = Settings(home=tmp_path / "home", kafka_port=port, kafka_controller_port=free_port(),
                 kafka_bootstrap=f"127.0.0.1:{port}", topic_prefix="outage.", topic_partitions=3)
    s.home_dir.mkdir(parents=True)
    stack.up(s, progress=lambda *_: None)
    proc = None
    try:
        stack.create_topics(s)
        t0 = base_time()
        events = event_set(t0, minutes=4, seed=9)
        half = len(events) // 2
        proc = StreamProcess(s)
        produce(s, events[:half])
        wait_for(lambda: proc.metric("stream_events_processed_total") >= half, timeout=60, what="first half")
        stack.down(s)
        time.sleep(3)
        assert proc.proc.poll() is None  # still running, waiting for the broker
        stack.up(s, progress=lambda *_: None)
        produce(s, events[half:])
        _flush_watermarks(s, t0 + timedelta(minutes=30))
        want = expected_rollups(events)
        wait_for(lambda: set(final_rollups(rollup_messages(s))) == set(want), timeout=90, what="all windows")
        got = final_rollups(rollup_messages(s))
        assert {k: orjson.loads(v)["version"] for k, v in got.items()} == {k: w["n"] for k, w in want.items()}
    finally:
        if proc is not None:
            proc.kill()
        stack.down(s)

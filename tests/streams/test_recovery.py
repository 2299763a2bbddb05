"""Kill the live dataflow mid-stream and restart it: rollups equal an uninterrupted run, and the
restarted process resumed from its Bytewax snapshot instead of starting over."""

from __future__ import annotations

from datetime import timedelta

import orjson
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.events import Heartbeat
from schemas.topics import EVENTS, ROLLUPS
from streams.kafka_io import offsets_at, partitions
from streams.rollups import FlowSpec, build_flow
from tests.streams.helpers import (
    StreamProcess,
    base_time,
    event_set,
    expected_rollups,
    final_rollups,
    produce,
    rollup_messages,
    stream_config,
)
from tests.support import wait_for


def _flush_watermarks(settings, t) -> None:
    """One heartbeat far ahead in event time on every partition closes every window."""
    parts = partitions(settings.kafka_bootstrap, settings.topic(EVENTS))
    hbs = [Heartbeat(timestamp=t, project_id="proj", agent_id=f"flush-{p}") for p in parts]
    produce(settings, hbs, partition_of={f"flush-{p}": p for p in parts})


def test_kill_and_restart_gives_the_uninterrupted_rollups(kafka_settings):
    s = kafka_settings
    t0 = base_time()
    events = event_set(t0, minutes=8, seed=3)
    half = len(events) // 2
    want = expected_rollups(events)

    proc = StreamProcess(s, workers=2)
    try:
        produce(s, events[:half])
        wait_for(lambda: rollup_messages(s), timeout=30, what="first rollups")
        wait_for(lambda: proc.metric("stream_events_processed_total") >= half, timeout=30, what="first half")
        import time

        time.sleep(2)  # a few epochs, so a snapshot covers part of the input
    finally:
        proc.kill()
    assert any((s.home_dir / "streams" / "recovery").glob("part-*.sqlite3"))

    proc = StreamProcess(s)
    try:
        produce(s, events[half:])
        _flush_watermarks(s, t0 + timedelta(minutes=30))
        wait_for(lambda: set(final_rollups(rollup_messages(s))) == set(want), timeout=40, what="all windows")
        wait_for(lambda: proc.metric("stream_events_processed_total") > 0, timeout=10, what="metrics")
        resumed = proc.metric("stream_events_processed_total")
    finally:
        proc.kill()
    # The restart did not re-read the whole log: it resumed from a snapshot.
    assert resumed < len(events)
    live = final_rollups(rollup_messages(s))

    # Reference: one uninterrupted bounded run over the same log into a topic of its own.
    ref_topic = s.topic(ROLLUPS) + ".ref"
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    admin.create_topics([NewTopic(ref_topic, 3, 1)])[ref_topic].result(20)
    spec = FlowSpec.from_settings(s, stream_config(), live=False, rules_topic=None,
                                  end=offsets_at(s.kafka_bootstrap, s.topic(EVENTS), None))
    spec.rollups_topic = ref_topic
    from bytewax.testing import run_main

    run_main(build_flow(spec))
    ref = final_rollups(rollup_messages(s, ref_topic))
    assert live == ref
    assert len(live) == len(want)


def test_two_process_cluster_splits_partitions(kafka_settings):
    from tests.support import free_port

    s = kafka_settings
    t0 = base_time()
    events = event_set(t0, minutes=3, seed=5)
    addresses = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    base = free_port()
    procs = [StreamProcess(s, port=base + i, addresses=addresses, process_id=i) for i in range(2)]
    try:
        produce(s, events)
        _flush_watermarks(s, t0 + timedelta(minutes=30))
        want = expected_rollups(events)
        wait_for(lambda: set(final_rollups(rollup_messages(s))) == set(want), timeout=60, what="all windows")
        counts = [p.metric("stream_events_processed_total") for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert sum(counts) == len(events) + 3 and all(c > 0 for c in counts)  # both processes took partitions
    got = final_rollups(rollup_messages(s))
    assert {k: orjson.loads(v)["version"] for k, v in got.items()} == {k: w["n"] for k, w in want.items()}

"""Unit tests of the per-partition window logic (pure Python, no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from schemas.events import Heartbeat, LlmCall
from streams.windows import Outcome, PartitionWindows

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def call(sec: float, agent: str = "a") -> LlmCall:
    return LlmCall(timestamp=T0 + timedelta(seconds=sec), project_id="p", agent_id=agent, provider="x", model="m",
                   latency_ms=10.0)


def test_windows_close_at_watermark_and_are_forgotten_after_lateness():
    w = PartitionWindows(60, wait=5, lateness=120)
    out = Outcome()
    for sec in (1, 30, 61):
        assert w.add(call(sec), out)
    w.flush(out)
    assert out.rollups == []  # watermark 56 < first window end 60
    assert w.add(call(66), out)  # watermark 61 passes 60
    w.flush(out)
    assert [orjson.loads(v)["version"] for _, v in out.rollups] == [2]
    assert w.active_keys == 2
    w.add(call(400), Outcome())  # watermark 395: windows ending <= 275 are beyond lateness
    w.flush(Outcome())
    assert w.active_keys == 1
    assert not w.add(call(100), Outcome())  # window 60-120 is too late now


def test_idle_partition_advances_with_system_time():
    w = PartitionWindows(60, wait=5, lateness=300)
    w.add(call(10), Outcome())
    out = Outcome()
    w.flush(out)
    assert out.rollups == []
    w.advance_idle(56)  # 10 - 5 + 56 = 61 >= 60
    w.flush(out)
    assert len(out.rollups) == 1


def test_heartbeats_move_time_but_make_no_rollup():
    w = PartitionWindows(60, wait=0, lateness=0)
    out = Outcome()
    w.add(Heartbeat(timestamp=T0, project_id="p", agent_id="a"), out)
    w.add(Heartbeat(timestamp=T0 + timedelta(minutes=5), project_id="p", agent_id="a"), out)
    w.flush(out, everything=True)
    assert out.rollups == [] and w.watermark == (T0 + timedelta(minutes=5)).timestamp()


def test_routing_matches_bytewax_placement():
    """`streams.routing` predicts which worker Bytewax runs a key on (checked against Bytewax itself)."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.run import cli_main
    from bytewax.testing import TestingSource

    from streams.routing import partition_key, worker_of

    keys = [str(i) for i in range(12)] + [partition_key(p, 3) for p in range(6)]
    seen: dict[str, int] = {}
    flow = Dataflow("routing")
    keyed = op.key_on("k", op.input("in", flow, TestingSource(keys)), lambda x: x)
    placed = op.stateful_map("s", keyed, lambda st, v: (None, v))
    op.inspect_debug("where", placed, lambda _s, item, _e, worker: seen.__setitem__(item[0], worker))
    cli_main(flow, workers_per_process=3)
    assert seen == {k: worker_of(k, 3) for k in keys}
    assert [seen[partition_key(p, 3)] for p in range(6)] == [0, 1, 2, 0, 1, 2]


def test_every_changed_window_is_dirty_and_touched_once_per_batch_and_again_after_a_flush():
    w = PartitionWindows(60, wait=0, lateness=600)
    out = Outcome()
    for sec in (1, 2, 3, 61, 62):
        assert w.add(call(sec, agent="a" if sec < 3 else "b"), out)
    s0 = int(T0.timestamp())
    keys = {(s0, ("p", "a", "x", "m")), (s0, ("p", "b", "x", "m")), (s0 + 60, ("p", "b", "x", "m"))}
    assert out.touched == keys and w.dirty == keys
    w.flush(out)  # watermark 62: the first minute closes
    assert w.dirty == {(s0 + 60, ("p", "b", "x", "m"))} and len(out.rollups) == 2
    # A correction after the flush re-marks the window in the same Outcome, and `ts` given == derived.
    assert w.add(call(4, agent="a"), out, (T0 + timedelta(seconds=4)).timestamp())
    assert w.dirty == {(s0, ("p", "a", "x", "m")), (s0 + 60, ("p", "b", "x", "m"))} and out.late == 1
    w.flush(out)
    assert orjson.loads(out.rollups[-1][1])["version"] == 3

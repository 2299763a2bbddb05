"""Event-time tumbling windows of one Kafka partition: aggregation, watermark, lateness.

Events are keyed `project/agent`, so every rollup dimension (project, agent, provider, model)
lives in exactly one partition. Windowing per partition in log order therefore makes every
late/too-late decision and every aggregate a pure function of the log, which is what makes
restart and replay produce the same numbers. The version of a rollup is its event count: a
correction always adds events, so it always has a higher version, and equal input always
gives an equal version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from schemas.sketch import key_of

Dims = tuple[str, str, str, str]  # project, agent, provider, model
WinKey = tuple[int, Dims]  # window start (epoch seconds), dims


class Agg:
    """Aggregates of one window x dims. Sums are integers (nano-USD, micro-ms) so order never matters."""

    __slots__ = ("calls", "errors", "error_events", "tokens_in", "tokens_out", "tokens_cached",
                 "cost_nanos", "latency_micros", "latency_max", "latency", "ttft", "events")

    def __init__(self) -> None:
        self.calls = self.errors = self.error_events = 0
        self.tokens_in = self.tokens_out = self.tokens_cached = 0
        self.cost_nanos = self.latency_micros = 0
        self.latency_max = 0.0
        self.latency: dict[int, int] = {}
        self.ttft: dict[int, int] = {}
        self.events = 0

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for s, v in zip(self.__slots__, state, strict=True):
            setattr(self, s, v)

    def add_call(self, ev: Any) -> None:
        self.events += 1
        self.calls += 1
        if ev.is_error:
            self.errors += 1
        self.tokens_in += ev.tokens_in or 0
        self.tokens_out += ev.tokens_out or 0
        self.tokens_cached += ev.tokens_cached or 0
        if ev.cost_usd:
            self.cost_nanos += round(ev.cost_usd * 1e9)
        lat = ev.latency_ms
        if lat is not None:
            self.latency_micros += round(lat * 1000)
            if lat > self.latency_max:
                self.latency_max = lat
            k = key_of(lat)
            self.latency[k] = self.latency.get(k, 0) + 1
        if ev.ttft_ms is not None:
            k = key_of(ev.ttft_ms)
            self.ttft[k] = self.ttft.get(k, 0) + 1

    def add_error(self) -> None:
        self.events += 1
        self.errors += 1
        self.error_events += 1


@lru_cache(maxsize=4096)
def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def rollup_doc(win_start: int, width: int, dims: Dims, agg: Agg) -> dict[str, Any]:
    """The `schemas.rollups.Rollup` JSON document (same field order and formats as the model)."""
    project, agent, provider, model = dims
    return {
        "window_start": iso(win_start), "window_end": iso(win_start + width),
        "project_id": project, "agent_id": agent, "provider": provider, "model": model,
        "calls": agg.calls, "errors": agg.errors, "error_events": agg.error_events,
        "tokens_in": agg.tokens_in, "tokens_out": agg.tokens_out, "tokens_cached": agg.tokens_cached,
        "cost_usd": agg.cost_nanos / 1e9, "latency_ms_sum": agg.latency_micros / 1000,
        "latency_ms_max": agg.latency_max,
        "latency_sketch": {str(k): agg.latency[k] for k in sorted(agg.latency)},
        "ttft_sketch": {str(k): agg.ttft[k] for k in sorted(agg.ttft)},
        "version": agg.events, "replay": False,
    }


def rollup_record(win_start: int, width: int, dims: Dims, agg: Agg) -> tuple[bytes, bytes]:
    """(key, value) of a rollup message; key equals `Rollup.key()`."""
    doc = rollup_doc(win_start, width, dims, agg)
    key = f"{iso(win_start)[:-1]}+00:00/{'/'.join(dims)}"  # Rollup.key(): isoformat() of the start
    return key.encode(), orjson.dumps(doc)


@dataclass
class Outcome:
    """What one batch produced: rollups to emit and counters. One per batch: its adds, then its flush."""

    rollups: list[tuple[bytes, bytes]] = field(default_factory=list)
    touched: set[WinKey] = field(default_factory=set)  # windows changed by this batch
    late: int = 0
    emit_lags: list[float] = field(default_factory=list)
    # ids of the aggregates already marked dirty/touched since the last flush: an int lookup per
    # event instead of hashing the nested window key twice (cleared by flush, which may drop aggs).
    marked: set[int] = field(default_factory=set)


class PartitionWindows:
    """Open and recently closed windows of one partition, with its watermark."""

    def __init__(self, width: int, wait: float, lateness: float,
                 min_start: int | None = None, max_start: int | None = None):
        self.width, self.wait, self.lateness = width, wait, lateness
        self.min_start, self.max_start = min_start, max_start  # replay bounds: only whole windows
        self.windows: dict[WinKey, Agg] = {}
        self.dirty: set[WinKey] = set()
        self.max_ts: float | None = None
        self.watermark = float("-inf")
        self.forgotten_until = float("-inf")  # windows ending before this are gone

    def window_of(self, ts: float) -> int:
        return int(ts // self.width) * self.width

    def add(self, ev: Any, out: Outcome, ts: float | None = None) -> bool:
        """Fold one decoded event in (a `schemas.events` event or a `streams.decode.StreamEvent`);
        False if it is too late (the caller dead-letters it). `ts`: the event's epoch seconds, if
        the caller already has them."""
        if ts is None:
            ts = ev.timestamp.timestamp()
        width = self.width
        start = int(ts // width) * width
        end = start + width
        wm = self.watermark
        if end + self.lateness <= wm:
            return False
        if end <= wm:
            out.late += 1
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
        # Per event, so the late/too-late decision does not depend on batch boundaries.
        if ts - self.wait > wm:
            self.watermark = ts - self.wait
        kind = ev.type
        if kind == "llm_call":
            dims = (ev.project_id, ev.agent_id, ev.provider, ev.model)
        elif kind == "error":
            dims = (ev.project_id, ev.agent_id, "", "")
        else:
            return True  # heartbeats, spans, scores move time but are not rolled up
        wk = (start, dims)
        agg = self.windows.get(wk)
        if agg is None:
            agg = self.windows[wk] = Agg()
        if kind == "llm_call":
            agg.add_call(ev)
        else:
            agg.add_error()
        aid = id(agg)
        if aid not in out.marked:
            out.marked.add(aid)
            self.dirty.add(wk)
            out.touched.add(wk)
        return True

    def advance_idle(self, idle_seconds: float) -> None:
        """Processing-time progress for a partition that stopped receiving events."""
        if self.max_ts is not None:
            self.watermark = max(self.watermark, self.max_ts - self.wait + idle_seconds)

    def flush(self, out: Outcome, everything: bool = False, now: float | None = None) -> None:
        """Emit every dirty window the watermark has passed (all of them at end of input); forget
        windows past their allowed lateness."""
        out.marked.clear()
        wm = float("inf") if everything else self.watermark
        for wk in sorted(self.dirty):
            start = wk[0]
            if start + self.width <= wm:
                self.dirty.discard(wk)
                if self._in_bounds(start):
                    out.rollups.append(rollup_record(start, self.width, wk[1], self.windows[wk]))
                    if now is not None:
                        out.emit_lags.append(max(0.0, now - (start + self.width)))
        horizon = wm - self.lateness
        # Scan for expired windows only when the horizon crosses a window boundary.
        inf = float("inf")
        if horizon != -inf and (horizon == inf or self.forgotten_until == -inf
                                or horizon // self.width > self.forgotten_until // self.width):
            self.forgotten_until = horizon
            for wk in [wk for wk in self.windows if wk[0] + self.width <= horizon and wk not in self.dirty]:
                del self.windows[wk]

    def _in_bounds(self, start: int) -> bool:
        if self.min_start is not None and start < self.min_start:
            return False
        return self.max_start is None or start < self.max_start

    @property
    def active_keys(self) -> int:
        return len(self.windows)

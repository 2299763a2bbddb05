"""Prometheus metrics of the stream processors (names fixed by the pipeline dashboard)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from agenttrace.metrics import metric

EVENTS = Counter("stream_events_processed_total", "events folded into the dataflows", ["flow"])
LATE = Counter("stream_late_events_total", "late (corrected) and too-late (dead-lettered) events", ["kind"])
INVALID = Counter("stream_invalid_events_total", "undecodable events sent to the DLQ")
ACTIVE_KEYS = Gauge("stream_active_keys", "open window x dimension aggregates held in memory")
EMIT_LAG = Histogram("stream_window_emit_lag_seconds", "system time of a rollup's emission minus its window end",
                     buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600))
# Shared with the sinks: one collector per process whoever registers it first.
CONSUMER_LAG = metric(Gauge, "kafka_consumer_lag", "records behind the partition end", ["topic", "partition"])
ALERTS = Counter("alerts_emitted_total", "alert transitions emitted", ["rule_type", "state"])

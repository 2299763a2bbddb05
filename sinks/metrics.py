"""Prometheus metrics of the sinks (names fixed by the pipeline dashboard)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from agenttrace.metrics import metric

INSERT_ROWS = Counter("clickhouse_insert_rows_total", "rows inserted into ClickHouse", ["table"])
INSERT_DURATION = Histogram("clickhouse_insert_duration_seconds", "ClickHouse insert latency", ["table"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
INSERT_BATCH = Histogram("clickhouse_insert_batch_rows", "rows per ClickHouse insert", ["table"],
                         buckets=(1, 10, 100, 1000, 5000, 10_000, 25_000, 50_000, 100_000))
INSERT_ERRORS = Counter("clickhouse_insert_errors_total", "failed ClickHouse inserts", ["table"])
QUEUE_DEPTH = Gauge("worker_queue_depth", "messages held in memory, not yet landed", ["queue"])
JOBS = Counter("worker_jobs_processed_total", "batches and deliveries processed", ["type", "status"])
JOB_DURATION = Histogram("worker_job_duration_seconds", "time per batch or delivery", ["type"])
ACTIVE_JOBS = Gauge("worker_active_jobs", "alert deliveries in progress")
DELIVERIES = Counter("alert_deliveries_total", "alert delivery attempts", ["channel", "outcome"])
DLQ_MESSAGES = Counter("dlq_messages_total", "messages sent to the dead-letter topic", ["reason"])


def consumer_lag() -> Gauge:
    """`kafka_consumer_lag` is shared with the streams workers (one collector per process)."""
    return metric(Gauge, "kafka_consumer_lag", "records behind the partition end", ["topic", "partition"])

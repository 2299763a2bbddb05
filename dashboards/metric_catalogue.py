"""The metric names each AgentTrace service exposes on /metrics (the house contract all components share).

Dashboards and Prometheus rules may only query these, plus the few series that come from the
infrastructure itself (EXTERNAL). Tests hold every PromQL expression to this list and the list to
the services' real /metrics.
"""

from __future__ import annotations

HTTP = ["http_requests_total", "http_request_duration_seconds", "http_request_size_bytes", "http_response_size_bytes"]

SERVICES: dict[str, list[str]] = {
    "gateway": [*HTTP, "events_ingested_total", "events_rejected_total", "kafka_producer_errors_total",
                "kafka_produce_duration_seconds", "rate_limited_total"],
    "proxy": [*HTTP, "proxy_requests_total", "proxy_upstream_latency_seconds", "proxy_overhead_seconds",
              "proxy_ttft_seconds", "proxy_spool_depth", "proxy_events_dropped_total", "kafka_producer_errors_total"],
    "streams": ["stream_events_processed_total", "stream_late_events_total", "stream_active_keys",
                "stream_window_emit_lag_seconds", "kafka_consumer_lag", "alerts_emitted_total"],
    "sinks": ["clickhouse_insert_rows_total", "clickhouse_insert_duration_seconds", "clickhouse_insert_batch_rows",
              "clickhouse_insert_errors_total", "kafka_consumer_lag", "worker_queue_depth",
              "worker_jobs_processed_total", "worker_job_duration_seconds", "worker_active_jobs",
              "alert_deliveries_total", "dlq_messages_total"],
    "api": [*HTTP, "db_query_duration_seconds"],
}

# Series from the deployment rather than our code: Prometheus' own `up`, ClickHouse's built-in
# Prometheus endpoint (compose/clickhouse/prometheus.xml) and Redpanda's /public_metrics.
EXTERNAL: dict[str, str] = {
    "up": "prometheus",
    "ClickHouseAsyncMetrics_DiskAvailable_default": "clickhouse",
    "ClickHouseAsyncMetrics_DiskTotal_default": "clickhouse",
    "redpanda_storage_disk_free_bytes": "redpanda",
    "redpanda_storage_disk_total_bytes": "redpanda",
}

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def all_metrics() -> set[str]:
    return {m for names in SERVICES.values() for m in names}


def base_name(series: str) -> str:
    """`x_seconds_bucket` -> `x_seconds` when the base is a catalogued metric; otherwise unchanged."""
    known = all_metrics()
    if series in known:
        return series
    for suffix in HISTOGRAM_SUFFIXES:
        if series.endswith(suffix) and series[: -len(suffix)] in known:
            return series[: -len(suffix)]
    return series

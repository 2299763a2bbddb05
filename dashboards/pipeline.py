"""Pipeline health from Prometheus: the metric names every service exposes (see dashboards.metric_catalogue)."""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, PromTarget, Row

RATE = "$__rate_interval"


def _ts(title: str, *targets: PromTarget, unit: str = "short", width: int = 8) -> Panel:
    refs = [PromTarget(t.expr, t.legend, chr(ord("A") + i)) for i, t in enumerate(targets)]
    return Panel(title, "timeseries", list(refs), width=width, unit=unit)


def build() -> Dashboard:
    ingest = Row("Ingestion", [
        _ts("Events ingested /s", PromTarget(f"sum by (type) (rate(events_ingested_total[{RATE}]))", "{{type}}"),
            unit="reqps"),
        _ts("Rejected events /s", PromTarget(f"sum by (reason) (rate(events_rejected_total[{RATE}]))", "{{reason}}"),
            PromTarget(f"sum(rate(rate_limited_total[{RATE}]))", "rate limited"), unit="reqps"),
        _ts("HTTP p99 latency", PromTarget(
            f"histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket[{RATE}])))",
            "{{job}}"), unit="s"),
        _ts("HTTP 5xx /s", PromTarget(f'sum by (job) (rate(http_requests_total{{status=~"5.."}}[{RATE}]))', "{{job}}"),
            unit="reqps"),
        _ts("Kafka produce", PromTarget(
            f"histogram_quantile(0.99, sum by (le, job) (rate(kafka_produce_duration_seconds_bucket[{RATE}])))",
            "p99 {{job}}"), unit="s"),
        _ts("Producer errors /s", PromTarget(f"sum by (job) (rate(kafka_producer_errors_total[{RATE}]))", "{{job}}"),
            unit="reqps"),
    ])
    processing = Row("Streams and sinks", [
        _ts("Consumer lag (messages)", PromTarget("sum by (job, topic) (kafka_consumer_lag)", "{{job}} {{topic}}")),
        _ts("Stream events /s", PromTarget(f"sum by (flow) (rate(stream_events_processed_total[{RATE}]))", "{{flow}}"),
            PromTarget(f"sum by (kind) (rate(stream_late_events_total[{RATE}]))", "late: {{kind}}"), unit="reqps"),
        _ts("Window emit lag p99", PromTarget(
            f"histogram_quantile(0.99, sum by (le) (rate(stream_window_emit_lag_seconds_bucket[{RATE}])))", "p99"),
            unit="s"),
        _ts("Queue depth", PromTarget("sum by (queue) (worker_queue_depth)", "{{queue}}"),
            PromTarget("sum(worker_active_jobs)", "active jobs")),
        _ts("ClickHouse insert rows /s", PromTarget(
            f"sum by (table) (rate(clickhouse_insert_rows_total[{RATE}]))", "{{table}}"),
            PromTarget(f"sum by (table) (rate(clickhouse_insert_errors_total[{RATE}]))", "errors {{table}}"),
            unit="rowsps"),
        _ts("ClickHouse insert p99", PromTarget(
            f"histogram_quantile(0.99, sum by (le, table) (rate(clickhouse_insert_duration_seconds_bucket[{RATE}])))",
            "{{table}}"), unit="s"),
    ])
    delivery = Row("Alerts, DLQ and proxy", [
        _ts("Alert deliveries /s", PromTarget(
            f"sum by (channel, outcome) (rate(alert_deliveries_total[{RATE}]))", "{{channel}} {{outcome}}"),
            PromTarget(f"sum by (rule_type, state) (rate(alerts_emitted_total[{RATE}]))", "emitted {{rule_type}} {{state}}"),
            unit="reqps"),
        _ts("DLQ messages /s", PromTarget(f"sum by (reason) (rate(dlq_messages_total[{RATE}]))", "{{reason}}"),
            unit="reqps"),
        _ts("Proxy overhead", PromTarget(
            f"histogram_quantile(0.50, sum by (le) (rate(proxy_overhead_seconds_bucket[{RATE}])))", "p50"),
            PromTarget(f"histogram_quantile(0.99, sum by (le) (rate(proxy_overhead_seconds_bucket[{RATE}])))", "p99"),
            unit="s"),
        _ts("Proxy requests /s", PromTarget(
            f"sum by (provider, status) (rate(proxy_requests_total[{RATE}]))", "{{provider}} {{status}}"),
            unit="reqps"),
        _ts("Proxy spool depth", PromTarget("sum(proxy_spool_depth)", "spooled"),
            PromTarget(f"sum(rate(proxy_events_dropped_total[{RATE}]))", "dropped /s")),
        _ts("Services up", PromTarget("up", "{{job}}")),
    ])
    return Dashboard(
        uid="agenttrace-pipeline", title="AgentTrace — Pipeline health",
        description="The services' own Prometheus metrics: ingestion, lag, queues, inserts, deliveries, proxy.",
        rows=[ingest, processing, delivery], time_from="now-1h",
    )

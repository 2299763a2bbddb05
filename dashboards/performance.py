"""Performance: request rate, latency and TTFT percentiles from the mergeable sketches, errors, tokens."""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, Row, SqlTarget
from dashboards.sql import EVENTS, ROLLUPS, quantile, var_filter, variables

WHERE = f"$__timeFilter(window_start) AND {var_filter()}"
IN_RANGE = f"window_start >= $__fromTime AND window_start <= $__toTime AND {var_filter()}"


def _percentiles(sketch: str) -> str:
    return ", ".join(f"{quantile(sketch, q)} AS {name}" for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")))


def _table_by(column: str, alias: str, sketch_column: str, title: str) -> Panel:
    return Panel(title, "table", [SqlTarget(
        f"SELECT {alias}, calls, {_percentiles('s')} FROM (SELECT {column} AS {alias}, sum(calls) AS calls, "
        f"sumMap({sketch_column}) AS s FROM {ROLLUPS} WHERE {WHERE} GROUP BY {alias}) "
        "WHERE calls > 0 ORDER BY p95 DESC LIMIT 50")], width=12, height=9, unit="ms", decimals=0)


def build() -> Dashboard:
    headline = Row("In the selected range", [
        Panel("Requests", "stat", [SqlTarget(f"SELECT sum(calls) AS calls FROM {ROLLUPS} WHERE {IN_RANGE}")],
              width=6, height=4, unit="short"),
        Panel("p95 latency", "stat", [SqlTarget(
            f"SELECT {quantile('s', 0.95)} AS p95 FROM (SELECT sumMap(latency_sketch) AS s FROM {ROLLUPS} "
            f"WHERE {IN_RANGE})")], width=6, height=4, unit="ms", decimals=0,
            thresholds=[(2000, "orange"), (5000, "red")]),
        Panel("Error rate", "stat", [SqlTarget(
            f"SELECT if(sum(calls) = 0, 0, sum(errors) / sum(calls) * 100) AS error_rate FROM {ROLLUPS} "
            f"WHERE {IN_RANGE}")], width=6, height=4, unit="percent", decimals=2,
            thresholds=[(1, "orange"), (5, "red")]),
        Panel("Tokens per request", "stat", [SqlTarget(
            f"SELECT if(sum(calls) = 0, 0, sum(tokens_in + tokens_out) / sum(calls)) AS tokens_per_request "
            f"FROM {ROLLUPS} WHERE {IN_RANGE}")], width=6, height=4, unit="short", decimals=0),
    ])
    trends = Row("Trends", [
        Panel("Request rate (calls/min)", "timeseries", [SqlTarget(
            f"SELECT $__timeInterval(window_start) AS time, sum(calls) / ($__interval_s / 60) AS calls_per_min "
            f"FROM {ROLLUPS} WHERE {WHERE} GROUP BY time ORDER BY time", timeseries=True)],
            width=12, unit="short"),
        Panel("Latency p50 / p95 / p99", "timeseries", [SqlTarget(
            f"SELECT time, {_percentiles('s')} FROM (SELECT $__timeInterval(window_start) AS time, "
            f"sumMap(latency_sketch) AS s FROM {ROLLUPS} WHERE {WHERE} GROUP BY time) ORDER BY time",
            timeseries=True)], width=12, unit="ms"),
        Panel("p95 latency by model", "timeseries", [SqlTarget(
            f"SELECT time, model, {quantile('s', 0.95)} AS p95 FROM (SELECT $__timeInterval(window_start) AS time, "
            f"model, sumMap(latency_sketch) AS s FROM {ROLLUPS} WHERE {WHERE} GROUP BY time, model) ORDER BY time",
            timeseries=True)], width=12, unit="ms"),
        Panel("Error rate", "timeseries", [SqlTarget(
            f"SELECT $__timeInterval(window_start) AS time, "
            f"if(sum(calls) = 0, 0, sum(errors) / sum(calls) * 100) AS error_rate FROM {ROLLUPS} "
            f"WHERE {WHERE} GROUP BY time ORDER BY time", timeseries=True)], width=12, unit="percent"),
        Panel("Tokens per request", "timeseries", [SqlTarget(
            f"SELECT $__timeInterval(window_start) AS time, "
            "if(sum(calls) = 0, 0, sum(tokens_in) / sum(calls)) AS tokens_in, "
            "if(sum(calls) = 0, 0, sum(tokens_out) / sum(calls)) AS tokens_out "
            f"FROM {ROLLUPS} WHERE {WHERE} GROUP BY time ORDER BY time", timeseries=True)],
            width=12, unit="short"),
        Panel("Latency distribution (ms)", "histogram", [SqlTarget(
            f"SELECT latency_ms FROM {EVENTS} WHERE type = 'llm_call' AND latency_ms IS NOT NULL "
            f"AND $__timeFilter(timestamp) AND {var_filter()} ORDER BY timestamp DESC LIMIT 10000")],
            width=12, unit="ms"),
    ])
    by_dimension = Row("By model and agent", [
        _table_by("model", "model", "latency_sketch", "Latency by model (ms)"),
        _table_by("agent_id", "agent", "latency_sketch", "Latency by agent (ms)"),
        _table_by("model", "model", "ttft_sketch", "Time to first token by model (ms)"),
        _table_by("agent_id", "agent", "ttft_sketch", "Time to first token by agent (ms)"),
    ])
    return Dashboard(
        uid="agenttrace-performance", title="AgentTrace — Performance",
        description="Percentiles are read from mergeable sketches, so any range and grouping is exact to 0.5%.",
        rows=[headline, trends, by_dimension], variables=variables(), time_from="now-24h",
    )

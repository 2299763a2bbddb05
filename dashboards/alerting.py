"""Grafana-managed alert rules on ClickHouse, provisioned as a file (Grafana 11 alerting file format).

Each rule's query returns one row per subject (a string label column and one number), which
Grafana alerting turns into one alert instance per row; the threshold expression compares it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dashboards.model import CLICKHOUSE, CLICKHOUSE_PLUGIN_VERSION, FORMAT_TABLE
from dashboards.sql import ROLLUPS, quantile

EXPR = {"type": "__expr__", "uid": "__expr__"}


@dataclass(frozen=True)
class AlertRule:
    uid: str
    title: str
    sql: str
    value_column: str
    threshold: float
    window_seconds: int
    summary: str
    severity: str = "warning"
    for_: str = "5m"

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "condition": "C",
            "data": [
                {"refId": "A", "datasourceUid": CLICKHOUSE["uid"],
                 "relativeTimeRange": {"from": self.window_seconds, "to": 0},
                 "model": {"refId": "A", "datasource": CLICKHOUSE, "editorType": "sql", "format": FORMAT_TABLE,
                           "queryType": "table", "pluginVersion": CLICKHOUSE_PLUGIN_VERSION,
                           "rawSql": self.sql, "intervalMs": 60000, "maxDataPoints": 43200}},
                {"refId": "C", "datasourceUid": EXPR["uid"], "relativeTimeRange": {"from": 0, "to": 0},
                 "model": {"refId": "C", "datasource": EXPR, "type": "threshold", "expression": "A",
                           "conditions": [{"evaluator": {"type": "gt", "params": [self.threshold]}}]}},
            ],
            "noDataState": "OK",
            "execErrState": "Error",
            "for": self.for_,
            "annotations": {"summary": self.summary},
            "labels": {"severity": self.severity, "service": "agenttrace"},
            "isPaused": False,
        }


RULES: list[AlertRule] = [
    AlertRule(
        uid="agenttrace-daily-cost", title="Daily cost above $100",
        sql=(f"SELECT project_id, sum(cost_usd) AS cost_usd FROM {ROLLUPS} "
             "WHERE $__timeFilter(window_start) GROUP BY project_id"),
        value_column="cost_usd", threshold=100.0, window_seconds=86400, for_="0s",
        summary="Project {{ $labels.project_id }} spent ${{ $values.A }} in the last 24 hours (limit $100).",
    ),
    AlertRule(
        uid="agenttrace-p95-latency", title="p95 latency above 5000 ms",
        sql=(f"SELECT project_id, model, {quantile('s', 0.95)} AS p95_latency_ms FROM ("
             f"SELECT project_id, model, sumMap(latency_sketch) AS s FROM {ROLLUPS} "
             "WHERE $__timeFilter(window_start) GROUP BY project_id, model) WHERE arraySum(mapValues(s)) > 0"),
        value_column="p95_latency_ms", threshold=5000.0, window_seconds=900,
        summary="p95 latency of {{ $labels.model }} in {{ $labels.project_id }} is {{ $values.A }} ms (limit 5000).",
    ),
    AlertRule(
        uid="agenttrace-error-rate", title="Error rate above 5%",
        sql=(f"SELECT project_id, sum(errors) / sum(calls) * 100 AS error_rate_pct FROM {ROLLUPS} "
             "WHERE $__timeFilter(window_start) GROUP BY project_id HAVING sum(calls) > 0"),
        value_column="error_rate_pct", threshold=5.0, window_seconds=900, severity="critical",
        summary="{{ $values.A }}% of LLM calls in {{ $labels.project_id }} failed in the last 15 minutes (limit 5%).",
    ),
]


def provisioning() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "groups": [{"orgId": 1, "name": "agenttrace", "folder": "AgentTrace", "interval": "1m",
                    "rules": [r.to_json() for r in RULES]}],
    }

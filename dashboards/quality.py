"""Quality: score distributions and trends, pass/fail rates by evaluator, the latest scores."""

from __future__ import annotations

from dashboards.model import Dashboard, Link, Panel, Row, SqlTarget
from dashboards.sql import SCORES, TRACE_LINK, variables

# Scores carry project and agent; model and provider do not apply to them.
WHERE = ("$__timeFilter(timestamp) AND $__conditionalAll(project_id IN (${project:singlequote}), $project) "
         "AND $__conditionalAll(agent_id IN (${agent:singlequote}), $agent)")
PASS_RATE = "if(countIf(passed IS NOT NULL) = 0, NULL, countIf(passed) / countIf(passed IS NOT NULL) * 100)"


def build() -> Dashboard:
    summary = Row("Summary", [
        Panel("Scores", "stat", [SqlTarget(f"SELECT count() AS scores FROM {SCORES} WHERE {WHERE}")],
              width=6, height=4, unit="short"),
        Panel("Pass rate", "stat", [SqlTarget(f"SELECT {PASS_RATE} AS pass_rate FROM {SCORES} WHERE {WHERE}")],
              width=6, height=4, unit="percent", decimals=1, thresholds=[(0, "red"), (80, "orange"), (95, "green")]),
        Panel("Average score", "stat", [SqlTarget(
            f"SELECT avg(value) AS avg_score FROM {SCORES} WHERE {WHERE} AND value IS NOT NULL")],
            width=6, height=4, decimals=3),
        Panel("Evaluators", "stat", [SqlTarget(
            f"SELECT uniqExact(evaluator) AS evaluators FROM {SCORES} WHERE {WHERE}")], width=6, height=4),
    ])
    trends = Row("Distributions and trends", [
        Panel("Score distribution", "histogram", [SqlTarget(
            f"SELECT value FROM {SCORES} WHERE {WHERE} AND value IS NOT NULL ORDER BY timestamp DESC LIMIT 10000")],
            width=12),
        Panel("Average score by name", "timeseries", [SqlTarget(
            f"SELECT $__timeInterval(timestamp) AS time, name, avg(value) AS avg_score FROM {SCORES} "
            f"WHERE {WHERE} AND value IS NOT NULL GROUP BY time, name ORDER BY time", timeseries=True)],
            width=12),
        Panel("Pass/fail by evaluator", "barchart", [SqlTarget(
            "SELECT if(evaluator = '', '(none)', evaluator) AS evaluator, countIf(passed) AS pass, "
            f"countIf(NOT passed) AS fail FROM {SCORES} WHERE {WHERE} AND passed IS NOT NULL "
            "GROUP BY evaluator ORDER BY evaluator")], width=12, options={"stacking": "normal"}),
        Panel("Pass rate by evaluator", "timeseries", [SqlTarget(
            f"SELECT $__timeInterval(timestamp) AS time, evaluator, {PASS_RATE} AS pass_rate FROM {SCORES} "
            f"WHERE {WHERE} GROUP BY time, evaluator ORDER BY time", timeseries=True)],
            width=12, unit="percent", min=0, max=100),
    ])
    recent = Row("Recent scores", [
        Panel("Recent scores", "table", [SqlTarget(
            "SELECT timestamp AS time, name, value, string_value, passed, evaluator, agent_id AS agent, "
            f"project_id AS project, comment, trace_id FROM {SCORES} WHERE {WHERE} ORDER BY timestamp DESC LIMIT 100")],
            width=24, height=10, links=[Link("Open trace", TRACE_LINK, column="trace_id")]),
    ])
    return Dashboard(
        uid="agenttrace-quality", title="AgentTrace — Quality",
        description="Evaluation scores: distributions, trends and pass rates per evaluator.",
        rows=[summary, trends, recent], variables=variables()[:2],
    )

"""Trace: every span, event and score of one trace; the other dashboards link here by trace id."""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, Row, SqlTarget, Variable
from dashboards.sql import EVENTS, SCORES, SPANS

# A typed value reaches SQL percent-encoded (quotes and backslashes included), so it cannot end the literal.
TRACE = "trace_id = decodeURLComponent('${trace_id:percentencode}')"


def build() -> Dashboard:
    spans = Row("Spans", [
        Panel("Spans", "table", [SqlTarget(
            "SELECT start_time AS time, name, kind, span_id, parent_span_id, duration_ms, status, status_message, "
            f"agent_id AS agent FROM {SPANS} WHERE {TRACE} ORDER BY start_time")], width=24, height=10,
            description="The same trace as a span tree: GET /api/traces/{id} on the read API (needs an API key)."),
    ])
    events = Row("Events and scores", [
        Panel("Events", "table", [SqlTarget(
            "SELECT timestamp AS time, type, name, agent_id AS agent, model, latency_ms, "
            "coalesce(tokens_in, 0) + coalesce(tokens_out, 0) AS tokens, coalesce(cost_usd, 0) AS cost_usd, "
            f"status_code, error_type, message FROM {EVENTS} WHERE {TRACE} ORDER BY timestamp")],
            width=16, height=10),
        Panel("Scores", "table", [SqlTarget(
            f"SELECT timestamp AS time, name, value, passed, evaluator FROM {SCORES} WHERE {TRACE} "
            "ORDER BY timestamp")], width=8, height=10),
    ])
    return Dashboard(
        uid="agenttrace-trace", title="AgentTrace — Trace",
        description="One trace: open it from a trace id in the Overview or Quality tables.",
        rows=[spans, events], time_from="now-7d", refresh="",
        variables=[Variable("trace_id", "Trace id", kind="textbox", default="")],
    )

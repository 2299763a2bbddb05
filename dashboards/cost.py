"""Cost: spend over time, by model and agent, top users, a daily breakdown and the monthly budget burn."""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, Row, SqlTarget, Variable
from dashboards.sql import EVENTS, ROLLUPS, var_filter, variables

# Typed by the user: percent-encoded into the literal and decoded by ClickHouse, so it cannot break out.
BUDGET = "toFloat64OrZero(decodeURLComponent('${monthly_budget:percentencode}'))"
WHERE = f"$__timeFilter(window_start) AND {var_filter()}"


def build() -> Dashboard:
    over_time = Row("Spend over time", [
        Panel("Cost over time", "timeseries", [SqlTarget(
            f"SELECT $__timeInterval(window_start) AS time, sum(cost_usd) AS cost_usd FROM {ROLLUPS} "
            f"WHERE {WHERE} GROUP BY time ORDER BY time", timeseries=True)],
            width=12, unit="currencyUSD"),
        Panel("Cost by model over time", "timeseries", [SqlTarget(
            f"SELECT $__timeInterval(window_start) AS time, model, sum(cost_usd) AS cost_usd FROM {ROLLUPS} "
            f"WHERE {WHERE} GROUP BY time, model ORDER BY time", timeseries=True)],
            width=12, unit="currencyUSD", stack=True),
    ])
    breakdown = Row("Where the money goes", [
        Panel("Cost by model", "piechart", [SqlTarget(
            f"SELECT model, sum(cost_usd) AS cost_usd FROM {ROLLUPS} WHERE {WHERE} "
            "GROUP BY model ORDER BY cost_usd DESC LIMIT 20")], width=8, unit="currencyUSD"),
        Panel("Cost by agent", "bargauge", [SqlTarget(
            f"SELECT agent_id AS agent, sum(cost_usd) AS cost_usd FROM {ROLLUPS} WHERE {WHERE} "
            "GROUP BY agent ORDER BY cost_usd DESC LIMIT 20")], width=8, unit="currencyUSD"),
        Panel("Top users", "table", [SqlTarget(
            "SELECT user_id AS user, count() AS calls, sum(coalesce(tokens_in, 0) + coalesce(tokens_out, 0)) AS tokens, "
            "sum(coalesce(cost_usd, 0)) AS cost_usd "
            f"FROM {EVENTS} WHERE type = 'llm_call' AND user_id != '' AND $__timeFilter(timestamp) AND {var_filter()} "
            "GROUP BY user ORDER BY cost_usd DESC LIMIT 20")], width=8,
            overrides=[{"matcher": {"id": "byName", "options": "cost_usd"},
                        "properties": [{"id": "unit", "value": "currencyUSD"}]}]),
    ])
    daily = Row("Daily breakdown and budget", [
        Panel("Daily breakdown", "table", [SqlTarget(
            "SELECT toStartOfDay(window_start) AS day, provider, model, sum(calls) AS calls, "
            "sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, sum(cost_usd) AS cost_usd "
            f"FROM {ROLLUPS} WHERE {WHERE} GROUP BY day, provider, model ORDER BY day DESC, cost_usd DESC")],
            width=12, height=10,
            overrides=[{"matcher": {"id": "byName", "options": "cost_usd"},
                        "properties": [{"id": "unit", "value": "currencyUSD"}]}]),
        Panel("Budget used this month", "gauge", [SqlTarget(
            f"SELECT if({BUDGET} > 0, sum(cost_usd) / {BUDGET} * 100, 0) AS budget_used_pct FROM {ROLLUPS} "
            f"WHERE window_start >= toStartOfMonth(now()) AND {var_filter()}")],
            width=4, height=10, unit="percent", min=0, max=100, thresholds=[(80, "orange"), (100, "red")],
            description="Month-to-date cost as a share of the monthly_budget variable (USD)."),
        Panel("Cumulative spend vs budget", "timeseries", [SqlTarget(
            "SELECT time, sum(cost) OVER (ORDER BY time) AS spend_usd, "
            f"{BUDGET} AS budget_usd FROM (SELECT $__timeInterval(window_start) AS time, sum(cost_usd) AS cost "
            f"FROM {ROLLUPS} WHERE {WHERE} GROUP BY time) ORDER BY time", timeseries=True)],
            width=8, height=10, unit="currencyUSD"),
    ])
    return Dashboard(
        uid="agenttrace-cost", title="AgentTrace — Cost",
        description="Spend by model, agent and user against the monthly budget.",
        rows=[over_time, breakdown, daily],
        variables=[*variables(), Variable("monthly_budget", "Monthly budget (USD)", kind="textbox", default="1000")],
    )

"""Overview: calls, tokens and cost at a glance, hourly timelines, breakdowns, and the latest calls."""

from __future__ import annotations

from dashboards.model import Dashboard, Link, Panel, Row, SqlTarget
from dashboards.sql import EVENTS, ROLLUPS, TRACE_LINK, var_filter, variables

LAST_24H = "window_start >= now() - INTERVAL 24 HOUR"


def _stat(title: str, expr: str, unit: str, window: str | None, decimals: int | None = None) -> Panel:
    where = " AND ".join(w for w in (window, var_filter()) if w)
    return Panel(title, "stat", [SqlTarget(f"SELECT {expr} AS value FROM {ROLLUPS} WHERE {where}")],
                 width=4, height=4, unit=unit, decimals=decimals)


def _hourly(title: str, expr: str, unit: str) -> Panel:
    return Panel(title, "timeseries", [SqlTarget(
        f"SELECT $__timeInterval(window_start) AS time, {expr} "
        f"FROM {ROLLUPS} WHERE $__timeFilter(window_start) AND {var_filter()} "
        "GROUP BY time ORDER BY time", timeseries=True)],
        width=12, height=8, unit=unit, interval="1h", draw="bars")


def _pie(title: str, sql: str) -> Panel:
    return Panel(title, "piechart", [SqlTarget(sql)], width=8, height=8)


def build() -> Dashboard:
    tokens = "sum(tokens_in + tokens_out)"
    stats = Row("Key metrics", [
        _stat("Calls (24h)", "sum(calls)", "short", LAST_24H),
        _stat("Tokens (24h)", tokens, "short", LAST_24H),
        _stat("Cost (24h)", "round(sum(cost_usd), 4)", "currencyUSD", LAST_24H, decimals=2),
        _stat("Calls (total)", "sum(calls)", "short", None),
        _stat("Tokens (total)", tokens, "short", None),
        _stat("Cost (total)", "round(sum(cost_usd), 4)", "currencyUSD", None, decimals=2),
    ])
    timelines = Row("Timelines", [
        _hourly("Calls per hour", "sum(calls) AS calls", "short"),
        _hourly("Cost per hour", "sum(cost_usd) AS cost_usd", "currencyUSD"),
    ])
    breakdown = Row("Breakdown", [
        _pie("Calls by agent",
             f"SELECT agent_id AS agent, sum(calls) AS calls FROM {ROLLUPS} "
             f"WHERE $__timeFilter(window_start) AND {var_filter()} GROUP BY agent ORDER BY calls DESC LIMIT 20"),
        _pie("Events by type",
             f"SELECT type, count() AS events FROM {EVENTS} "
             f"WHERE $__timeFilter(timestamp) AND {var_filter('project', 'agent')} GROUP BY type ORDER BY events DESC"),
        _pie("Calls by project",
             f"SELECT project_id AS project, sum(calls) AS calls FROM {ROLLUPS} "
             f"WHERE $__timeFilter(window_start) AND {var_filter()} GROUP BY project ORDER BY calls DESC LIMIT 20"),
    ])
    recent = Row("Recent calls", [
        Panel("Recent calls", "table", [SqlTarget(
            "SELECT timestamp AS time, name, agent_id AS agent, project_id AS project, model, "
            "coalesce(tokens_in, 0) + coalesce(tokens_out, 0) AS tokens, coalesce(cost_usd, 0) AS cost_usd, "
            "arrayStringConcat(tags, ', ') AS tags, trace_id "
            f"FROM {EVENTS} WHERE type = 'llm_call' AND $__timeFilter(timestamp) AND {var_filter()} "
            "ORDER BY timestamp DESC LIMIT 100")],
            width=24, height=10,
            links=[Link("Open trace", TRACE_LINK, column="trace_id")],
            overrides=[{"matcher": {"id": "byName", "options": "cost_usd"},
                        "properties": [{"id": "unit", "value": "currencyUSD"}, {"id": "decimals", "value": 4}]}]),
    ])
    return Dashboard(
        uid="agenttrace-overview", title="AgentTrace — Overview",
        description="Calls, tokens and cost of the agent fleet; click a trace id to open the trace.",
        rows=[stats, timelines, breakdown, recent], variables=variables(), time_from="now-7d", refresh="30s",
    )

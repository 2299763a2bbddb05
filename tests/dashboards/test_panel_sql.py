"""Every ClickHouse panel, variable and alert query of the committed dashboards, expanded the way the
ClickHouse datasource plugin expands it, runs on the real ClickHouse engine (chDB) against a seeded
data set and returns what its panel type needs."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from agenttrace.clickhouse import connect, migrate
from schemas.settings import Settings
from schemas.sketch import exact_quantile
from tests.dashboards import seed as seeding
from tests.dashboards.grafana_sql import ALL, ExpansionError, QueryContext, expand, grafana_interval

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "dashboards" / "generated"
ALERTS = ROOT / "dashboards" / "provisioning" / "alerting" / "agenttrace-rules.yaml"
NUMERIC = re.compile(r"^(U?Int\d+|Float\d+|Decimal.*|Bool)$")


def _load(uid: str) -> dict:
    return json.loads((GENERATED / f"{uid}.json").read_text())


def _sql_panels() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(GENERATED.glob("*.json")):
        dash = json.loads(path.read_text())
        for p in dash["panels"]:
            if p["type"] != "row" and p["datasource"]["type"] == "grafana-clickhouse-datasource":
                out.append((dash["uid"], p))
    return out


SQL_PANELS = _sql_panels()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path):
    s = Settings(home=tmp_path_factory.mktemp("dash-home"), clickhouse_url="", clickhouse_dir=chdb_path,
                 clickhouse_database=f"t_dash_{uuid.uuid4().hex[:8]}")
    client = connect(s)
    migrate(client, s.retention_days)
    data = seeding.build()
    seeding.load(client, data)
    yield client, data
    client.command(f"DROP DATABASE IF EXISTS {s.clickhouse_database}")


def _on(client, sql: str) -> str:
    # Panels name the production database; the test runs the same SQL on its own.
    return re.sub(r"\bagenttrace\.", f"{client.database}.", sql)


def run(client, sql: str) -> tuple[list[tuple[str, str]], list[dict]]:
    sql = _on(client, sql)
    columns = [(r["name"], r["type"]) for r in client.query(f"DESCRIBE TABLE ({sql})")]
    return columns, client.query(sql)


def _base(t: str) -> str:
    m = re.fullmatch(r"(?:Nullable|LowCardinality)\((.*)\)", t)
    return _base(m.group(1)) if m else t


def _numeric(t: str) -> bool:
    return bool(NUMERIC.match(_base(t)))


def _stringy(t: str) -> bool:
    return _base(t) in ("String", "Bool") or _base(t).startswith("LowCardinality")


def _ctx(panel: dict | None, variables: dict, hours: int = 24 * 7, now: datetime | None = None) -> QueryContext:
    now = now or datetime.now(UTC)
    start = now - timedelta(hours=hours)
    return QueryContext(start, now, grafana_interval(start, now, (panel or {}).get("interval", "")), variables)


ALL_VARS = {"project": ALL, "agent": ALL, "model": ALL, "provider": ALL, "monthly_budget": "1000",
            "trace_id": seeding.TRACE_ID}


def check_shape(panel: dict, columns: list[tuple[str, str]], rows: list[dict]) -> None:
    kind, title = panel["type"], panel["title"]
    numeric = [n for n, t in columns if _numeric(t)]
    assert numeric or kind == "table", f"{title}: no numeric column in {columns}"
    if kind in ("stat", "gauge"):
        assert len(rows) == 1, f"{title}: a {kind} needs one row, got {len(rows)}"
    elif kind == "timeseries":
        name, typ = columns[0]
        assert name == "time" and _base(typ).startswith("DateTime"), f"{title}: first column must be time: {columns}"
        times = [r["time"] for r in rows]
        assert times == sorted(times), f"{title}: rows must be ordered by time"
        labels = [n for n, t in columns[1:] if not _numeric(t)]
        assert all(_stringy(t) for n, t in columns[1:] if n in labels), f"{title}: label columns must be strings"
    elif kind in ("piechart", "bargauge", "barchart"):
        assert _stringy(columns[0][1]), f"{title}: first column must be the category: {columns}"
        assert len(numeric) >= 1
    elif kind == "histogram":
        assert len(numeric) >= 1
    elif kind == "table":
        assert len(columns) >= 2


@pytest.mark.parametrize("uid,panel", SQL_PANELS, ids=[f"{u}:{p['title']}" for u, p in SQL_PANELS])
def test_panel_sql_runs_with_all_selected(seeded, uid: str, panel: dict) -> None:
    client, _ = seeded
    for target in panel["targets"]:
        columns, rows = run(client, expand(target["rawSql"], _ctx(panel, ALL_VARS)))
        check_shape(panel, columns, rows)
        assert rows, f"{uid} / {panel['title']}: the seed has data for this panel but the query returned none"
        if panel["type"] != "table":
            values = [r[n] for r in rows for n, t in columns if _numeric(t) and r[n] is not None]
            assert values, f"{panel['title']}: only NULL values"


@pytest.mark.parametrize("uid,panel", SQL_PANELS, ids=[f"{u}:{p['title']}" for u, p in SQL_PANELS])
def test_panel_sql_with_selected_and_hostile_values(seeded, uid: str, panel: dict) -> None:
    client, _ = seeded
    chosen = {**ALL_VARS, "project": ["alpha"], "model": ["gpt-4o", "claude-3-5-sonnet"], "provider": ["openai"]}
    for target in panel["targets"]:
        columns, rows = run(client, expand(target["rawSql"], _ctx(panel, chosen)))
        check_shape(panel, columns, rows)
        for r in rows if uid != "agenttrace-trace" else []:  # what the panel shows belongs to the selection
            assert r.get("project", "alpha") == "alpha" and r.get("model", "gpt-4o") in chosen["model"]
            assert r.get("agent", "planner") in ("planner", "coder")
        # Query variables only take listed values (allowCustomValue off), so quotes are what they can carry;
        # typed textboxes may carry anything, backslashes included.
        hostile = {**ALL_VARS, "project": ["alpha' OR '1'='1", "') OR 1=1 --"], "trace_id": "x\\' OR 1=1 --",
                   "monthly_budget": "1\\') OR 1=1 --"}
        columns, rows = run(client, expand(target["rawSql"], _ctx(panel, hostile)))
        if panel["type"] in ("stat", "gauge"):
            assert len(rows) == 1
            assert all(not r[n] for r in rows for n, t in columns if _numeric(t)), f"{panel['title']}: {rows}"
        else:
            assert rows == [], f"{panel['title']}: leaked {rows[:3]}"


def _panel(uid: str, title: str) -> dict:
    return next(p for p in _load(uid)["panels"] if p["title"] == title and p["type"] != "row")


def _one(client, uid: str, title: str, variables: dict | None = None, hours: int = 24 * 7) -> list[dict]:
    panel = _panel(uid, title)
    return run(client, expand(panel["targets"][0]["rawSql"], _ctx(panel, {**ALL_VARS, **(variables or {})},
                                                                   hours=hours)))[1]


def test_overview_figures_match_the_seed(seeded) -> None:
    client, data = seeded
    day_ago = data.now - timedelta(hours=24)
    total = sum(r["calls"] for r in data.rollups)
    assert _one(client, "agenttrace-overview", "Calls (total)")[0]["value"] == total
    assert _one(client, "agenttrace-overview", "Calls (24h)")[0]["value"] == sum(
        r["calls"] for r in data.rollups if r["_start"] >= day_ago)
    cost = _one(client, "agenttrace-overview", "Cost (total)")[0]["value"]
    assert math.isclose(cost, round(sum(r["cost_usd"] for r in data.rollups), 4), rel_tol=1e-9)
    by_project = {r["project"]: r["calls"] for r in _one(client, "agenttrace-overview", "Calls by project")}
    assert by_project == {p: sum(r["calls"] for r in data.rollups if r["project_id"] == p) for p in ("alpha", "beta")}
    hourly = _one(client, "agenttrace-overview", "Calls per hour")
    assert {r["time"][14:] for r in hourly} == {"00:00"}, "the hourly timeline buckets on the hour"
    assert sum(r["calls"] for r in hourly) == total
    recent = _one(client, "agenttrace-overview", "Recent calls")
    assert list(recent[0]) == ["time", "name", "agent", "project", "model", "tokens", "cost_usd", "tags", "trace_id"]
    assert len(recent) == 100 and recent[0]["time"] >= recent[-1]["time"]
    types = {r["type"]: r["events"] for r in _one(client, "agenttrace-overview", "Events by type")}
    assert types == {"llm_call": 120, "error": 6, "heartbeat": 12, "span": 4}


def test_percentiles_follow_the_sketch_rule(seeded) -> None:
    client, data = seeded
    # The last quarter hour holds one window per minute; its p95 per model comes from merged sketches.
    panel = _panel("agenttrace-performance", "Latency by model (ms)")
    ctx = QueryContext(data.now - timedelta(minutes=14, seconds=30), data.now + timedelta(seconds=30), 60,
                       {**ALL_VARS, "project": ["alpha"]})
    rows = {r["model"]: r for r in run(client, expand(panel["targets"][0]["rawSql"], ctx))[1]}
    assert set(rows) == {"gpt-4o", "claude-3-5-sonnet"}
    for model, row in rows.items():
        values = data.latencies[("alpha", model, True)]
        assert row["calls"] == len(values)
        for q in ("p50", "p95", "p99"):
            exact = exact_quantile(values, int(q[1:]) / 100)
            assert math.isclose(row[q], exact, rel_tol=0.0051), f"{model} {q}: {row[q]} vs exact {exact}"
    assert rows["claude-3-5-sonnet"]["p95"] > 5000 > rows["gpt-4o"]["p95"]


def test_quality_pass_rate_matches_the_seed(seeded) -> None:
    client, data = seeded
    rate = _one(client, "agenttrace-quality", "Pass rate")[0]["pass_rate"]
    assert math.isclose(rate, 100 * sum(s["passed"] for s in data.scores) / len(data.scores), rel_tol=1e-9)
    by_eval = {r["evaluator"]: (r["pass"], r["fail"]) for r in _one(client, "agenttrace-quality",
                                                                         "Pass/fail by evaluator")}
    for ev in ("llm-judge", "regex"):
        mine = [s for s in data.scores if s["evaluator"] == ev]
        assert by_eval[ev] == (sum(s["passed"] for s in mine), sum(not s["passed"] for s in mine))


def test_trace_dashboard_shows_the_trace(seeded) -> None:
    client, _ = seeded
    spans = _one(client, "agenttrace-trace", "Spans")
    assert [r["name"] for r in spans] == ["agent.run", "llm.chat", "tool.search"]
    assert len(_one(client, "agenttrace-trace", "Events")) == 5
    links = [o for p in _load("agenttrace-overview")["panels"] if p["type"] != "row" for o in p["fieldConfig"]["overrides"]
             if o["matcher"]["options"] == "trace_id"]
    assert links and "/d/agenttrace-trace/" in links[0]["properties"][0]["value"][0]["url"]


def test_template_variables_list_the_seeded_values(seeded) -> None:
    client, data = seeded
    expected = {"project": {"alpha", "beta"}, "agent": {"planner", "coder", "support-bot"},
                "model": {"gpt-4o", "claude-3-5-sonnet", "gpt-4o-mini"}, "provider": {"openai", "anthropic"}}
    for uid in ("agenttrace-overview", "agenttrace-cost", "agenttrace-performance", "agenttrace-quality"):
        variables = [v for v in _load(uid)["templating"]["list"] if v["type"] == "query"]
        assert [v["name"] for v in variables][:2] == ["project", "agent"]
        for v in variables:
            _, rows = run(client, expand(v["query"], _ctx(None, ALL_VARS)))
            assert {next(iter(r.values())) for r in rows} == expected[v["name"]]
    agent = next(v for v in _load("agenttrace-overview")["templating"]["list"] if v["name"] == "agent")
    _, rows = run(client, expand(agent["query"], _ctx(None, {**ALL_VARS, "project": ["beta"]})))
    assert [next(iter(r.values())) for r in rows] == ["support-bot"]


def test_grafana_alert_rules_fire_where_the_seed_crosses_thresholds(seeded) -> None:
    client, data = seeded
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = {r["uid"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {"agenttrace-daily-cost", "agenttrace-p95-latency", "agenttrace-error-rate"}
    firing = {}
    for uid, rule in rules.items():
        query = next(d for d in rule["data"] if d["refId"] == "A")
        threshold = next(d for d in rule["data"] if d["refId"] == rule["condition"])
        assert threshold["model"]["type"] == "threshold" and threshold["model"]["expression"] == "A"
        limit = threshold["model"]["conditions"][0]["evaluator"]["params"][0]
        now = datetime.now(UTC)
        ctx = QueryContext(now - timedelta(seconds=query["relativeTimeRange"]["from"]), now, 60, {})
        columns, rows = run(client, expand(query["model"]["rawSql"], ctx))
        labels = [n for n, t in columns if not _numeric(t)]
        value = [n for n, t in columns if _numeric(t)]
        assert len(value) == 1 and labels, f"{uid}: one number and label columns per row, got {columns}"
        firing[uid] = {tuple(r[n] for n in labels) for r in rows if r[value[0]] > limit}
    assert (100, 5000, 5) == tuple(
        next(d for d in rules[u]["data"] if d["refId"] == "C")["model"]["conditions"][0]["evaluator"]["params"][0]
        for u in ("agenttrace-daily-cost", "agenttrace-p95-latency", "agenttrace-error-rate"))
    day_cost = sum(r["cost_usd"] for r in data.rollups_since(data.now - timedelta(hours=24))
                   if r["project_id"] == "alpha")
    assert day_cost > 100
    assert firing["agenttrace-daily-cost"] == {("alpha",)}
    assert firing["agenttrace-p95-latency"] == {("alpha", "claude-3-5-sonnet")}
    assert firing["agenttrace-error-rate"] == {("beta",)}


def test_expansion_matches_the_plugin_semantics() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    ctx = QueryContext(now - timedelta(hours=1), now, 0, {"project": ["a", "b'c"], "agent": ALL})
    sql = ("SELECT $__timeInterval(ts) AS time, $__interval_s AS s FROM t WHERE $__timeFilter(ts) AND "
           "$__conditionalAll(p IN (${project:singlequote}), $project) AND "
           "$__conditionalAll(a IN (${agent:singlequote}), $agent) AND x >= $__fromTime AND x <= $__toTime")
    out = expand(sql, ctx)
    f, t = int((now - timedelta(hours=1)).timestamp()), int(now.timestamp())
    assert out == (f"SELECT toStartOfInterval(toDateTime(ts), INTERVAL 1 second) AS time, 1 AS s FROM t WHERE "
                   f"ts >= toDateTime({f}) AND ts <= toDateTime({t}) AND p IN ('a','b\\'c') AND 1=1 AND "
                   f"x >= toDateTime({f}) AND x <= toDateTime({t})")
    with pytest.raises(ExpansionError):
        expand("SELECT $__unknownMacro(x)", ctx)
    with pytest.raises(ExpansionError):
        expand("SELECT ${agent:singlequote}", ctx)

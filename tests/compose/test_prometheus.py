"""Prometheus rules and the pipeline dashboard: promtool accepts and unit-tests the rules, and every PromQL
expression names only metrics of the shared catalogue (or of the deployment's own exporters)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from dashboards.metric_catalogue import EXTERNAL, SERVICES, all_metrics, base_name

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "compose" / "prometheus" / "rules").glob("*.yml"))
PIPELINE = ROOT / "dashboards" / "generated" / "agenttrace-pipeline.json"
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make test` installs it (Debian package prometheus) via `make system-deps`"
    return path


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects: identifiers that are not functions, keywords or labels."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if m.group(0) in PROMQL_WORDS or expr[m.end():].lstrip().startswith("("):
            continue
        names.add(m.group(0))
    return names


def rule_exprs() -> dict[str, str]:
    out = {}
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                out[rule.get("alert") or rule["record"]] = rule["expr"]
    return out


def dashboard_exprs() -> dict[str, str]:
    dash = json.loads(PIPELINE.read_text())
    return {f"{p['title']}/{t['refId']}": t["expr"] for p in dash["panels"] if p["type"] != "row"
            for t in p["targets"]}


def test_metric_name_extraction() -> None:
    assert metric_names('histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket'
                        '{job="api", status=~"5.."}[$__rate_interval])))') == {"http_request_duration_seconds_bucket"}
    assert metric_names("a_total / ignoring(x) b_total > 0.5 and on(job) up == 0") == {"a_total", "b_total", "up"}


def test_rule_files_pass_promtool_check() -> None:
    assert RULES, "no rule files"
    out = subprocess.run([promtool(), "check", "rules", *map(str, RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in out.stdout
    out = subprocess.run([promtool(), "check", "config", str(ROOT / "compose/prometheus/prometheus.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_fire_on_the_series_that_should_trigger_them() -> None:
    out = subprocess.run([promtool(), "test", "rules", str(Path(__file__).parent / "prometheus_rules_test.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_cover_the_pipeline_alerts() -> None:
    exprs = rule_exprs()
    wanted = {"AgentTraceAPIDown": "up", "AgentTraceHigh5xxRate": "http_requests_total",
              "AgentTraceConsumerLag": "kafka_consumer_lag", "AgentTraceQueueBacklog": "worker_queue_depth",
              "AgentTraceClickHouseInsertErrors": "clickhouse_insert_errors_total",
              "AgentTraceClickHouseDiskLow": "ClickHouseAsyncMetrics_DiskAvailable_default"}
    for alert, metric in wanted.items():
        assert metric in metric_names(exprs[alert]), alert


def test_every_promql_expression_names_catalogued_metrics() -> None:
    known = all_metrics() | set(EXTERNAL)
    used: dict[str, set[str]] = {}
    for where, expr in {**rule_exprs(), **dashboard_exprs()}.items():
        names = {base_name(n) for n in metric_names(expr)}
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - known
        assert not unknown, f"{where}: {unknown} are not in the metric catalogue"
        for n in names:
            used.setdefault(n, set()).add(where)
    # The pipeline dashboard shows what the issue lists.
    dash = {base_name(n) for e in dashboard_exprs().values() for n in metric_names(e)}
    for metric in ("events_ingested_total", "events_rejected_total", "http_request_duration_seconds",
                   "kafka_consumer_lag", "worker_queue_depth", "clickhouse_insert_rows_total",
                   "alert_deliveries_total", "proxy_overhead_seconds"):
        assert metric in dash, metric


def test_catalogue_is_the_shared_metric_list() -> None:
    # The house list (every component exposes these); a typo here would let a wrong name through.
    assert set(SERVICES) == {"gateway", "proxy", "streams", "sinks", "api"}
    for service in ("gateway", "proxy", "api"):
        assert {"http_requests_total", "http_request_duration_seconds"} <= set(SERVICES[service])
    assert "kafka_consumer_lag" in SERVICES["streams"] and "kafka_consumer_lag" in SERVICES["sinks"]
    assert all(re.fullmatch(r"[a-z_]+", m) for m in all_metrics())

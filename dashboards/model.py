"""Typed builders for the parts of a Grafana 11 dashboard we use, rendered to the JSON Grafana provisions.

Plain dataclasses rather than the foundation SDK: the SDK has no builder for the ClickHouse
datasource's query model, and these few types keep the generated JSON readable and stable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
JSON_API = {"type": "simpod-json-datasource", "uid": "agenttrace-api"}
CLICKHOUSE_PLUGIN_VERSION = "4.3.2"

PanelType = Literal["stat", "timeseries", "piechart", "table", "barchart", "bargauge", "gauge", "histogram"]
# The ClickHouse plugin's Format enum: 0 time series (long frames become wide), 1 table.
FORMAT_TIMESERIES = 0
FORMAT_TABLE = 1


@dataclass
class SqlTarget:
    """A raw-SQL query of the ClickHouse datasource; `timeseries` picks the time series format."""

    sql: str
    timeseries: bool = False
    ref_id: str = "A"

    def to_json(self) -> dict[str, Any]:
        return {
            "refId": self.ref_id,
            "datasource": CLICKHOUSE,
            "editorType": "sql",
            "format": FORMAT_TIMESERIES if self.timeseries else FORMAT_TABLE,
            "queryType": "timeseries" if self.timeseries else "table",
            "pluginVersion": CLICKHOUSE_PLUGIN_VERSION,
            "rawSql": self.sql.strip(),
        }


@dataclass
class PromTarget:
    expr: str
    legend: str = "__auto"
    ref_id: str = "A"

    def to_json(self) -> dict[str, Any]:
        return {"refId": self.ref_id, "datasource": PROMETHEUS, "expr": self.expr.strip(),
                "legendFormat": self.legend, "range": True, "editorMode": "code"}


Target = SqlTarget | PromTarget


@dataclass
class Link:
    """A data link on a table column (or the whole panel when `column` is None)."""

    title: str
    url: str
    column: str | None = None
    new_tab: bool = False


@dataclass
class Panel:
    title: str
    type: PanelType
    targets: list[Target]
    width: int = 8
    height: int = 8
    unit: str = ""
    description: str = ""
    decimals: int | None = None
    interval: str = ""  # minimum interval, e.g. "1h" makes $__timeInterval bucket hourly
    links: list[Link] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    stack: bool = False
    draw: Literal["line", "bars"] = "line"
    # Minimum and maximum for gauges; thresholds as (value, colour) after the base green.
    min: float | None = None
    max: float | None = None
    thresholds: list[tuple[float, str]] = field(default_factory=list)

    def datasource(self) -> dict[str, str]:
        return PROMETHEUS if isinstance(self.targets[0], PromTarget) else CLICKHOUSE

    def to_json(self, pid: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]
                           + [{"color": c, "value": v} for v, c in self.thresholds]},
        }
        if self.unit:
            defaults["unit"] = self.unit
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        if self.type == "timeseries":
            defaults["custom"] = {"drawStyle": self.draw, "fillOpacity": 15, "lineWidth": 1,
                                  "showPoints": "never", "spanNulls": False,
                                  "stacking": {"mode": "normal" if self.stack else "none", "group": "A"}}
        overrides = list(self.overrides)
        panel_links = []
        for link in self.links:
            entry = {"title": link.title, "url": link.url, "targetBlank": link.new_tab}
            if link.column is None:
                panel_links.append(entry)
            else:
                overrides.append({"matcher": {"id": "byName", "options": link.column},
                                  "properties": [{"id": "links", "value": [entry]}]})
        options = dict(_DEFAULT_OPTIONS.get(self.type, {}))
        options.update(self.options)
        out: dict[str, Any] = {
            "id": pid,
            "type": self.type,
            "title": self.title,
            "datasource": self.datasource(),
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": overrides},
            "options": options,
            "targets": [t.to_json() for t in self.targets],
        }
        if self.description:
            out["description"] = self.description
        if self.interval:
            out["interval"] = self.interval
        if panel_links:
            out["links"] = panel_links
        return out


_DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "stat": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
             "colorMode": "value", "graphMode": "none", "textMode": "auto", "justifyMode": "auto"},
    "gauge": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
              "showThresholdMarkers": True},
    "piechart": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
                 "pieType": "donut", "legend": {"displayMode": "table", "placement": "right",
                                                "values": ["value", "percent"]}},
    "bargauge": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
                 "orientation": "horizontal", "displayMode": "gradient"},
    "barchart": {"orientation": "auto", "stacking": "none", "showValue": "auto",
                 "legend": {"displayMode": "list", "placement": "bottom"}},
    "timeseries": {"legend": {"displayMode": "list", "placement": "bottom"},
                   "tooltip": {"mode": "multi", "sort": "desc"}},
    "table": {"showHeader": True, "cellHeight": "sm"},
    "histogram": {"bucketCount": 20, "legend": {"displayMode": "list", "placement": "bottom"}},
}


@dataclass
class Row:
    title: str
    panels: list[Panel]
    collapsed: bool = False


@dataclass
class Variable:
    """A template variable. `query` variables run SQL on ClickHouse; multi-select with All."""

    name: str
    label: str
    kind: Literal["query", "textbox", "constant", "custom"] = "query"
    query: str = ""
    default: str = ""
    hide: int = 0  # 0 shown, 2 hidden

    def to_json(self) -> dict[str, Any]:
        base: dict[str, Any] = {"name": self.name, "label": self.label, "type": self.kind, "hide": self.hide}
        if self.kind == "query":
            base.update({
                "datasource": CLICKHOUSE,
                "query": self.query.strip(),
                "definition": self.query.strip(),
                "refresh": 2,  # on time range change, so new agents and models appear
                "includeAll": True,
                "multi": True,
                # Only values the query returned: a typed value could carry a backslash, which the
                # singlequote format does not escape.
                "allowCustomValue": False,
                "sort": 1,
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "options": [],
            })
        else:
            base.update({"query": self.default,
                         "current": {"selected": False, "text": self.default, "value": self.default},
                         "options": [{"selected": True, "text": self.default, "value": self.default}]})
        return base


@dataclass
class DashboardLink:
    title: str
    tags: list[str]


@dataclass
class Dashboard:
    uid: str
    title: str
    rows: list[Row]
    description: str = ""
    tags: list[str] = field(default_factory=lambda: ["agenttrace"])
    variables: list[Variable] = field(default_factory=list)
    time_from: str = "now-7d"
    refresh: str = "30s"

    def panels(self) -> list[Panel]:
        return [p for r in self.rows for p in r.panels]

    def to_json(self) -> dict[str, Any]:
        out_panels: list[dict[str, Any]] = []
        pid, y = 1, 0
        for row in self.rows:
            out_panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False,
                               "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            pid, y = pid + 1, y + 1
            x, line_h = 0, 0
            for panel in row.panels:
                if x + panel.width > 24:  # wrap to the next line of the row
                    x, y, line_h = 0, y + line_h, 0
                out_panels.append(panel.to_json(pid, x, y))
                pid, x, line_h = pid + 1, x + panel.width, max(line_h, panel.height)
            y += line_h
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "timezone": "utc",
            "refresh": self.refresh,
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m", "1h"]},
            "templating": {"list": [v.to_json() for v in self.variables]},
            "annotations": {"list": []},
            "links": [{"title": "AgentTrace", "type": "dashboards", "tags": ["agenttrace"],
                       "asDropdown": True, "includeVars": True, "keepTime": True}],
            "panels": out_panels,
        }

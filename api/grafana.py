"""Grafana JSON datasource (simpod-json-datasource) under /grafana.

Targets: `metrics` (time series) and the tables `traces`, `observations`, `scores`, `costs`,
`alerts`; variables and ad hoc filters on the same keys. Requests are read leniently (Grafana
versions differ), but anything that cannot be understood gets a 400 saying what was wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Body, Depends, Response

from api import queries as q
from api.db import Db
from api.errors import ApiError
from api.params import ALIASES, Filter, TimeRange, adhoc_filters, filter_key, payload_filters, time_range
from schemas.keys import ApiKey

TABLE_TARGETS = ("traces", "observations", "scores", "costs", "alerts")
TARGETS = ("metrics", *TABLE_TARGETS)
TAG_KEYS = ("model", "provider", "agent", "name", "user_id", "session_id", "release", "version", "tag", "type")
MAX_POINTS = 11_000
DEFAULT_RANGE = timedelta(hours=6)

Body_ = Body(default=None)


def _opts(values: tuple[str, ...] | list[str]) -> list[dict[str, str]]:
    return [{"label": v, "value": v} for v in values]


FILTER_PAYLOADS = [{"label": k.replace("_", " ").capitalize(), "name": k, "type": "multi-select",
                    "placeholder": f"any {k}"} for k in ("model", "provider", "agent", "user_id", "session_id",
                                                          "name", "release", "version", "tag")]
LIMIT_PAYLOAD = {"label": "Limit", "name": "limit", "type": "input", "placeholder": "rows (default 1000)"}
METRICS = [
    {"label": "Metrics (time series)", "value": "metrics", "payloads": [
        {"label": "Aggregation", "name": "aggregation", "type": "select", "options": _opts(q.AGGREGATIONS)},
        {"label": "Field", "name": "field", "type": "select", "options": _opts(q.FIELDS)},
        {"label": "Group by", "name": "group_by", "type": "select", "options": _opts(("none", *q.GROUP_BYS))},
        *FILTER_PAYLOADS]},
    {"label": "Traces (table)", "value": "traces", "payloads": [LIMIT_PAYLOAD, *FILTER_PAYLOADS]},
    {"label": "Observations: calls, spans, errors (table)", "value": "observations",
     "payloads": [LIMIT_PAYLOAD, *FILTER_PAYLOADS]},
    {"label": "Scores (table)", "value": "scores", "payloads": [LIMIT_PAYLOAD, *FILTER_PAYLOADS]},
    {"label": "Costs per day and model (table)", "value": "costs", "payloads": FILTER_PAYLOADS},
    {"label": "Alerts (table)", "value": "alerts", "payloads": [LIMIT_PAYLOAD, *FILTER_PAYLOADS]},
]
STATIC_OPTIONS = {"aggregation": q.AGGREGATIONS, "field": q.FIELDS, "group_by": ("none", *q.GROUP_BYS)}


def _obj(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ApiError(400, f"{what} must be a JSON object") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"{what} must be a JSON object")
    return value


def grafana_range(body: dict[str, Any]) -> TimeRange:
    rng = body.get("range")
    rng = rng if isinstance(rng, dict) else {}
    raw = rng.get("raw") if isinstance(rng.get("raw"), dict) else body.get("rangeRaw")
    raw = raw if isinstance(raw, dict) else {}
    start = rng.get("from", raw.get("from"))
    end = rng.get("to", raw.get("to"))
    return time_range(start, end, default=DEFAULT_RANGE)


def interval_ms(body: dict[str, Any], tr: TimeRange) -> int:
    """Grafana's intervalMs, kept unless it would make more than MAX_POINTS buckets."""
    t0, t1 = tr.ms
    span = t1 - t0
    iv = body.get("intervalMs")
    if not isinstance(iv, int | float) or isinstance(iv, bool) or not math.isfinite(iv) or iv < 1:
        scoped = body.get("scopedVars")
        iv = None
        if isinstance(scoped, dict) and isinstance(scoped.get("__interval_ms"), dict):
            v = scoped["__interval_ms"].get("value")
            iv = v if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 1 else None
        if iv is None:
            points = body.get("maxDataPoints")
            ok = isinstance(points, int | float) and not isinstance(points, bool) and math.isfinite(points)
            points = int(points) if ok and 1 <= points <= MAX_POINTS else 1000
            iv = max(1000, span // points)
    iv = int(min(iv, 366 * 86_400_000))
    return max(iv, math.ceil(span / MAX_POINTS))


def _limit(payload: dict[str, Any], db: Db) -> int:
    value = payload.get("limit")
    if value in (None, ""):
        return db.limits.table_limit
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"bad limit {value!r}: a whole number of rows") from None
    if not 1 <= n <= db.limits.table_max_limit:
        raise ApiError(400, f"bad limit {n}: between 1 and {db.limits.table_max_limit}")
    return n


def _table(columns: list[tuple[str, str]], rows: list[dict[str, Any]], refid: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "table", "columns": [{"text": c, "type": t} for c, t in columns],
                           "rows": [[r.get(c) for c, _ in columns] for r in rows]}
    if refid:
        out["refId"] = refid
    return out


def _series_name(g: str, field: str, agg: str, grouped: bool) -> str:
    if not grouped:
        return f"{agg}({field})"
    return g if g != "" else "(none)"


def _series_shape(field: str, agg: str, grouped: bool) -> Callable[[list[dict[str, Any]]], list[bytes]]:
    def shape(rows: list[dict[str, Any]]) -> list[bytes]:
        series: dict[str, list[list[float]]] = {}
        for r in rows:
            if r["v"] is not None:
                series.setdefault(r["g"], []).append([float(r["v"]), int(r["t"])])
        # Encoded once per shared answer: serializing the points was a sixth of a cached request.
        return [orjson.dumps({"target": _series_name(g, field, agg, grouped), "datapoints": points})
                for g, points in series.items()]

    return shape


# One function object per (field, aggregation, grouped): it is part of the shared-query key.
SERIES_SHAPES = {(f, a, g): _series_shape(f, a, g) for f in q.FIELDS for a in q.AGGREGATIONS for g in (True, False)}


def _with_refid(series: bytes, refid: str | None) -> bytes:
    # An encoded object ends with "}": the refId goes in as its last member.
    return series[:-1] + b',"refId":' + orjson.dumps(refid) + b"}" if refid else series


async def run_target(db: Db, key: ApiKey, target: dict[str, Any], tr: TimeRange, iv: int,
                     adhoc: list[Filter]) -> list[bytes]:
    """The target's answer as encoded JSON values (series or one table), elements of the response."""
    name = target.get("target")
    if not isinstance(name, str):
        raise ApiError(400, "each target needs a `target` string naming the metric")
    payload = _obj(target.get("payload", target.get("data")), "payload")
    if name not in TARGETS:
        raise ApiError(400, f"unknown metric {name!r}; one of: {', '.join(TARGETS)}")
    filters = [*payload_filters(payload), *adhoc]
    refid = target.get("refId") if isinstance(target.get("refId"), str) else None
    dbn, project = db.database, key.project_id
    if name == "metrics":
        field = payload.get("field", "calls")
        agg = payload.get("aggregation", "sum")
        group = payload.get("group_by", payload.get("groupBy", "none"))
        for v, what in ((field, "field"), (agg, "aggregation"), (group, "group_by")):
            if not isinstance(v, str):
                raise ApiError(400, f"payload.{what} must be a string")
        mq = q.metric_query(dbn, project, field, agg, group, tr, iv, filters)
        grouped = q.GROUP_ALIASES.get(group, group) != ""
        series = await db.shared_rows(mq.name, mq.sql, mq.params, SERIES_SHAPES[(field, agg, grouped)])
        return [_with_refid(s, refid) for s in series]
    if name == "costs":
        sql, params, src = q.costs_query(dbn, project, tr, filters)
        rows = await db.rows(f"costs_{src}", sql, params)
        day_totals: dict[int, float] = {}
        for r in rows:
            day_totals[r["day"]] = day_totals.get(r["day"], 0.0) + r["cost_usd"]
        for r in rows:
            r["day_cost_usd"] = day_totals[r["day"]]
        return [orjson.dumps(_table(q.COST_COLUMNS, rows, refid))]
    limit = _limit(payload, db)
    if name == "traces":
        rows = await traces_table(db, dbn, project, tr, filters, limit)
        return [orjson.dumps(_table(q.TRACE_COLUMNS, rows, refid))]
    builders = {"observations": (q.observations_query, q.OBSERVATION_COLUMNS), "scores": (q.scores_query, q.SCORE_COLUMNS),
                "alerts": (q.alerts_table_query, q.ALERT_COLUMNS)}
    build, columns = builders[name]
    sql, params = build(dbn, project, tr, filters, limit)
    rows = await db.rows(name, sql, params)
    return [orjson.dumps(_table(columns, rows, refid))]


@dataclass(frozen=True)
class _TracesShape:
    """Sums the newest traces' rows up in Python, or None past `cap` rows. Equal by value: it is part of
    the shared-query key."""

    limit: int
    cap: int

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        return q.aggregate_traces(rows, self.limit) if len(rows) <= self.cap else None


async def traces_table(db: Db, dbn: str, project: str, tr: TimeRange, filters: list[Filter],
                       limit: int) -> list[dict[str, Any]]:
    """The newest traces, summed up in Python when their rows are few (the common case), else by
    ClickHouse; both give the same rows. Viewers of one dashboard share the answer like the rollup
    panels do (whole-second bounds make their requests equal)."""
    tr = tr.whole_seconds()
    cap = min(db.limits.traces_python_rows, db.limits.max_result_rows - 1)
    if cap > 0:
        sql, params = q.traces_rows_query(dbn, project, tr, filters, limit, cap)
        summed = await db.shared_rows("traces", sql, params, _TracesShape(limit, cap), q.TRACES_SETTINGS)
        if summed is not None:
            return summed
    sql, params = q.traces_query(dbn, project, tr, filters, limit)
    return await db.shared_rows("traces_sql", sql, params, None, q.TRACES_SETTINGS)


async def distinct_values(db: Db, key: ApiKey, variable: str, tr: TimeRange) -> list[str]:
    if variable == "projects":
        return [key.project_id]
    sql, params = q.values_query(db.database, key.project_id, variable, tr)
    rows = await db.shared_rows(f"values_{variable}", sql, params)
    return [str(r["item"]) for r in rows]


def router(db: Db, auth: Any) -> APIRouter:
    r = APIRouter(prefix="/grafana", tags=["grafana"])

    @r.get("/", summary="Test connection")
    async def test_connection(key: ApiKey = Depends(auth)) -> Response:
        if not await _ping(db):
            raise ApiError(503, "ClickHouse is not reachable")
        return jr({"status": "ok", "project_id": key.project_id})

    @r.post("/metrics", summary="Metrics (targets) and their payload options")
    async def metrics(body: Any = Body_, key: ApiKey = Depends(auth)) -> Response:
        _obj(body, "request body")
        return jr(METRICS)

    @r.post("/metric-payload-options", summary="Options of a payload select box")
    async def payload_options(body: Any = Body_, key: ApiKey = Depends(auth)) -> Response:
        doc = _obj(body, "request body")
        name = doc.get("name")
        if not isinstance(name, str):  # nothing asked for (the spec allows an empty body): no options
            return jr([])
        if name in STATIC_OPTIONS:
            return jr(_opts(STATIC_OPTIONS[name]))
        k = ALIASES.get(name, name)
        variable = q.KEY_TO_VARIABLE.get(k)
        if variable is None:
            return jr([])
        tr = time_range(None, None, default=timedelta(days=30))
        return jr(_opts(await distinct_values(db, key, variable, tr)))

    @r.post("/query", summary="Time series and tables")
    async def query(body: Any = Body_, key: ApiKey = Depends(auth)) -> Response:
        doc = _obj(body, "request body")
        tr = grafana_range(doc)
        iv = interval_ms(doc, tr)
        adhoc = adhoc_filters(doc.get("filters") or doc.get("adhocFilters"))
        targets = doc.get("targets") or []
        if not isinstance(targets, list):
            raise ApiError(400, "targets must be a list")
        out: list[bytes] = []
        for t in targets:
            if not isinstance(t, dict):
                raise ApiError(400, "each target must be an object with a `target` name")
            if t.get("hide") is True:
                continue
            out.extend(await run_target(db, key, t, tr, iv, adhoc))
        return Response(b"[" + b",".join(out) + b"]", media_type="application/json")

    @r.post("/variable", summary="Values of a query variable")
    async def variable(body: Any = Body_, key: ApiKey = Depends(auth)) -> Response:
        doc = _obj(body, "request body")
        payload = doc.get("payload")
        if isinstance(payload, str):
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError:
                payload = {"target": payload}
        target = payload.get("target") if isinstance(payload, dict) else doc.get("target")
        if payload is None and target is None:  # no variable asked for (the spec allows it): no values
            return jr([])
        if not isinstance(target, str):
            raise ApiError(400, "payload.target must name a variable: " + ", ".join(q.VARIABLES))
        target = target.strip()
        if target not in q.VARIABLES:
            raise ApiError(400, f"unknown variable {target!r}; one of: {', '.join(q.VARIABLES)}")
        tr = grafana_range(doc) if doc.get("range") else time_range(None, None, default=timedelta(days=30))
        values = await distinct_values(db, key, target, tr)
        return jr([{"text": v, "value": v, "__text": v, "__value": v} for v in values])

    @r.post("/tag-keys", summary="Ad hoc filter keys")
    async def tag_keys(body: Any = Body_, key: ApiKey = Depends(auth)) -> Response:
        return jr([{"type": "string", "text": k} for k in TAG_KEYS])

    @r.post("/tag-values", summary="Ad hoc filter values of a key")
    async def tag_values(body: Any = Body_, key: ApiKey = Depends(auth)) -> Response:
        doc = _obj(body, "request body")
        k = filter_key(doc.get("key"))
        variable = q.KEY_TO_VARIABLE.get(k)
        if variable is None:
            raise ApiError(400, f"no values listed for key {k!r}")
        tr = grafana_range(doc) if doc.get("range") else time_range(None, None, default=timedelta(days=30))
        return jr([{"text": v} for v in await distinct_values(db, key, variable, tr)])

    return r


def jr(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


async def _ping(db: Db) -> bool:
    from anyio import to_thread

    return await to_thread.run_sync(db.ping)

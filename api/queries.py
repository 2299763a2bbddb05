"""SQL builders of the read API.

Rules that keep every request harmless: table, column and function names come only from the
allow-lists below; every value a request carries is a bound `{name:Type}` parameter; the key's
project is a condition of every statement. Replacing tables are read with FINAL (or argMax), so
answers never depend on merges having happened.

Metric semantics (one time series per group, buckets of `interval_ms` aligned to the epoch):
- cost, tokens, tokens_in, tokens_out: per llm call, missing values count as 0; `count` is the
  number of calls; sum/avg/min/max/pNN over the calls.
- latency, ttft: per llm call that has the value; `count` is how many have it.
- calls, errors, error_rate, traces: counters of the bucket; `count` and `sum` give the bucket's
  total (error_rate = errors / calls, errors = llm calls with status >= 400 plus error events);
  avg/min/max/pNN are taken over the per-minute values inside the bucket (over the bucket's
  sub-intervals when the bucket is shorter than a minute).
Percentiles from rollups merge the sketches (same rule as schemas.sketch) and are within the sketch's 0.5 %;
from raw events they are exact under the sketch's rank rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from api.errors import ApiError
from api.params import Filter, TimeRange
from schemas.sketch import GAMMA, ZERO_KEY, clickhouse_quantile_sql

AGGREGATIONS = ("count", "sum", "avg", "min", "max", "p50", "p95", "p99")
QUANTILES = {"p50": "0.5", "p95": "0.95", "p99": "0.99"}
FIELDS = ("traces", "calls", "cost", "tokens", "tokens_in", "tokens_out", "latency", "ttft", "errors", "error_rate")
GROUP_BYS = ("model", "provider", "agent", "name", "user_id", "session_id", "release", "version", "tag")
GROUP_ALIASES = {"agent_id": "agent", "user": "user_id", "session": "session_id", "tags": "tag", "none": "",
                 "": ""}
MINUTE_MS = 60_000
MAX_SERIES_ROWS = 200_000

# Per-call fields, missing values as 0 (rollups sum them the same way).
SUM_FIELDS = {
    "cost": ("ifNull(cost_usd, 0)", "cost_usd"),
    "tokens": ("ifNull(tokens_in, 0) + ifNull(tokens_out, 0)", "tokens_in + tokens_out"),
    "tokens_in": ("ifNull(tokens_in, 0)", "tokens_in"),
    "tokens_out": ("ifNull(tokens_out, 0)", "tokens_out"),
}
# Per-call fields that may be absent: (raw column, rollup sum, rollup max, rollup sketch).
DIST_FIELDS = {
    "latency": ("latency_ms", "latency_ms_sum", "latency_ms_max", "latency_sketch"),
    "ttft": ("ttft_ms", None, None, "ttft_sketch"),
}
IS_ERROR = "(type = 'error' OR (type = 'llm_call' AND ifNull(status_code, 0) >= 400))"

# Filter key -> column, per table. Keys a table lacks do not apply to it.
EVENT_COLS = {"model": "model", "provider": "provider", "agent": "agent_id", "name": "name", "user_id": "user_id",
              "session_id": "session_id", "release": "release", "version": "version", "tag": "tags",
              "type": "type", "project": "project_id"}
ROLLUP_COLS = {"model": "model", "provider": "provider", "agent": "agent_id", "project": "project_id"}
SCORE_COLS = {"agent": "agent_id", "name": "name", "project": "project_id"}
ALERT_COLS = {"agent": "agent_id", "project": "project_id"}
RAW_GROUP = {"model": "model", "provider": "provider", "agent": "agent_id", "name": "name", "user_id": "user_id",
             "session_id": "session_id", "release": "release", "version": "version",
             "tag": "arrayJoin(if(empty(tags), [''], tags))", "": "''"}
ROLLUP_GROUP = {"model": "model", "provider": "provider", "agent": "agent_id", "": "''"}

_DB = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Sql:
    """One statement being built: bind() returns a placeholder and keeps the value aside."""

    def __init__(self, project: str):
        self.params: dict[str, Any] = {}
        self.project = self.bind(project, "String")

    def bind(self, value: Any, typ: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{typ}}}"

    def binds(self, values: tuple[str, ...]) -> str:
        return ", ".join(self.bind(v, "String") for v in values)

    def time(self, col: str, tr: TimeRange) -> str:
        t0, t1 = tr.ms
        return (f"{col} >= fromUnixTimestamp64Milli({self.bind(t0, 'Int64')}, 'UTC') AND "
                f"{col} < fromUnixTimestamp64Milli({self.bind(t1, 'Int64')}, 'UTC')")

    def time_ms(self, col: str, lo: int, hi: int) -> str:
        return (f"{col} >= fromUnixTimestamp64Milli({self.bind(lo, 'Int64')}, 'UTC') AND "
                f"{col} < fromUnixTimestamp64Milli({self.bind(hi, 'Int64')}, 'UTC')")

    def filters(self, filters: list[Filter], cols: dict[str, str]) -> list[str]:
        out = []
        for f in filters:
            col = cols.get(f.key)
            if col is None:
                continue
            out.append(self.filter(col, f))
        return out

    def filter(self, col: str, f: Filter) -> str:
        if col == "tags":
            if f.op in ("=", "!="):
                cond = f"hasAny(tags, [{self.binds(f.values)}])"
            else:
                cond = "arrayExists(x -> " + " OR ".join(
                    f"match(x, {self._anchored(v)})" for v in f.values) + ", tags)"
        elif f.op in ("=", "!="):
            cond = f"{col} IN ({self.binds(f.values)})"
        else:
            cond = "(" + " OR ".join(f"match({col}, {self._anchored(v)})" for v in f.values) + ")"
        return f"NOT {cond}" if f.op in ("!=", "!~") else cond

    def _anchored(self, pattern: str) -> str:
        # Grafana's regex filters match the whole value, as in Prometheus.
        return f"concat('^(?:', {self.bind(pattern, 'String')}, ')$')"


def table(db: str, name: str) -> str:
    if not _DB.fullmatch(db):
        raise ValueError(f"bad database name {db!r}")
    return f"{db}.{name}"


def where(parts: list[str]) -> str:
    return " AND ".join(f"({p})" for p in parts if p)


# -- rollup tiers ----------------------------------------------------------------------------

# The sinks keep hour and day rows recomputed from the minutes (schemas/sql/002_sinks.sql).
TIERS = (("rollups_1d", 86_400_000), ("rollups_1h", 3_600_000), ("rollups_1m", MINUTE_MS))
ROLLUP_READ = ("project_id, window_start, agent_id, provider, model, calls, errors, error_events, tokens_in, "
               "tokens_out, tokens_cached, cost_usd, latency_ms_sum, latency_ms_max, latency_sketch, ttft_sketch")


def rollup_segments(t0: int, t1: int, width_ms: int) -> list[tuple[str, int, int]]:
    """Cover [t0, t1) with whole windows of the coarsest tier dividing `width_ms`, and the edges with
    finer tiers. A window counts when its start lies in the range, at every tier, so the answer is
    the same as from minutes alone. Minute bounds are rounded up to whole minutes (same windows),
    which keeps equal requests within a minute equal."""
    t0, t1 = -(-t0 // MINUTE_MS) * MINUTE_MS, -(-t1 // MINUTE_MS) * MINUTE_MS

    def cover(lo: int, hi: int, tiers: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
        if lo >= hi:
            return []
        name, w = tiers[0]
        if len(tiers) == 1:
            return [(name, lo, hi)]
        a, b = -(-lo // w) * w, hi // w * w
        if a >= b:
            return cover(lo, hi, tiers[1:])
        return [*cover(lo, a, tiers[1:]), (name, a, b), *cover(b, hi, tiers[1:])]

    return cover(t0, t1, [(n, w) for n, w in TIERS if width_ms % w == 0])


def rollup_source(sql: Sql, db: str, tr: TimeRange, width_ms: int, filters: list[Filter]) -> tuple[str, str]:
    """(FROM clause over the rollup tiers, tiers used)."""
    t0, t1 = tr.ms
    # One scan per tier: the two minute edges of a range are read together (each scan has a fixed cost).
    ranges: dict[str, list[tuple[int, int]]] = {}
    for name, lo, hi in rollup_segments(t0, t1, width_ms):
        ranges.setdefault(name, []).append((lo, hi))
    parts, used = [], []
    for name, spans in ranges.items():
        times = " OR ".join(f"({sql.time_ms('window_start', lo, hi)})" for lo, hi in spans)
        conds = [f"project_id = {sql.project}", times, *sql.filters(filters, ROLLUP_COLS)]
        parts.append(f"SELECT {ROLLUP_READ} FROM {table(db, name)} FINAL WHERE {where(conds)}")
        used.append(name)
    if not parts:  # an empty range: read nothing, keep the shape
        parts.append(f"SELECT {ROLLUP_READ} FROM {table(db, 'rollups_1m')} WHERE 0")
        used.append("rollups_1m")
    # Tiers named finest first whatever the range's edges, so equal plans carry equal labels.
    order = [n for n, _ in reversed(TIERS)]
    return "(" + " UNION ALL ".join(parts) + ")", "+".join(sorted(set(used), key=order.index))


# -- metrics ---------------------------------------------------------------------------------

@dataclass
class MetricQuery:
    sql: str
    params: dict[str, Any]
    source: str  # "rollups_1m" or "events"
    name: str = field(default="metrics")


def check_metric(field_: str, agg: str, group_by: str) -> tuple[str, str, str]:
    if field_ not in FIELDS:
        raise ApiError(400, f"unknown metric field {field_!r}; one of: {', '.join(FIELDS)}")
    if agg not in AGGREGATIONS:
        raise ApiError(400, f"bad aggregation {agg!r}; one of: {', '.join(AGGREGATIONS)}")
    g = GROUP_ALIASES.get(group_by, group_by)
    if g and g not in GROUP_BYS:
        raise ApiError(400, f"bad group_by {group_by!r}; one of: none, {', '.join(GROUP_BYS)}")
    return field_, agg, g


def _quantile(expr: str, q: str) -> str:
    # The sketch's rank rule (schemas.sketch): element floor(q * (n - 1)) of the sorted values.
    return (f"if(count({expr}) = 0, NULL, arrayElement(arraySort(groupArray({expr})), "
            f"toUInt64(floor({q} * (count({expr}) - 1))) + 1))")


def _per_value(agg: str, expr: str) -> str:
    if agg in QUANTILES:
        return _quantile(expr, QUANTILES[agg])
    return {"count": f"count({expr})", "sum": f"sum({expr})", "avg": f"avg({expr})",
            "min": f"min({expr})", "max": f"max({expr})"}[agg]


def _raw_counter(field_: str) -> tuple[str, str]:
    """(population, value) of a counter over raw events."""
    if field_ == "calls":
        return "type = 'llm_call'", "count()"
    if field_ == "errors":
        return "type IN ('llm_call', 'error')", f"countIf{IS_ERROR}"
    if field_ == "error_rate":
        return "type IN ('llm_call', 'error')", f"countIf{IS_ERROR} / nullIf(countIf(type = 'llm_call'), 0)"
    return "trace_id != ''", "uniqExact(trace_id)"


def _rollup_counter(field_: str) -> tuple[str, str]:
    """(having, value) of a counter over rollups."""
    if field_ == "calls":
        return "sum(calls) > 0", "sum(calls)"
    if field_ == "errors":
        return "sum(calls) + sum(error_events) > 0", "sum(errors)"
    return "sum(calls) + sum(error_events) > 0", "sum(errors) / nullIf(sum(calls), 0)"


def _sketch_count(col: str) -> str:
    return f"sum(arraySum(mapValues({col})))"


def sketch_quantile_sql(col: str, q: str) -> str:
    """q-quantile of the merged sketches of column `col` in the group, by the rule of schemas.sketch
    (the first bucket in key order whose cumulative count exceeds floor(q * (n - 1))).

    Same value as schemas.sketch.clickhouse_quantile_sql over sumMap(col), without building the
    merged map: sumMap keeps a map of generic values per group and costs several times more than
    concatenating the buckets and sorting them by key. Unmerged equal keys sort next to each other,
    so the first position whose running count passes the rank holds the same key as in the merged map.
    Meant for groups of one time bucket (few rows each); it holds every row's buckets of the group."""
    ks, vs = f"groupArrayArray(mapKeys({col}))", f"groupArrayArray(mapValues({col}))"
    n = f"arraySum({vs})"
    key = f"arraySort({ks})[arrayFirstIndex(c -> c > floor({q} * ({n} - 1)), arrayCumSum(arraySort((v, k) -> k, {vs}, {ks})))]"
    return f"if({n} = 0, NULL, if({key} = {ZERO_KEY}, 0, 2 * pow({GAMMA!r}, {key}) / ({GAMMA!r} + 1)))"


def _rollup_value(field_: str, agg: str) -> tuple[str, str] | None:
    """(having, value) of a per-call field from rollups, or None when rollups cannot answer."""
    if field_ in SUM_FIELDS:
        col = SUM_FIELDS[field_][1]
        v = {"count": "sum(calls)", "sum": f"sum({col})", "avg": f"sum({col}) / nullIf(sum(calls), 0)"}.get(agg)
        return ("sum(calls) > 0", v) if v else None
    raw_col, sum_col, max_col, sketch = DIST_FIELDS[field_]
    n = _sketch_count(sketch)
    if agg == "count":
        v = n
    elif agg in QUANTILES:
        v = sketch_quantile_sql(sketch, QUANTILES[agg])
    elif agg == "sum" and sum_col:
        v = f"sum({sum_col})"
    elif agg == "avg" and sum_col:
        v = f"sum({sum_col}) / nullIf({n}, 0)"
    elif agg == "max" and max_col:
        v = f"max({max_col})"
    else:
        return None
    return f"{n} > 0", v


def metric_query(db: str, project: str, field_: str, agg: str, group_by: str, tr: TimeRange, interval_ms: int,
                 filters: list[Filter]) -> MetricQuery:
    field_, agg, g = check_metric(field_, agg, group_by)
    counter = field_ in ("calls", "errors", "error_rate", "traces")
    two_level = counter and agg not in ("count", "sum")
    rollup_ok = (interval_ms >= MINUTE_MS and interval_ms % MINUTE_MS == 0 and g in ROLLUP_GROUP
                 and all(f.key in ROLLUP_COLS for f in filters) and field_ != "traces")
    if rollup_ok and not counter:
        rollup_ok = _rollup_value(field_, agg) is not None
    sql = Sql(project)
    iv = sql.bind(int(interval_ms), "UInt64")
    if rollup_ok:
        having, value = _rollup_counter(field_) if counter else _rollup_value(field_, agg)  # type: ignore[misc]
        bucket = f"intDiv(toUInt64(toUnixTimestamp(window_start)) * 1000, {iv}) * {iv}"
        # Per-minute values (two-level aggregations) need the minutes; sums merge at any tier.
        src, source = rollup_source(sql, db, tr, MINUTE_MS if two_level else int(interval_ms), filters)
        conds = ["1"]
        sub, grp = "window_start", ROLLUP_GROUP[g]
    else:
        conds = [f"project_id = {sql.project}", sql.time("timestamp", tr), *sql.filters(filters, EVENT_COLS)]
        if counter:
            population, value = _raw_counter(field_)
        elif field_ in SUM_FIELDS:
            population, value = "type = 'llm_call'", _per_value(agg, SUM_FIELDS[field_][0])
        else:
            col = DIST_FIELDS[field_][0]
            population, value = f"type = 'llm_call' AND {col} IS NOT NULL", _per_value(agg, col)
        conds.append(population)
        having = ""
        bucket = f"intDiv(toUInt64(toUnixTimestamp64Milli(timestamp)), {iv}) * {iv}"
        sub_ms = sql.bind(min(int(interval_ms), MINUTE_MS), "UInt64")
        src, sub, grp = f"{table(db, 'events')} FINAL", f"intDiv(toUInt64(toUnixTimestamp64Milli(timestamp)), {sub_ms})", \
            RAW_GROUP[g]
        source = "events"
    having_sql = f" HAVING {having}" if having else ""
    if two_level:
        inner = (f"SELECT {bucket} AS t, {sub} AS s, {grp} AS g, {value} AS x FROM {src} WHERE {where(conds)} "
                 f"GROUP BY t, s, g{having_sql}")
        text = (f"SELECT t, g, {_per_value(agg, 'x')} AS v FROM ({inner}) GROUP BY t, g "
                f"ORDER BY g, t LIMIT {MAX_SERIES_ROWS}")
    else:
        text = (f"SELECT {bucket} AS t, {grp} AS g, {value} AS v FROM {src} WHERE {where(conds)} "
                f"GROUP BY t, g{having_sql} ORDER BY g, t LIMIT {MAX_SERIES_ROWS}")
    return MetricQuery(text, sql.params, source, "metrics_rollups" if source.startswith("rollups") else "metrics_raw")


# -- tables ----------------------------------------------------------------------------------

TRACE_COLUMNS = [("start_time", "time"), ("trace_id", "string"), ("name", "string"), ("agent_id", "string"),
                 ("user_id", "string"), ("session_id", "string"), ("release", "string"), ("events", "number"),
                 ("calls", "number"), ("errors", "number"), ("cost_usd", "number"), ("tokens_in", "number"),
                 ("tokens_out", "number"), ("latency_ms", "number"), ("tags", "string")]


# Aggregating queries also try the implicit min/max/count projection, planned per query at a cost
# of ~2 ms; it can never answer a per-trace table (whatever answers, the rows are the same).
TRACES_SETTINGS = "optimize_use_implicit_projections=0"


def _newest_traces(sql: Sql, db: str, tr: TimeRange, filters: list[Filter], limit: int) -> tuple[str, str, str]:
    """(WITH clause naming `newest` = (ids, oldest start), the filter conditions, the bound limit)."""
    conds = where([f"project_id = {sql.project}", sql.time("timestamp", tr), "trace_id != ''",
                   *sql.filters(filters, EVENT_COLS)])
    lim = sql.bind(limit, "UInt32")
    text = f"""
WITH (SELECT tuple(groupArray(trace_id), min(start)) FROM (
        SELECT trace_id, min(timestamp) AS start FROM {table(db, 'events')} WHERE {conds}
        GROUP BY trace_id ORDER BY start DESC, trace_id LIMIT {lim})) AS newest"""
    return text, conds, lim


def traces_query(db: str, project: str, tr: TimeRange, filters: list[Filter], limit: int) -> tuple[str, dict]:
    """The `limit` traces that started last, each aggregated over its rows matching the filters.

    Two steps, so that the wide columns are read only for the traces shown: first the newest trace
    ids and their start, from the few narrow columns of the filter (no FINAL needed: a redelivered
    twin changes neither a trace's first timestamp nor the set of ids); then the aggregates over
    those ids only, from the start of the oldest of them on (every row of a trace lies at or after
    its start, so the bound drops nothing and lets the sorting key skip all older hours).
    `traces_rows_query` + `aggregate_traces` give the same answer with the second step in Python."""
    sql = Sql(project)
    newest, conds, lim = _newest_traces(sql, db, tr, filters, limit)
    text = f"""{newest}
SELECT toUnixTimestamp64Milli(min(timestamp)) AS start_time, trace_id,
       argMinIf(name, timestamp, name != '') AS name, argMin(agent_id, timestamp) AS agent_id,
       anyIf(user_id, user_id != '') AS user_id, anyIf(session_id, session_id != '') AS session_id,
       anyIf(release, release != '') AS release, count() AS events, countIf(type = 'llm_call') AS calls,
       countIf{IS_ERROR} AS errors, sum(ifNull(cost_usd, 0)) AS cost_usd, sum(ifNull(tokens_in, 0)) AS tokens_in,
       sum(ifNull(tokens_out, 0)) AS tokens_out,
       max(toUnixTimestamp64Milli(timestamp) + ifNull(latency_ms, 0)) - min(toUnixTimestamp64Milli(timestamp))
         AS latency_ms,
       arrayStringConcat(arraySort(groupUniqArrayArray(tags)), ',') AS tags
FROM {table(db, 'events')} FINAL WHERE {conds} AND trace_id IN newest.1 AND timestamp >= newest.2
GROUP BY trace_id ORDER BY start_time DESC, trace_id LIMIT {lim}"""
    return text, sql.params


def traces_rows_query(db: str, project: str, tr: TimeRange, filters: list[Filter], limit: int,
                      max_rows: int) -> tuple[str, dict]:
    """The rows `traces_query` aggregates (same two steps, same FINAL), at most `max_rows` + 1 of them,
    in the order ClickHouse reads them; `aggregate_traces` sums them up. Planning the fifteen
    aggregates costs ClickHouse more CPU than summing a few hundred rows costs Python."""
    sql = Sql(project)
    newest, conds, _ = _newest_traces(sql, db, tr, filters, limit)
    text = f"""{newest}
SELECT toUnixTimestamp64Milli(timestamp) AS ts, trace_id, name, agent_id, user_id, session_id, release, type,
       status_code, cost_usd, tokens_in, tokens_out, latency_ms, tags
FROM {table(db, 'events')} FINAL WHERE {conds} AND trace_id IN newest.1 AND timestamp >= newest.2
LIMIT {sql.bind(max_rows + 1, 'UInt64')}"""
    return text, sql.params


def _json_number(x: float) -> float | int:
    # ClickHouse writes a whole Float64 without a fraction ("12"), which reads back as an int.
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def aggregate_traces(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """`traces_query`'s aggregates over `traces_rows_query`'s rows, value for value: the same
    sequential Float64 sums in the same row order, the first row winning ties as ClickHouse's
    argMin/anyIf do, tags sorted by code point (= UTF-8 byte order)."""
    acc: dict[str, list[Any]] = {}
    # Per trace: start, name ts, name, agent ts, agent, user, session, release, events, calls, errors,
    # cost, tokens in, tokens out, end (ts + latency), tags.
    for r in rows:
        ts = r["ts"]
        a = acc.get(r["trace_id"])
        if a is None:
            a = acc[r["trace_id"]] = [ts, None, "", ts, r["agent_id"], "", "", "", 0, 0, 0, 0.0, 0, 0,
                                      float("-inf"), set()]
        if ts < a[0]:
            a[0] = ts
        if r["name"] and (a[1] is None or ts < a[1]):
            a[1], a[2] = ts, r["name"]
        if ts < a[3]:
            a[3], a[4] = ts, r["agent_id"]
        if not a[5] and r["user_id"]:
            a[5] = r["user_id"]
        if not a[6] and r["session_id"]:
            a[6] = r["session_id"]
        if not a[7] and r["release"]:
            a[7] = r["release"]
        a[8] += 1
        if r["type"] == "llm_call":
            a[9] += 1
            if (r["status_code"] or 0) >= 400:
                a[10] += 1
        elif r["type"] == "error":
            a[10] += 1
        a[11] += float(r["cost_usd"] or 0)
        a[12] += r["tokens_in"] or 0
        a[13] += r["tokens_out"] or 0
        end = float(ts) + float(r["latency_ms"] or 0)
        if end > a[14]:
            a[14] = end
        if r["tags"]:
            a[15].update(r["tags"])
    ordered = sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0]))[:limit]
    return [{"start_time": a[0], "trace_id": tid, "name": a[2], "agent_id": a[4], "user_id": a[5],
             "session_id": a[6], "release": a[7], "events": a[8], "calls": a[9], "errors": a[10],
             "cost_usd": _json_number(a[11]), "tokens_in": a[12], "tokens_out": a[13],
             "latency_ms": _json_number(a[14] - a[0]), "tags": ",".join(sorted(a[15]))}
            for tid, a in ordered]


OBSERVATION_COLUMNS = [("time", "time"), ("type", "string"), ("trace_id", "string"), ("span_id", "string"),
                       ("parent_span_id", "string"), ("name", "string"), ("agent_id", "string"),
                       ("provider", "string"), ("model", "string"), ("tokens_in", "number"),
                       ("tokens_out", "number"), ("cost_usd", "number"), ("latency_ms", "number"),
                       ("status_code", "number"), ("error_type", "string"), ("message", "string")]


def observations_query(db: str, project: str, tr: TimeRange, filters: list[Filter], limit: int) -> tuple[str, dict]:
    sql = Sql(project)
    conds = [f"project_id = {sql.project}", sql.time("timestamp", tr), "type IN ('llm_call', 'span', 'error')",
             *sql.filters(filters, EVENT_COLS)]
    text = f"""
SELECT toUnixTimestamp64Milli(timestamp) AS time, type, trace_id, span_id, parent_span_id, name, agent_id,
       provider, model, tokens_in, tokens_out, cost_usd, latency_ms, status_code, error_type, message
FROM {table(db, 'events')} FINAL WHERE {where(conds)}
ORDER BY timestamp DESC, event_id LIMIT {sql.bind(limit, 'UInt32')}"""
    return text, sql.params


SCORE_COLUMNS = [("time", "time"), ("name", "string"), ("value", "number"), ("string_value", "string"),
                 ("passed", "string"), ("evaluator", "string"), ("trace_id", "string"), ("agent_id", "string"),
                 ("comment", "string")]


def scores_query(db: str, project: str, tr: TimeRange, filters: list[Filter], limit: int) -> tuple[str, dict]:
    sql = Sql(project)
    conds = [f"project_id = {sql.project}", sql.time("timestamp", tr), *sql.filters(filters, SCORE_COLS)]
    text = f"""
SELECT toUnixTimestamp64Milli(timestamp) AS time, name, value, string_value,
       if(passed IS NULL, '', if(passed, 'true', 'false')) AS passed, evaluator, trace_id, agent_id, comment
FROM {table(db, 'scores')} FINAL WHERE {where(conds)}
ORDER BY timestamp DESC, event_id LIMIT {sql.bind(limit, 'UInt32')}"""
    return text, sql.params


COST_COLUMNS = [("day", "time"), ("model", "string"), ("cost_usd", "number"), ("calls", "number"),
                ("tokens_in", "number"), ("tokens_out", "number"), ("day_cost_usd", "number")]


def costs_query(db: str, project: str, tr: TimeRange, filters: list[Filter]) -> tuple[str, dict, str]:
    """Cost per UTC day and model, from rollups unless a filter needs the raw events."""
    sql = Sql(project)
    if all(f.key in ROLLUP_COLS for f in filters):
        src, used = rollup_source(sql, db, tr, 86_400_000, filters)
        text = f"""
SELECT toUnixTimestamp(toStartOfDay(window_start)) * 1000 AS day, model, sum(cost_usd) AS cost_usd,
       sum(calls) AS calls, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out
FROM {src} GROUP BY day, model HAVING sum(calls) > 0 ORDER BY day, model LIMIT 100000"""
        return text, sql.params, "rollups"
    conds = [f"project_id = {sql.project}", sql.time("timestamp", tr), "type = 'llm_call'",
             *sql.filters(filters, EVENT_COLS)]
    text = f"""
SELECT toUnixTimestamp(toStartOfDay(timestamp)) * 1000 AS day, model, sum(ifNull(cost_usd, 0)) AS cost_usd,
       count() AS calls, sum(ifNull(tokens_in, 0)) AS tokens_in, sum(ifNull(tokens_out, 0)) AS tokens_out
FROM {table(db, 'events')} FINAL WHERE {where(conds)}
GROUP BY day, model ORDER BY day, model LIMIT 100000"""
    return text, sql.params, "events"


ALERT_COLUMNS = [("time", "time"), ("rule_id", "string"), ("rule_type", "string"), ("agent_id", "string"),
                 ("subject", "string"), ("state", "string"), ("value", "number"), ("threshold", "number"),
                 ("message", "string")]


def alerts_table_query(db: str, project: str, tr: TimeRange, filters: list[Filter], limit: int) -> tuple[str, dict]:
    sql = Sql(project)
    conds = [f"project_id = {sql.project}", sql.time("timestamp", tr), "channel = ''",
             *sql.filters(filters, ALERT_COLS)]
    text = f"""
SELECT toUnixTimestamp64Milli(timestamp) AS time, rule_id, rule_type, agent_id, subject, state, value, threshold,
       message
FROM {table(db, 'alerts')} FINAL WHERE {where(conds)}
ORDER BY timestamp DESC, alert_id LIMIT {sql.bind(limit, 'UInt32')}"""
    return text, sql.params


# -- variables / ad hoc values -------------------------------------------------------------

# Variable name -> (filter key it feeds, value expression, table).
VARIABLES = {
    "models": ("model", "model", "rollups_1m"),
    "providers": ("provider", "provider", "rollups_1m"),
    "agents": ("agent", "agent_id", "rollups_1m"),
    "users": ("user_id", "user_id", "events"),
    "sessions": ("session_id", "session_id", "events"),
    "names": ("name", "name", "events"),
    "releases": ("release", "release", "events"),
    "versions": ("version", "version", "events"),
    "tags": ("tag", "arrayJoin(tags)", "events"),
    "types": ("type", "type", "events"),
    "projects": ("project", "project_id", "none"),
}
KEY_TO_VARIABLE = {v[0]: k for k, v in VARIABLES.items()}


def values_query(db: str, project: str, variable: str, tr: TimeRange, limit: int = 1000) -> tuple[str, dict]:
    _, expr, tbl = VARIABLES[variable]
    sql = Sql(project)
    tcol = "window_start" if tbl == "rollups_1m" else "timestamp"
    conds = [f"project_id = {sql.project}", sql.time(tcol, tr)]
    # Distinct values need no FINAL: a duplicate row carries the same value.
    text = (f"SELECT DISTINCT {expr} AS item FROM {table(db, tbl)} WHERE {where(conds)} "
            f"HAVING item != '' ORDER BY item LIMIT {sql.bind(limit, 'UInt32')}")
    if variable == "agents":
        text = (f"SELECT item FROM ({text} UNION DISTINCT SELECT DISTINCT agent_id AS item FROM "
                f"{table(db, 'agents')} WHERE project_id = {sql.project}) WHERE item != '' "
                f"ORDER BY item LIMIT {sql.bind(limit, 'UInt32')}")
    return text, sql.params


# -- REST ------------------------------------------------------------------------------------

EVENT_FIELDS = ("event_id", "type", "timestamp", "received_at", "project_id", "agent_id", "trace_id", "span_id",
                "parent_span_id", "session_id", "user_id", "release", "version", "name", "tags", "provider",
                "model", "model_family", "tokens_in", "tokens_out", "tokens_cached", "latency_ms", "ttft_ms",
                "status_code", "cost_usd", "pricing_status", "finish_reason", "error_type", "message", "status",
                "value", "source", "metadata")
SEARCH_COLS = ("message", "error_type", "name", "model", "agent_id", "metadata")


def _event_conds(sql: Sql, tr: TimeRange, filters: list[Filter], search: str | None) -> list[str]:
    conds = [f"project_id = {sql.project}", sql.time("timestamp", tr), *sql.filters(filters, EVENT_COLS)]
    if search:
        s = sql.bind(search, "String")
        conds.append(" OR ".join(f"positionCaseInsensitive({c}, {s}) > 0" for c in SEARCH_COLS))
    return conds


def events_query(db: str, project: str, tr: TimeRange, filters: list[Filter], search: str | None, limit: int,
                 cursor: tuple[int, str] | None) -> tuple[str, dict]:
    """Newest first; the cursor is the (timestamp ms, event_id) of the last row already seen."""
    sql = Sql(project)
    conds = _event_conds(sql, tr, filters, search)
    if cursor:
        ts = f"fromUnixTimestamp64Milli({sql.bind(cursor[0], 'Int64')}, 'UTC')"
        eid = sql.bind(cursor[1], "UUID")
        conds.append(f"timestamp < {ts} OR (timestamp = {ts} AND event_id < {eid})")
    text = (f"SELECT {', '.join(EVENT_FIELDS)}, toUnixTimestamp64Milli(timestamp) AS ts_ms, "
            f"type AS event_type FROM {table(db, 'events')} FINAL WHERE {where(conds)} "
            f"ORDER BY timestamp DESC, event_id DESC LIMIT {sql.bind(limit + 1, 'UInt32')}")
    return text, sql.params


def export_query(db: str, project: str, tr: TimeRange, filters: list[Filter], search: str | None,
                 limit: int) -> tuple[str, dict]:
    sql = Sql(project)
    conds = _event_conds(sql, tr, filters, search)
    # Hour order follows the table's sorting key, so ClickHouse reads in order instead of sorting the
    # whole export in memory; within an hour rows come by agent.
    text = (f"SELECT {', '.join(EVENT_FIELDS)} FROM {table(db, 'events')} FINAL WHERE {where(conds)} "
            f"ORDER BY toStartOfHour(timestamp), agent_id, event_id LIMIT {sql.bind(limit, 'UInt64')}")
    return text, sql.params


def _rollup_conds(sql: Sql, tr: TimeRange, filters: list[Filter]) -> list[str]:
    return [f"project_id = {sql.project}", sql.time("window_start", tr), *sql.filters(filters, ROLLUP_COLS)]


_ROLLUP_STATS = """sum(calls) AS calls, sum(errors) AS errors, sum(error_events) AS error_events,
       sum(errors) / nullIf(sum(calls), 0) AS error_rate, sum(cost_usd) AS cost_usd, sum(tokens_in) AS tokens_in,
       sum(tokens_out) AS tokens_out, sum(tokens_cached) AS tokens_cached,
       sum(latency_ms_sum) / nullIf(sum(arraySum(mapValues(latency_sketch))), 0) AS avg_latency_ms,
       {p50} AS p50_latency_ms, {p95} AS p95_latency_ms, {p99} AS p99_latency_ms"""


def _rollup_stats() -> str:
    # A summary is one group over the whole range: sumMap keeps it at one entry per bucket, where
    # concatenating (sketch_quantile_sql) would hold every minute's buckets at once.
    return _ROLLUP_STATS.format(**{k: clickhouse_quantile_sql("sumMap(latency_sketch)", q)
                                   for k, q in QUANTILES.items()})


def summary_query(db: str, project: str, tr: TimeRange, filters: list[Filter]) -> tuple[str, dict]:
    sql = Sql(project)
    text = (f"SELECT {_rollup_stats()}, uniqExactIf(agent_id, calls + error_events > 0) AS agents "
            f"FROM {table(db, 'rollups_1m')} FINAL WHERE {where(_rollup_conds(sql, tr, filters))}")
    return text, sql.params


BUCKETS = {"minute": "toStartOfMinute", "hour": "toStartOfHour", "day": "toStartOfDay"}


def timeseries_query(db: str, project: str, tr: TimeRange, filters: list[Filter], bucket: str) -> tuple[str, dict]:
    sql = Sql(project)
    fn = BUCKETS[bucket]
    text = (f"SELECT {fn}(window_start) AS time, {_rollup_stats()} FROM {table(db, 'rollups_1m')} FINAL "
            f"WHERE {where(_rollup_conds(sql, tr, filters))} GROUP BY time ORDER BY time LIMIT 100000")
    return text, sql.params


def agents_query(db: str, project: str) -> tuple[str, dict]:
    sql = Sql(project)
    text = (f"SELECT agent_id, argMax(name, last_seen) AS name, max(registered_at) AS registered_at, "
            f"max(last_seen) AS last_seen, argMax(metadata, last_seen) AS metadata, "
            f"toUnixTimestamp64Milli(max(last_seen)) AS last_seen_ms "
            f"FROM {table(db, 'agents')} WHERE project_id = {sql.project} GROUP BY agent_id ORDER BY agent_id "
            f"LIMIT 10000")
    return text, sql.params


def rules_query(db: str, project: str) -> tuple[str, dict]:
    sql = Sql(project)
    text = (f"SELECT id, argMax(type, version) AS type, argMax(rule, version) AS rule, "
            f"argMax(enabled, version) AS enabled, argMax(deleted, version) AS deleted, "
            f"argMax(updated_at, version) AS updated_at FROM {table(db, 'alert_rules')} "
            f"WHERE project_id = {sql.project} GROUP BY id HAVING NOT argMax(deleted, version) ORDER BY id LIMIT 10000")
    return text, sql.params


def rule_states_query(db: str, project: str) -> tuple[str, dict]:
    """Latest transition per rule and subject (transition rows have channel '')."""
    sql = Sql(project)
    text = (f"SELECT rule_id, subject, argMax(state, (timestamp, recorded_at)) AS state, max(timestamp) AS since, "
            f"argMax(message, (timestamp, recorded_at)) AS message, argMax(value, (timestamp, recorded_at)) AS value "
            f"FROM {table(db, 'alerts')} FINAL WHERE project_id = {sql.project} AND channel = '' "
            f"GROUP BY rule_id, subject ORDER BY rule_id, subject LIMIT 100000")
    return text, sql.params


HISTORY_FIELDS = ("alert_id", "rule_id", "rule_type", "agent_id", "subject", "state", "value", "threshold",
                  "window_minutes", "message", "timestamp", "replay", "channel", "target", "attempt", "outcome",
                  "error", "recorded_at")


def history_query(db: str, project: str, tr: TimeRange, filters: list[Filter], rule_id: str | None,
                  kind: str | None, limit: int) -> tuple[str, dict]:
    sql = Sql(project)
    conds = [f"project_id = {sql.project}", sql.time("timestamp", tr), *sql.filters(filters, ALERT_COLS)]
    if rule_id:
        conds.append(f"rule_id = {sql.bind(rule_id, 'String')}")
    if kind == "transition":
        conds.append("channel = ''")
    elif kind == "delivery":
        conds.append("channel != ''")
    text = (f"SELECT {', '.join(HISTORY_FIELDS)}, if(channel = '', 'transition', 'delivery') AS kind "
            f"FROM {table(db, 'alerts')} FINAL WHERE {where(conds)} "
            f"ORDER BY timestamp DESC, recorded_at DESC, attempt DESC LIMIT {sql.bind(limit, 'UInt32')}")
    return text, sql.params


def trace_spans_query(db: str, project: str, trace_id: str) -> tuple[str, dict]:
    sql = Sql(project)
    t = sql.bind(trace_id, "String")
    text = (f"SELECT span_id, parent_span_id, name, kind, agent_id, start_time, end_time, duration_ms, status, "
            f"status_message, attributes, toString(event_id) AS event_id FROM {table(db, 'spans')} FINAL "
            f"WHERE project_id = {sql.project} AND trace_id = {t} ORDER BY start_time, span_id LIMIT 10000")
    return text, sql.params


def trace_events_query(db: str, project: str, trace_id: str) -> tuple[str, dict]:
    sql = Sql(project)
    t = sql.bind(trace_id, "String")
    text = (f"SELECT {', '.join(EVENT_FIELDS)} FROM {table(db, 'events')} FINAL "
            f"WHERE project_id = {sql.project} AND trace_id = {t} ORDER BY timestamp, event_id LIMIT 10000")
    return text, sql.params

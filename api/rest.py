"""REST under /api, compatible with the seed API: events (cursor pages, exports), stats, agents,
alerts, alert history, trace trees."""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from datetime import timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Response

from api import queries as q
from api.db import Db
from api.errors import ApiError
from api.export import stream_export
from api.params import Filter, TimeRange, make_filter, time_range
from schemas.keys import ApiKey


def jr(obj: Any) -> Response:
    return Response(orjson.dumps(obj), media_type="application/json")


def _filters(**values: str | None) -> list[Filter]:
    out = []
    for key, value in values.items():
        if value not in (None, ""):
            f = make_filter(key, value.split(",") if "," in value else value)
            if f:
                out.append(f)
    return out


def encode_cursor(ts_ms: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{ts_ms}:{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, eid = raw.split(":", 1)
        return int(ts), str(uuid.UUID(eid))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad cursor: pass next_cursor from the previous page unchanged") from None


def _json_field(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def router(db: Db, auth: Any) -> APIRouter:
    r = APIRouter(prefix="/api", tags=["rest"])
    dbn = db.database

    def event_filters(agent_id, provider, model, type_, session_id, user_id) -> list[Filter]:
        return _filters(agent=agent_id, provider=provider, model=model, type=type_, session_id=session_id,
                        user_id=user_id)

    @r.get("/events", summary="Raw events, newest first, cursor pagination")
    async def events(key: ApiKey = Depends(auth), agent_id: str | None = None,
                     from_: str | None = Query(None, alias="from"), to: str | None = None,
                     provider: str | None = None, model: str | None = None,
                     type: str | None = Query(None, description="llm_call|error|heartbeat|span|score"),
                     session_id: str | None = None, user_id: str | None = None,
                     search: str | None = Query(None, max_length=1024), limit: int = Query(100, ge=1, le=1000),
                     cursor: str | None = None) -> Response:
        tr = time_range(from_, to, default=timedelta(days=30))
        cur = decode_cursor(cursor) if cursor else None
        sql, params = q.events_query(dbn, key.project_id, tr,
                                     event_filters(agent_id, provider, model, type, session_id, user_id),
                                     search, limit, cur)
        rows = await db.rows("events_page", sql, params)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = encode_cursor(rows[-1]["ts_ms"], rows[-1]["event_id"]) if more and rows else None
        for row in rows:
            row.pop("ts_ms", None)
            row["metadata"] = _json_field(row.get("metadata"))
        return jr({"events": rows, "count": len(rows), "next_cursor": nxt})

    @r.get("/events/export", summary="Stream raw events as csv, json or ndjson")
    async def export(key: ApiKey = Depends(auth), format: str = Query("csv", description="csv|json|ndjson"),
                     agent_id: str | None = None, from_: str | None = Query(None, alias="from"),
                     to: str | None = None, provider: str | None = None, model: str | None = None,
                     type: str | None = None, session_id: str | None = None, user_id: str | None = None,
                     search: str | None = Query(None, max_length=1024),
                     limit: int | None = Query(None, ge=1)):
        tr = time_range(from_, to, default=timedelta(days=30))
        cap = db.limits.export_max_rows
        if limit is not None and limit > cap:
            raise ApiError(400, f"bad limit {limit}: exports are capped at {cap} rows")
        sql, params = q.export_query(dbn, key.project_id, tr,
                                     event_filters(agent_id, provider, model, type, session_id, user_id),
                                     search, limit or cap)
        return await stream_export(db, sql, params, format)

    def rollup_filters(agent_id, provider, model) -> list[Filter]:
        return _filters(agent=agent_id, provider=provider, model=model)

    @r.get("/stats/summary", summary="Totals over a time range (from rollups)")
    async def summary(key: ApiKey = Depends(auth), agent_id: str | None = None, provider: str | None = None,
                      model: str | None = None, from_: str | None = Query(None, alias="from"),
                      to: str | None = None) -> Response:
        tr = time_range(from_, to)
        sql, params = q.summary_query(dbn, key.project_id, tr, rollup_filters(agent_id, provider, model))
        rows = await db.rows("stats_summary", sql, params)
        return jr({**_range_doc(tr), **(rows[0] if rows else {})})

    @r.get("/stats/timeseries", summary="Totals per minute, hour or day (from rollups)")
    async def timeseries(key: ApiKey = Depends(auth), bucket: str = "hour", agent_id: str | None = None,
                         provider: str | None = None, model: str | None = None,
                         from_: str | None = Query(None, alias="from"), to: str | None = None) -> Response:
        if bucket not in q.BUCKETS:
            raise ApiError(400, f"bad bucket {bucket!r}; one of: {', '.join(q.BUCKETS)}")
        tr = time_range(from_, to)
        sql, params = q.timeseries_query(dbn, key.project_id, tr, rollup_filters(agent_id, provider, model), bucket)
        rows = await db.rows(f"stats_timeseries_{bucket}", sql, params)
        return jr({**_range_doc(tr), "bucket": bucket, "points": rows})

    @r.get("/agents", summary="Agents with status up/down from when they were last seen")
    async def agents(key: ApiKey = Depends(auth),
                     down_after_minutes: int | None = Query(None, ge=1, le=7 * 24 * 60)) -> Response:
        sql, params = q.agents_query(dbn, key.project_id)
        rows = await db.rows("agents", sql, params)
        window = (down_after_minutes or db.limits.agent_down_after_minutes) * 60_000
        now = int(time.time() * 1000)
        for row in rows:
            row["status"] = "up" if now - row.pop("last_seen_ms") <= window else "down"
            row["metadata"] = _json_field(row.get("metadata"))
        return jr({"agents": rows, "down_after_minutes": window // 60_000})

    @r.get("/alerts", summary="Alert rules with their current state")
    async def alerts(key: ApiKey = Depends(auth)) -> Response:
        sql, params = q.rules_query(dbn, key.project_id)
        rules = await db.rows("alert_rules", sql, params)
        sql, params = q.rule_states_query(dbn, key.project_id)
        states = await db.rows("alert_states", sql, params)
        by_rule: dict[str, list[dict[str, Any]]] = {}
        for s in states:
            by_rule.setdefault(s["rule_id"], []).append(s)
        out = []
        for rule in rules:
            doc = _json_field(rule["rule"])
            doc = doc if isinstance(doc, dict) else {}
            subjects = by_rule.get(rule["id"], [])
            firing = [s for s in subjects if s["state"] == "fired"]
            out.append({**doc, "id": rule["id"], "type": rule["type"], "rule_type": rule["type"],
                        "enabled": bool(rule["enabled"]), "updated_at": rule["updated_at"],
                        "state": "firing" if firing else "ok",
                        "firing": [{"subject": s["subject"], "since": s["since"], "value": s["value"],
                                    "message": s["message"]} for s in firing],
                        "last_transition": max((s["since"] for s in subjects), default=None)})
        return jr({"alerts": out})

    @r.get("/alert-history", summary="Alert transitions and delivery attempts, newest first")
    async def alert_history(key: ApiKey = Depends(auth), from_: str | None = Query(None, alias="from"),
                            to: str | None = None, rule_id: str | None = None, agent_id: str | None = None,
                            kind: str | None = Query(None, description="transition|delivery"),
                            limit: int = Query(100, ge=1, le=10_000)) -> Response:
        if kind not in (None, "", "transition", "delivery"):
            raise ApiError(400, f"bad kind {kind!r}; one of: transition, delivery")
        tr = time_range(from_, to, default=timedelta(days=7))
        sql, params = q.history_query(dbn, key.project_id, tr, _filters(agent=agent_id), rule_id, kind, limit)
        return jr({"history": await db.rows("alert_history", sql, params)})

    @r.get("/traces/{trace_id}", summary="One trace as a span tree")
    async def trace(trace_id: str, key: ApiKey = Depends(auth)) -> Response:
        if len(trace_id) > 256:
            raise ApiError(400, "trace_id is at most 256 characters")
        sql, params = q.trace_spans_query(dbn, key.project_id, trace_id)
        spans = await db.rows("trace_spans", sql, params)
        sql, params = q.trace_events_query(dbn, key.project_id, trace_id)
        events = await db.rows("trace_events", sql, params)
        if not spans and not events:
            raise ApiError(404, f"no trace {trace_id!r} in this project")
        return jr(span_tree(trace_id, spans, events))

    return r


def _range_doc(tr: TimeRange) -> dict[str, str]:
    return {"from": tr.start.isoformat().replace("+00:00", "Z"), "to": tr.end.isoformat().replace("+00:00", "Z")}


def _is_ancestor(nodes: dict[str, dict[str, Any]], node: dict[str, Any], parent: dict[str, Any]) -> bool:
    """True when `node` already sits above `parent` (a parent loop in bad data): keeps the tree a tree."""
    seen: set[int] = set()
    cur: dict[str, Any] | None = parent
    while cur is not None and id(cur) not in seen:
        if cur is node:
            return True
        seen.add(id(cur))
        cur = nodes.get(cur.get("parent_span_id") or "")
    return False


def span_tree(trace_id: str, spans: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Spans nested by parent_span_id; events of a span sit in its `events`; orphans become roots."""
    nodes: dict[str, dict[str, Any]] = {}
    for s in spans:
        s["attributes"] = _json_field(s.get("attributes"))
        nodes[s["span_id"]] = {**s, "children": [], "events": []}
    loose: list[dict[str, Any]] = []
    for e in events:
        e["metadata"] = _json_field(e.get("metadata"))
        if e["type"] == "span":
            if e["span_id"] and e["span_id"] not in nodes:
                nodes[e["span_id"]] = {"span_id": e["span_id"], "parent_span_id": e["parent_span_id"],
                                       "name": e["name"], "agent_id": e["agent_id"], "start_time": e["timestamp"],
                                       "status": e["status"], "children": [], "events": []}
            continue
        owner = nodes.get(e["span_id"]) or nodes.get(e["parent_span_id"])
        (owner["events"] if owner else loose).append(e)
    roots = []
    for n in nodes.values():
        parent = nodes.get(n.get("parent_span_id") or "")
        if parent is not None and not _is_ancestor(nodes, n, parent):
            parent["children"].append(n)
        else:
            roots.append(n)
    return {"trace_id": trace_id, "spans": roots, "span_count": len(nodes), "events": loose,
            "event_count": len(events)}

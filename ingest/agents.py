"""Agent registration and heartbeats: both are `heartbeat` events on the events topic.

The sinks fill the agents table from them (`status="registered"` and `name` on registration).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from schemas.events import EventValidationError, Heartbeat, describe


def _heartbeat(doc: dict[str, Any]) -> Heartbeat:
    try:
        return Heartbeat.model_validate(doc)
    except ValidationError as exc:
        raise EventValidationError(describe(exc)) from None


def _body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise EventValidationError([{"field": "body", "message": "must be a JSON object"}])
    if not body.get("agent_id"):
        raise EventValidationError([{"field": "agent_id", "message": "required"}])
    return body


def registration(body: Any) -> Heartbeat:
    body = _body(body)
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise EventValidationError([{"field": "metadata", "message": "must be an object"}])
    return _heartbeat({"agent_id": body["agent_id"], "name": body.get("name") or body["agent_id"],
                       "status": "registered", "metadata": metadata, "tags": body.get("tags") or [],
                       "version": body.get("version"), "release": body.get("release")})


def heartbeat(body: Any) -> Heartbeat:
    body = _body(body)
    doc = {k: body[k] for k in ("agent_id", "name", "metadata", "tags", "version", "release", "timestamp",
                                "event_id") if body.get(k) is not None}
    return _heartbeat({**doc, "status": body.get("status") or "ok"})

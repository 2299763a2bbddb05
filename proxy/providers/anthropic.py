"""Anthropic Messages API: cache reads and writes are input tokens too."""

from __future__ import annotations

from typing import Any

from proxy.providers.base import Usage, as_int, error_field, get


def _usage(u: Any, usage: Usage) -> None:
    if not isinstance(u, dict):
        return
    if "input_tokens" in u:
        base = as_int(u.get("input_tokens"))
        read = as_int(u.get("cache_read_input_tokens"))
        created = as_int(u.get("cache_creation_input_tokens"))
        usage.tokens_in = None if base is None else base + (read or 0) + (created or 0)
        if "cache_read_input_tokens" in u:
            usage.tokens_cached = read
    if "output_tokens" in u:  # cumulative in message_delta events
        usage.tokens_out = as_int(u.get("output_tokens"))


def from_json(doc: Any, usage: Usage) -> None:
    if not isinstance(doc, dict):
        return
    if isinstance(doc.get("model"), str):
        usage.model = doc["model"]
    _usage(doc.get("usage"), usage)
    if isinstance(doc.get("stop_reason"), str):
        usage.finish_reason = doc["stop_reason"]
    if doc.get("type") == "error":
        usage.error_type = error_field(doc) or "error"


def from_event(name: str, doc: Any, usage: Usage) -> None:
    if not isinstance(doc, dict):
        return
    kind = doc.get("type")
    if kind == "message_start":
        from_json(doc.get("message"), usage)
    elif kind == "message_delta":
        _usage(doc.get("usage"), usage)
        reason = get(doc, "delta", "stop_reason")
        if isinstance(reason, str):
            usage.finish_reason = reason
    elif kind == "error":
        usage.error_type = error_field(doc) or "error"


def error_type(doc: Any) -> str | None:
    return error_field(doc)

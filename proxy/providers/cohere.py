"""Cohere chat: v2 (JSON, SSE with a `message-end` event) and v1 (JSON, newline-delimited stream)."""

from __future__ import annotations

from typing import Any

from proxy.providers.base import Usage, as_int, get


def _usage(u: Any, usage: Usage) -> None:
    if not isinstance(u, dict):
        return
    # `tokens` counts what the model saw; `billed_units` is the fallback older answers carry.
    counts = u.get("tokens") if isinstance(u.get("tokens"), dict) else u.get("billed_units")
    if isinstance(counts, dict):
        usage.tokens_in = as_int(counts.get("input_tokens"))
        usage.tokens_out = as_int(counts.get("output_tokens"))
    if "cached_tokens" in u:
        usage.tokens_cached = as_int(u.get("cached_tokens"))


def from_json(doc: Any, usage: Usage) -> None:
    if not isinstance(doc, dict):
        return
    if isinstance(doc.get("model"), str):
        usage.model = doc["model"]
    _usage(doc.get("usage") or doc.get("meta"), usage)
    if isinstance(doc.get("finish_reason"), str):
        usage.finish_reason = doc["finish_reason"]


def from_event(name: str, doc: Any, usage: Usage) -> None:
    if not isinstance(doc, dict):
        return
    kind = doc.get("type") or doc.get("event_type")
    if kind == "message-end":
        _usage(get(doc, "delta", "usage"), usage)
        reason = get(doc, "delta", "finish_reason")
        if isinstance(reason, str):
            usage.finish_reason = reason
    elif kind == "stream-end":
        if isinstance(doc.get("finish_reason"), str):
            usage.finish_reason = doc["finish_reason"]
        from_json(doc.get("response"), usage)


def error_type(doc: Any) -> str | None:
    return None  # Cohere errors carry only a message; the status code names the failure

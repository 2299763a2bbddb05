"""Google Gemini generateContent / streamGenerateContent (each stream chunk is a full response object)."""

from __future__ import annotations

from typing import Any

from proxy.providers.base import Usage, as_int, error_field


def from_json(doc: Any, usage: Usage) -> None:
    if isinstance(doc, list):  # streamGenerateContent without alt=sse answers one JSON array
        for item in doc:
            from_json(item, usage)
        return
    if not isinstance(doc, dict):
        return
    if isinstance(doc.get("modelVersion"), str):
        usage.model = doc["modelVersion"]
    u = doc.get("usageMetadata")
    if isinstance(u, dict):
        # promptTokenCount already includes cachedContentTokenCount.
        usage.tokens_in = as_int(u.get("promptTokenCount"))
        out = as_int(u.get("candidatesTokenCount"))
        thoughts = as_int(u.get("thoughtsTokenCount"))
        usage.tokens_out = None if out is None and thoughts is None else (out or 0) + (thoughts or 0)
        usage.tokens_cached = as_int(u.get("cachedContentTokenCount"))
    for c in doc.get("candidates") or ():
        if isinstance(c, dict) and isinstance(c.get("finishReason"), str):
            usage.finish_reason = c["finishReason"]
    usage.error_type = error_field(doc) or usage.error_type


def from_event(name: str, doc: Any, usage: Usage) -> None:
    from_json(doc, usage)


def error_type(doc: Any) -> str | None:
    return error_field(doc)

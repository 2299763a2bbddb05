"""OpenAI wire format (chat completions, completions, responses, embeddings); Mistral shares it."""

from __future__ import annotations

from typing import Any

from proxy.providers.base import Usage, as_int, error_field, get


def _usage(u: Any, usage: Usage) -> None:
    if not isinstance(u, dict):
        return
    if "prompt_tokens" in u:  # chat completions, completions, embeddings
        usage.tokens_in = as_int(u.get("prompt_tokens"))
        usage.tokens_out = as_int(u.get("completion_tokens"))
        usage.tokens_cached = as_int(get(u, "prompt_tokens_details", "cached_tokens"))
    elif "input_tokens" in u:  # responses API
        usage.tokens_in = as_int(u.get("input_tokens"))
        usage.tokens_out = as_int(u.get("output_tokens"))
        usage.tokens_cached = as_int(get(u, "input_tokens_details", "cached_tokens"))


def _finish(doc: dict, usage: Usage) -> None:
    choices = doc.get("choices")
    if isinstance(choices, list):
        for c in choices:
            if isinstance(c, dict) and isinstance(c.get("finish_reason"), str):
                usage.finish_reason = c["finish_reason"]


def from_json(doc: Any, usage: Usage) -> None:
    if not isinstance(doc, dict):
        return
    if isinstance(doc.get("model"), str):
        usage.model = doc["model"]
    _usage(doc.get("usage"), usage)
    _finish(doc, usage)
    if doc.get("object") == "response":
        reason = get(doc, "incomplete_details", "reason")
        usage.finish_reason = reason if isinstance(reason, str) else doc.get("status") or usage.finish_reason
    usage.error_type = error_field(doc) or usage.error_type
    if doc.get("object") == "error" and isinstance(doc.get("type"), str):  # Mistral's error shape
        usage.error_type = doc["type"]


def from_event(name: str, doc: Any, usage: Usage) -> None:
    if not isinstance(doc, dict):
        return
    kind = doc.get("type")
    if isinstance(kind, str) and kind.startswith("response."):
        if isinstance(doc.get("response"), dict):
            from_json(doc["response"], usage)
        if kind in ("response.failed", "error"):
            usage.error_type = error_field(doc.get("response") or doc) or "response_failed"
        return
    from_json(doc, usage)


def error_type(doc: Any) -> str | None:
    return error_field(doc)

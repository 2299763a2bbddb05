"""One proxied call -> one normalized `llm_call` event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from proxy.identity import Identity
from proxy.providers import Usage
from schemas.events import LlmCall
from schemas.normalize import normalize_event


@dataclass(slots=True)
class Call:
    provider: str
    started_wall: float  # time.time() at arrival
    latency_s: float | None = None
    ttft_s: float | None = None
    status_code: int | None = None
    error_type: str | None = None
    stream: bool = False
    response_bytes: int = 0
    request_model: str | None = None
    request_body: bytes | None = None  # only when body capture is on
    response_body: bytes | None = None


def _truncate(body: bytes | None, limit: int) -> str | None:
    if body is None:
        return None
    return body[:limit].decode("utf-8", errors="replace")


def build_event(call: Call, usage: Usage, ident: Identity, capture_limit: int | None = None) -> LlmCall:
    metadata: dict[str, Any] = {}
    if capture_limit is not None:
        for name, body in (("request_body", call.request_body), ("response_body", call.response_body)):
            text = _truncate(body, capture_limit)
            if text is not None:
                metadata[name] = text
    if ident.key_valid is False:
        metadata["agenttrace_key"] = "invalid"
    failed = call.status_code is None or call.status_code >= 400
    event = LlmCall(
        timestamp=datetime.fromtimestamp(call.started_wall, UTC),
        agent_id=ident.agent_id, trace_id=ident.trace_id, session_id=ident.session_id, user_id=ident.user_id,
        tags=ident.tags, metadata=metadata, source="proxy", provider=call.provider,
        model=(usage.model or call.request_model or "unknown")[:256],
        tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, tokens_cached=usage.tokens_cached,
        latency_ms=None if call.latency_s is None else round(call.latency_s * 1000, 3),
        ttft_ms=None if call.ttft_s is None else round(call.ttft_s * 1000, 3),
        status_code=call.status_code, finish_reason=usage.finish_reason,
        error_type=call.error_type or usage.error_type or (f"http_{call.status_code}" if failed else None),
        stream=call.stream,
    )
    return normalize_event(event, ident.project_id)  # type: ignore[return-value]

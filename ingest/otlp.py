"""OTLP/HTTP traces (`POST /v1/traces`, protobuf or JSON) into `span` and `llm_call` events.

Both encodings are brought to the OTLP/JSON shape (hex ids, camelCase keys) and handled by one
code path. Every span becomes a `span` event; spans with OpenTelemetry GenAI attributes also
become an `llm_call` event. Event ids derive from trace and span id, so an exporter's retry of the
same spans carries the same ids (duplicates are recognisable downstream).
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from pydantic import ValidationError

from schemas.events import EventBase, LlmCall, Span, describe

_NS = uuid.UUID("5f0c1d2e-8a7b-4c3d-9e0f-a1b2c3d4e5f6")  # namespace of OTLP-derived event ids
_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_STATUS = {0: "unset", 1: "ok", 2: "error"}
AGENT_ATTRS = ("agenttrace.agent_id", "agent.id", "gen_ai.agent.id")
GENAI_MARKERS = ("gen_ai.system", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
                 "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")


class OtlpError(ValueError):
    pass


def decode_protobuf(body: bytes) -> dict[str, Any]:
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except Exception as exc:  # protobuf raises DecodeError, a bare Exception subclass
        raise OtlpError(f"body is not an OTLP ExportTraceServiceRequest: {exc}") from None
    doc = MessageToDict(req, use_integers_for_enums=True)
    # The protobuf JSON mapping writes bytes as base64; OTLP/JSON writes ids as hex.
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for k in ("traceId", "spanId", "parentSpanId"):
                    if span.get(k):
                        span[k] = base64.b64decode(span[k]).hex()
    return doc


def encode_response(rejected: int, message: str, protobuf: bool) -> bytes | dict[str, Any]:
    if protobuf:
        resp = ExportTraceServiceResponse()
        if rejected:
            resp.partial_success.CopyFrom(ExportTracePartialSuccess(rejected_spans=rejected, error_message=message))
        return resp.SerializeToString()
    return {"partialSuccess": {"rejectedSpans": rejected, "errorMessage": message}} if rejected else {}


def any_value(v: Any) -> Any:
    """An OTLP AnyValue (JSON form) as a plain Python value."""
    if not isinstance(v, dict):
        return v
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [any_value(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        return attributes((v["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def attributes(kvs: Any) -> dict[str, Any]:
    if not isinstance(kvs, list):
        return {}
    return {kv["key"]: any_value(kv.get("value")) for kv in kvs if isinstance(kv, dict) and "key" in kv}


def _time(nanos: Any) -> datetime | None:
    if nanos in (None, "", 0, "0"):
        return None
    return datetime.fromtimestamp(int(nanos) / 1e9, UTC)


def _enum(value: Any, names: dict[int, str], default: str) -> str:
    if isinstance(value, int):
        return names.get(value, default)
    if isinstance(value, str):  # enum names such as SPAN_KIND_SERVER / STATUS_CODE_ERROR
        tail = value.rsplit("_", 1)[-1].lower()
        return tail if tail in names.values() else default
    return default


def _first(attrs: dict[str, Any], *names: str) -> Any:
    for n in names:
        if attrs.get(n) not in (None, ""):
            return attrs[n]
    return None


def _int(v: Any) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def span_events(resource: dict[str, Any], scope: dict[str, Any], span: dict[str, Any]) -> list[EventBase]:
    """The events of one span; raises ValidationError/OtlpError when the span is unusable."""
    attrs = attributes(span.get("attributes"))
    both = {**resource, **attrs}
    agent = _first(attrs, *AGENT_ATTRS) or _first(resource, *AGENT_ATTRS) or resource.get("service.name") or "unknown_service"
    trace_id = (span.get("traceId") or "").lower() or None
    span_id = (span.get("spanId") or "").lower() or None
    if not trace_id or not span_id:
        raise OtlpError("traceId and spanId are required")
    start = _time(span.get("startTimeUnixNano"))
    end = _time(span.get("endTimeUnixNano"))
    duration = (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1e6 if start and end else None
    if duration is not None and duration < 0:
        duration = None
    status = span.get("status") or {}
    state = _enum(status.get("code", 0), _STATUS, "unset")
    common: dict[str, Any] = {
        "agent_id": str(agent),
        "trace_id": trace_id, "span_id": span_id,
        "parent_span_id": (span.get("parentSpanId") or "").lower() or None,
        "session_id": _first(both, "session.id", "gen_ai.conversation.id"),
        "user_id": _first(both, "user.id", "enduser.id"),
        "version": _first(resource, "service.version"),
        "release": _first(resource, "deployment.environment.name", "deployment.environment"),
        "metadata": {"resource": resource, "scope": {"name": scope.get("name"), "version": scope.get("version")}},
    }
    if start:
        common["timestamp"] = start
    out: list[EventBase] = [Span.model_validate({
        **common, "event_id": uuid.uuid5(_NS, f"{trace_id}/{span_id}/span"),
        "name": span.get("name") or "span", "kind": _enum(span.get("kind", 0), _KINDS, "unspecified"),
        "end_time": end, "duration_ms": duration, "status": state, "status_message": status.get("message") or None,
        "attributes": attrs,
    })]
    if any(m in attrs for m in GENAI_MARKERS):
        http_status = _int(_first(attrs, "http.response.status_code", "http.status_code"))
        finish = attrs.get("gen_ai.response.finish_reasons")
        out.append(LlmCall.model_validate({
            **common, "event_id": uuid.uuid5(_NS, f"{trace_id}/{span_id}/llm_call"),
            "name": span.get("name") or None,
            "provider": str(_first(attrs, "gen_ai.provider.name", "gen_ai.system") or "unknown"),
            "model": str(_first(attrs, "gen_ai.request.model", "gen_ai.response.model") or "unknown"),
            "tokens_in": _int(_first(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")),
            "tokens_out": _int(_first(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")),
            "tokens_cached": _int(_first(attrs, "gen_ai.usage.cache_read_input_tokens",
                                         "gen_ai.usage.cache_read.input_tokens")),
            "latency_ms": duration,
            # An errored span without an HTTP status still counts as a failed call.
            "status_code": http_status if http_status is not None else (500 if state == "error" else None),
            "error_type": _first(attrs, "error.type"),
            "finish_reason": finish[0] if isinstance(finish, list) and finish else (finish or None),
            "source": "otlp",
        }))
    return out


def traces_to_events(doc: Any) -> tuple[list[EventBase], int, list[str]]:
    """(events, rejected span count, messages) of an OTLP/JSON ExportTraceServiceRequest document."""
    if not isinstance(doc, dict):
        raise OtlpError("body must be an ExportTraceServiceRequest object")
    events: list[EventBase] = []
    rejected = 0
    messages: list[str] = []
    for rs in doc.get("resourceSpans") or []:
        resource = attributes((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
            scope = ss.get("scope") or ss.get("instrumentationLibrary") or {}
            for span in ss.get("spans") or []:
                try:
                    events.extend(span_events(resource, scope, span))
                except ValidationError as exc:
                    rejected += 1
                    messages.append("; ".join(f"{e['field']}: {e['message']}" for e in describe(exc)))
                except (OtlpError, TypeError, ValueError, AttributeError) as exc:
                    rejected += 1
                    messages.append(str(exc))
    return events, rejected, messages

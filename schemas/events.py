"""The event envelope and every event type on `agenttrace.events.v1` (pydantic v2).

`parse_event` accepts the seed API's shape too (`event_type`, `tokens: {input, output}`,
`status`) and returns a typed event; `EventValidationError.errors` names each bad field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

SCHEMA_VERSION = "1"
EVENT_TYPES = ("llm_call", "error", "heartbeat", "span", "score")

MAX_TOKENS = 1_000_000_000
MAX_LATENCY_MS = 7 * 24 * 3600 * 1000.0
Id = Annotated[str, Field(min_length=1, max_length=256)]
OptId = Annotated[str | None, Field(default=None, max_length=256)]
Tokens = Annotated[int | None, Field(default=None, ge=0, le=MAX_TOKENS)]
Millis = Annotated[float | None, Field(default=None, ge=0, le=MAX_LATENCY_MS)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class EventBase(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    event_id: UUID = Field(default_factory=uuid4, description="idempotency key everywhere downstream")
    timestamp: datetime = Field(default_factory=utcnow, description="event time")
    received_at: datetime | None = None
    project_id: Id = "default"
    agent_id: Id
    trace_id: OptId = None
    span_id: OptId = None
    parent_span_id: OptId = None
    session_id: OptId = None
    user_id: OptId = None
    release: OptId = None
    version: OptId = None
    name: OptId = None
    tags: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=64)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp", "received_at")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        # Naive times are taken as UTC; everything downstream compares in UTC.
        if v is None:
            return v
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> Any:
        # Accept {"k": "v"} tag maps as "k:v" strings, the shape Grafana's tag filters use.
        if isinstance(v, dict):
            return [f"{k}:{val}" for k, val in v.items()]
        return v

    def to_json(self) -> bytes:
        """The event as stored on the topic: JSON, UTC times ending in "Z", None fields left out.

        orjson straight from the field values is several times cheaper than pydantic's dump and writes
        the same document for the types an event holds; anything orjson cannot encode (bytes, sets,
        big ints, nested models in metadata...) takes pydantic's own serializer, as before.
        """
        try:
            return orjson.dumps({k: v for k, v in self.__dict__.items() if v is not None}, option=orjson.OPT_UTC_Z)
        except TypeError:
            return orjson.dumps(self.model_dump(mode="json", exclude_none=True))


class LlmCall(EventBase):
    type: Literal["llm_call"] = "llm_call"
    provider: Annotated[str, Field(max_length=64)] = "unknown"
    model: Annotated[str, Field(max_length=256)] = "unknown"
    model_family: str | None = Field(default=None, description="normalized model id used for pricing")
    tokens_in: Tokens = Field(default=None, description="input tokens, cached ones included")
    tokens_out: Tokens = None
    tokens_cached: Tokens = Field(default=None, description="part of tokens_in read from the provider's cache")
    latency_ms: Millis = None
    ttft_ms: Millis = None
    status_code: Annotated[int | None, Field(default=None, ge=0, le=999)] = None
    finish_reason: OptId = None
    error_type: OptId = None
    stream: bool | None = None
    cost_usd: float | None = Field(default=None, ge=0, description="null when the model or tokens are unknown")
    pricing_version: str | None = None
    pricing_status: Literal["priced", "unknown_model", "no_tokens"] | None = None
    source: Literal["proxy", "sdk", "otlp"] = "sdk"

    @property
    def is_error(self) -> bool:
        return self.status_code is not None and self.status_code >= 400


class ErrorEvent(EventBase):
    type: Literal["error"] = "error"
    error_type: Annotated[str, Field(max_length=256)] = "Error"
    message: Annotated[str, Field(max_length=16_384)] = ""
    stack: Annotated[str | None, Field(default=None, max_length=65_536)] = None
    status_code: Annotated[int | None, Field(default=None, ge=0, le=999)] = None


class Heartbeat(EventBase):
    type: Literal["heartbeat"] = "heartbeat"
    status: Annotated[str, Field(max_length=64)] = "ok"


class Span(EventBase):
    type: Literal["span"] = "span"
    name: Id = "span"
    kind: Annotated[str, Field(max_length=32)] = "internal"
    end_time: datetime | None = None
    duration_ms: Millis = None
    status: Literal["unset", "ok", "error"] = "unset"
    status_message: Annotated[str | None, Field(default=None, max_length=4096)] = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class Score(EventBase):
    type: Literal["score"] = "score"
    name: Id = "score"
    value: float | None = None
    string_value: Annotated[str | None, Field(default=None, max_length=1024)] = None
    passed: bool | None = None
    evaluator: OptId = None
    comment: Annotated[str | None, Field(default=None, max_length=4096)] = None


Event = Annotated[LlmCall | ErrorEvent | Heartbeat | Span | Score, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_CLASSES: dict[str, type[EventBase]] = {
    "llm_call": LlmCall, "error": ErrorEvent, "heartbeat": Heartbeat, "span": Span, "score": Score,
}


class EventValidationError(ValueError):
    """Raised by `parse_event`; `errors` is a list of {"field", "message"}."""

    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def describe(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        # Drop the union tag from the location ("llm_call.tokens_in" -> "tokens_in").
        loc = [str(p) for p in err["loc"] if p not in EVENT_TYPES]
        out.append({"field": ".".join(loc) or "event", "message": err["msg"]})
    return out


_SEED_TOKEN_KEYS = {"input": "tokens_in", "output": "tokens_out", "cached": "tokens_cached"}


def adapt_seed(raw: dict[str, Any]) -> dict[str, Any]:
    """Map the seed API's and SDK's field names onto the envelope's."""
    if "event_type" in raw or "tokens" in raw or "status" in raw or "input_tokens" in raw:
        raw = dict(raw)
        if "event_type" in raw and "type" not in raw:
            raw["type"] = raw.pop("event_type")
        tokens = raw.get("tokens")
        if isinstance(tokens, dict):
            raw.pop("tokens")
            for k, target in _SEED_TOKEN_KEYS.items():
                if k in tokens:
                    raw.setdefault(target, tokens[k])
        if "input_tokens" in raw:
            raw.setdefault("tokens_in", raw.pop("input_tokens"))
        if "output_tokens" in raw:
            raw.setdefault("tokens_out", raw.pop("output_tokens"))
        # SDK `status: 200` means the HTTP status of an llm call; heartbeats/spans keep `status`.
        if isinstance(raw.get("status"), int) and raw.get("type", "llm_call") in ("llm_call", "error"):
            raw.setdefault("status_code", raw.pop("status"))
    return raw


def parse_event(raw: Any) -> LlmCall | ErrorEvent | Heartbeat | Span | Score:
    if not isinstance(raw, dict):
        raise EventValidationError([{"field": "event", "message": "must be a JSON object"}])
    raw = adapt_seed(raw)
    if "type" not in raw:
        raise EventValidationError([{"field": "type", "message": f"required, one of {', '.join(EVENT_TYPES)}"}])
    if not isinstance(raw["type"], str) or raw["type"] not in EVENT_CLASSES:
        raise EventValidationError(
            [{"field": "type", "message": f"unknown event type {raw['type']!r}, expected one of {', '.join(EVENT_TYPES)}"}]
        )
    try:
        return EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise EventValidationError(describe(exc)) from None


EVENTS_ADAPTER: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


def parse_events(raws: list[Any]) -> list[LlmCall | ErrorEvent | Heartbeat | Span | Score | EventValidationError]:
    """`parse_event` of each item (the event, or its EventValidationError), in the same order.

    A list that is entirely valid (the usual batch) is validated in one call; otherwise every item goes
    through `parse_event`, so results and errors are exactly those of parsing one by one.
    """
    adapted = []
    for raw in raws:
        if not isinstance(raw, dict):
            break
        raw = adapt_seed(raw)
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in EVENT_CLASSES:
            break
        adapted.append(raw)
    else:
        try:
            return EVENTS_ADAPTER.validate_python(adapted)  # type: ignore[return-value]
        except ValidationError:
            pass
    out: list[LlmCall | ErrorEvent | Heartbeat | Span | Score | EventValidationError] = []
    for raw in raws:
        try:
            out.append(parse_event(raw))
        except EventValidationError as exc:
            out.append(exc)
    return out


def event_from_json(data: bytes | str) -> LlmCall | ErrorEvent | Heartbeat | Span | Score:
    """Decode an event as stored on the topic (already normalized)."""
    try:
        return EVENT_ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise EventValidationError(describe(exc)) from None

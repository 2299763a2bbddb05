"""A raw event of a batch -> its record on `agenttrace.events.v1`, without building a pydantic event.

The full path (`parse_events` -> `normalize_event` -> `event_record`) validates every field in
pydantic and encodes the model's values: most of the gateway's CPU per event. msgspec checks the same
types and bounds in C straight from the decoded dict, and its structs list the fields in the model's
order, so orjson writes the same document. The fast path only takes what it is sure of: exact types
(no "12" for an int, no bool for a float), strings with no surrounding whitespace (the envelope strips
it), time stamps with a time zone (naive ones are taken as UTC by the envelope), lowercase dashed
event ids, no explicit nulls, list tags. Everything else returns None and takes the full path, which
gives the same record or the same validation error as before. tests/ingest/test_fast_record.py pins
fast == full over the test inputs and randomized events.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import orjson
from msgspec import UNSET, Meta, UnsetType, field

from agenttrace.kafka import event_headers
from schemas.events import MAX_LATENCY_MS, MAX_TOKENS
from schemas.pricing import PRICING_VERSION, cost_usd, priced_model
from schemas.topics import event_key


def _s(max_length: int | None = None, min_length: int | None = None) -> Any:
    # No msgspec `pattern` for "no surrounding whitespace": one regex call per field cost more than the
    # rest of the conversion; `_padded` checks every string of an event in one search instead.
    return Annotated[str, Meta(max_length=max_length, min_length=min_length)]


_Id = _s(256, 1)
_OptId = _s(256) | UnsetType
_Time = Annotated[datetime, Meta(tz=True)]
_Tokens = Annotated[int, Meta(ge=0, le=MAX_TOKENS)] | UnsetType
_SeedTokens = Annotated[int, Meta(ge=0, le=MAX_TOKENS)] | None | UnsetType
_Millis = Annotated[float, Meta(ge=0, le=MAX_LATENCY_MS)] | UnsetType
_Status = Annotated[int, Meta(ge=0, le=999)] | UnsetType
_Map = dict[str, Any]


class _Envelope(msgspec.Struct, kw_only=True, gc=False):
    """`schemas.events.EventBase`, field for field and in its order (UNSET = left out, as None is)."""

    event_id: UUID  # msgspec reads a subset of the forms pydantic reads, to the same UUID
    timestamp: _Time | UnsetType = UNSET
    received_at: _Time | None | UnsetType = UNSET  # replaced at the edge, but still validated
    project_id: _Id | UnsetType = UNSET  # replaced by the key's project, but still validated
    agent_id: _Id
    trace_id: _OptId = UNSET
    span_id: _OptId = UNSET
    parent_span_id: _OptId = UNSET
    session_id: _OptId = UNSET
    user_id: _OptId = UNSET
    release: _OptId = UNSET
    version: _OptId = UNSET
    name: _OptId = UNSET
    tags: Annotated[list[_s(200)], Meta(max_length=64)] = field(default_factory=list)
    metadata: _Map = field(default_factory=dict)
    type: str = ""


class _Tokens3(msgspec.Struct, gc=False):
    """The seed's `tokens: {input, output, cached}`."""

    input: _SeedTokens = UNSET
    output: _SeedTokens = UNSET
    cached: _SeedTokens = UNSET


class _LlmCall(_Envelope, kw_only=True, gc=False):
    type: str = "llm_call"
    provider: _s(64) = "unknown"
    model: _s(256) = "unknown"
    model_family: str | None | UnsetType = UNSET
    tokens_in: _Tokens = UNSET
    tokens_out: _Tokens = UNSET
    tokens_cached: _Tokens = UNSET
    latency_ms: _Millis = UNSET
    ttft_ms: _Millis = UNSET
    status_code: _Status = UNSET
    finish_reason: _OptId = UNSET
    error_type: _OptId = UNSET
    stream: bool | UnsetType = UNSET
    cost_usd: Annotated[float, Meta(ge=0)] | None | UnsetType = UNSET
    pricing_version: str | None | UnsetType = UNSET
    pricing_status: Literal["priced", "unknown_model", "no_tokens"] | None | UnsetType = UNSET
    source: Literal["proxy", "sdk", "otlp"] = "sdk"
    # Seed names (`adapt_seed`): read, moved to the fields above, then UNSET so they are not written.
    tokens: _Tokens3 | UnsetType = UNSET
    input_tokens: _SeedTokens = UNSET
    output_tokens: _SeedTokens = UNSET
    status: Any = UNSET


class _Error(_Envelope, kw_only=True, gc=False):
    type: str = "error"
    error_type: _s(256) = "Error"
    message: _s(16_384) = ""
    stack: _s(65_536) | UnsetType = UNSET
    status_code: _Status = UNSET
    status: Any = UNSET  # seed name of status_code


class _Heartbeat(_Envelope, kw_only=True, gc=False):
    type: str = "heartbeat"
    status: _s(64) = "ok"


class _Span(_Envelope, kw_only=True, gc=False):
    type: str = "span"
    name: _Id = "span"
    kind: _s(32) = "internal"
    end_time: _Time | UnsetType = UNSET
    duration_ms: _Millis = UNSET
    status: Literal["unset", "ok", "error"] = "unset"
    status_message: _s(4096) | UnsetType = UNSET
    attributes: _Map = field(default_factory=dict)


class _Score(_Envelope, kw_only=True, gc=False):
    type: str = "score"
    name: _Id = "score"
    value: float | UnsetType = UNSET
    string_value: _s(1024) | UnsetType = UNSET
    passed: bool | UnsetType = UNSET
    evaluator: _OptId = UNSET
    comment: _s(4096) | UnsetType = UNSET


_STRUCTS: dict[str, type[_Envelope]] = {
    "llm_call": _LlmCall, "error": _Error, "heartbeat": _Heartbeat, "span": _Span, "score": _Score,
}
# The string fields the envelope strips (`str_strip_whitespace`); Literal fields match exactly in both paths.
_BASE_TEXT = ("project_id", "agent_id", "trace_id", "span_id", "parent_span_id", "session_id", "user_id",
              "release", "version", "name")
_TEXT = {
    _LlmCall: attrgetter(*_BASE_TEXT, "provider", "model", "finish_reason", "error_type"),
    _Error: attrgetter(*_BASE_TEXT, "error_type", "message", "stack"),
    _Heartbeat: attrgetter(*_BASE_TEXT, "status"),
    _Span: attrgetter(*_BASE_TEXT, "kind", "status_message"),
    _Score: attrgetter(*_BASE_TEXT, "string_value", "evaluator", "comment"),
}


def _padded(ev: Any, cls: type[_Envelope]) -> bool:
    """Whether the envelope would strip any string of the event (map keys included): then the full path.
    str.strip() returns the string itself when it has nothing to strip (and strips a superset of what
    pydantic's Rust trim does, so this can only send more events to the full path, never fewer)."""
    for v in _TEXT[cls](ev):
        if v is not UNSET and v.strip() is not v:
            return True
    for v in ev.tags:
        if v.strip() is not v:
            return True
    for v in ev.metadata:
        if v.strip() is not v:
            return True
    if cls is _Span:
        for v in ev.attributes:
            if v.strip() is not v:
                return True
    return False


_convert = msgspec.convert
_builtins = msgspec.to_builtins
# Left for orjson, as in the full path: it writes times (UTC as "Z") and ids the same way, and raises
# TypeError for what it cannot encode (the full path then takes pydantic's serializer: so do we).
_KEEP = (datetime, date, time, timedelta, UUID, Decimal, bytes, bytearray, memoryview)
_dumps = orjson.dumps
_encode = msgspec.json.Encoder().encode
_UTC_Z = orjson.OPT_UTC_Z


def _first(*values: Any) -> Any:
    """`dict.setdefault` order of the seed names: the first name present wins, even with null."""
    for v in values:
        if v is not UNSET:
            return UNSET if v is None else v
    return UNSET


def _none(v: Any) -> Any:
    return None if v is UNSET else v


def _seed_tokens(ev: _LlmCall) -> None:
    tk = ev.tokens if ev.tokens is not UNSET else _Tokens3()
    ev.tokens_in = _first(ev.tokens_in, tk.input, ev.input_tokens)
    ev.tokens_out = _first(ev.tokens_out, tk.output, ev.output_tokens)
    ev.tokens_cached = _first(ev.tokens_cached, tk.cached)
    ev.tokens = ev.input_tokens = ev.output_tokens = UNSET


def _seed_status(ev: _LlmCall | _Error) -> bool:
    """`status: 200` of an llm call or error is its status_code; False when only the full path is sure."""
    st = ev.status
    ev.status = UNSET
    if not isinstance(st, int):
        return True  # not an int: an ignored extra field, as in the full path
    if type(st) is not int or not 0 <= st <= 999:
        return False
    if ev.status_code is UNSET:
        ev.status_code = st
    return True


def _past_micros(value: Any) -> bool:
    """A time written with more than 6 fractional digits: msgspec rounds them, pydantic truncates.
    msgspec reads only "YYYY-MM-DDTHH:MM:SS[.f...]<zone>", so a fraction starts at index 19."""
    return type(value) is str and value[19:20] == "." and value[20:27].isdigit()


def fast_record(raw: Any, project_id: str, received_at: datetime) -> tuple[bytes, bytes, list[tuple[str, bytes]]] | None:
    """The record the full path would publish for `raw` (with its event_id set), or None if unsure."""
    if type(raw) is not dict:
        return None
    kind = raw["type"] if "type" in raw else raw.get("event_type")
    cls = _STRUCTS.get(kind) if type(kind) is str else None
    if cls is None:
        return None
    try:
        ev: Any = _convert(raw, cls)
    except msgspec.ValidationError:
        return None
    if _padded(ev, cls):
        return None
    ts = ev.timestamp
    if ts is UNSET:
        ev.timestamp = datetime.now(UTC)
    else:
        if _past_micros(raw["timestamp"]):
            return None
        if ts.tzinfo is not UTC:
            try:
                ev.timestamp = ts.astimezone(UTC)
            except OverflowError:
                return None  # out of range in UTC: the full path decides (as before)
    if cls is _Span and ev.end_time is not UNSET and _past_micros(raw["end_time"]):
        return None
    sent = ev.received_at  # replaced below; the envelope's UTC conversion of it can still overflow
    if sent is not UNSET and sent is not None and sent.tzinfo is not UTC:
        try:
            sent.astimezone(UTC)
        except OverflowError:
            return None
    ev.received_at = received_at
    ev.project_id = project_id
    if cls is _LlmCall:
        if ev.tokens is not UNSET or ev.input_tokens is not UNSET or ev.output_tokens is not UNSET:
            # `adapt_seed` maps output_tokens only when one of these names brought it in.
            if not ("event_type" in raw or "tokens" in raw or "status" in raw or "input_tokens" in raw):
                ev.output_tokens = UNSET
            _seed_tokens(ev)
        if ev.status is not UNSET and not _seed_status(ev):
            return None
        provider, family, _ = priced_model(ev.provider, ev.model)
        cost, status = cost_usd(provider, family, _none(ev.tokens_in), _none(ev.tokens_out), _none(ev.tokens_cached))
        ev.provider = provider
        ev.model_family = UNSET if family is None else family
        ev.cost_usd = UNSET if cost is None else cost
        ev.pricing_status = status
        ev.pricing_version = PRICING_VERSION
    elif cls is _Error and ev.status is not UNSET and not _seed_status(ev):
        return None
    if not ev.metadata and (cls is not _Span or not ev.attributes) and (
            cls is not _Score or ev.value is UNSET or -1e16 < ev.value < 1e16):
        # msgspec writes what orjson writes except floats of 1e16 and up ("1e16", orjson "1e+16"): the
        # event's own floats are bounded below that; free-form maps and scores take orjson.
        value = _encode(ev)
    else:
        try:
            value = _dumps(_builtins(ev, builtin_types=_KEEP), option=_UTC_Z)
        except TypeError:
            return None
    return event_key(project_id, ev.agent_id), value, event_headers(kind)

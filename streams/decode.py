"""Events from the log -> what the windows read, without building a full pydantic event.

The full parse (`schemas.events.event_from_json`) validates and builds every field of the envelope:
~20 µs an event, most of the streams' CPU. The windows read a dozen fields; msgspec checks those in
C straight from the bytes, with the same bounds as the envelope, and skips the rest (~2 µs), as the
sinks do when they land the same events: fields nobody here reads were validated at the edge. Anything
the fast path is not sure of (no time zone, padded ids, a value out of bounds, a bad type) takes the
full parse, which gives the same event or the same validation error (dead letter) as before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from schemas.events import MAX_LATENCY_MS, MAX_TOKENS, event_from_json

_UUID = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)] | None
_Millis = Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)] | None


class StreamEvent(msgspec.Struct, gc=False):
    """The fields the windows read, named as on `schemas.events` (the windows take either)."""

    type: Literal["llm_call", "error", "heartbeat", "span", "score"]
    event_id: Annotated[str, msgspec.Meta(pattern=_UUID)]
    project_id: _Id
    agent_id: _Id
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)]
    provider: Annotated[str, msgspec.Meta(max_length=64)] = "unknown"
    model: Annotated[str, msgspec.Meta(max_length=256)] = "unknown"
    tokens_in: _Tokens = None
    tokens_out: _Tokens = None
    tokens_cached: _Tokens = None
    latency_ms: _Millis = None
    ttft_ms: _Millis = None
    status_code: Annotated[int, msgspec.Meta(ge=0, le=999)] | None = None
    cost_usd: Annotated[float, msgspec.Meta(ge=0)] | None = None

    @property
    def is_error(self) -> bool:
        return self.status_code is not None and self.status_code >= 400


_fast = msgspec.json.Decoder(StreamEvent).decode


def decode_event(value: bytes) -> Any:
    """A `StreamEvent`, or the full event when the fast path declines; raises EventValidationError."""
    try:
        ev = _fast(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return event_from_json(value)
    # The envelope strips whitespace from strings; ids with padding take the full parse.
    if (ev.project_id.strip() is not ev.project_id or ev.agent_id.strip() is not ev.agent_id
            or ev.provider.strip() is not ev.provider or ev.model.strip() is not ev.model):
        return event_from_json(value)
    return ev

"""Turning a request's raw events into normalized, priced events plus per-index rejections."""

from __future__ import annotations

import os
from collections import Counter as Tally
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agenttrace.kafka import event_record
from ingest.fastrecord import fast_record
from ingest.publisher import Record
from schemas.events import EventValidationError, parse_events
from schemas.normalize import normalize_event

MAX_EVENT_BYTES = 1_000_000  # below the events topic's max.message.bytes (1048588)


@dataclass
class Batch:
    records: list[Record] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    types: Tally[str] = field(default_factory=Tally)

    @property
    def accepted(self) -> int:
        return len(self.records)

    def reject(self, index: int, errors: list[dict[str, str]]) -> None:
        reason = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        self.rejected.append({"index": index, "reason": reason, "errors": errors})


def _too_large(size: int) -> list[dict[str, str]]:
    # The topic refuses larger records; retrying could never succeed, so it is a bad event.
    return [{"field": "event", "message": f"too large: {size} bytes encoded, at most {MAX_EVENT_BYTES}"}]


def _uuid4_strings(n: int) -> list[str]:
    """n random version-4 UUIDs (32 hex digits, which both the fast path and the event model parse) from
    one urandom call; version and variant bits set for all at once (per-event uuid4() was a tenth of the CPU)."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT_RFC4122)
    h = raw.hex()
    return [h[i:i + 32] for i in range(0, 32 * n, 32)]


_VERSION_4 = bytes(b & 0x0F | 0x40 for b in range(256))
_VARIANT_RFC4122 = bytes(b & 0x3F | 0x80 for b in range(256))


def build_batch(raw_events: list[Any], project_id: str, received_at: datetime | None = None) -> Batch:
    """Validate each event on its own: the good ones are kept, the bad ones reported by index and field."""
    batch = Batch()
    now = received_at or datetime.now(UTC)
    missing = [raw for raw in raw_events if isinstance(raw, dict) and not raw.get("event_id")]
    for raw, event_id in zip(missing, _uuid4_strings(len(missing)), strict=True):
        raw["event_id"] = event_id
    # Each event takes the fast path when it can; the rest are parsed together by the full path.
    fast = [fast_record(raw, project_id, now) for raw in raw_events]
    slow_at = [i for i, record in enumerate(fast) if record is None]
    slow = dict(zip(slow_at, parse_events([raw_events[i] for i in slow_at]), strict=True)) if slow_at else {}
    append = batch.records.append
    types = []
    for i, record in enumerate(fast):
        if record is None:
            event = slow[i]
            if isinstance(event, EventValidationError):
                batch.reject(i, event.errors)
                continue
            record = event_record(normalize_event(event, project_id, now))
        if len(record[1]) > MAX_EVENT_BYTES:
            batch.reject(i, _too_large(len(record[1])))
            continue
        append(record)
        types.append(record[2][0][1])  # the event_type header
    batch.types.update({t.decode(): n for t, n in Tally(types).items()})
    return batch


class BatchTooLarge(ValueError):
    """More events than the batch limit (413)."""


def events_of(doc: Any, max_events: int) -> list[Any]:
    """The event list of a body: `{"events": [...]}`, a bare list, or one event object."""
    if isinstance(doc, dict) and "events" in doc:
        events = doc["events"]
        if not isinstance(events, list):
            raise ValueError("events: must be a list of event objects")
    elif isinstance(doc, list):
        events = doc
    elif isinstance(doc, dict):
        events = [doc]
    else:
        raise ValueError("body: must be {\"events\": [...]}")
    if not events:
        raise ValueError("events: the batch is empty")
    if len(events) > max_events:
        raise BatchTooLarge(f"events: at most {max_events} events per batch, got {len(events)}")
    return events

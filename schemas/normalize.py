"""Edge normalization shared by the gateway, the proxy and replay: one function, one result."""

from __future__ import annotations

from datetime import datetime

from schemas.events import EventBase, LlmCall, utcnow
from schemas.pricing import price_event

_STAMPED = ("project_id", "received_at")


def normalize_event(event: EventBase, project_id: str, received_at: datetime | None = None) -> EventBase:
    """Stamp project and receive time, and price llm calls. The project always comes from the key."""
    # Plain field writes, as pydantic's __setattr__ does them (events do not validate assignment).
    values = event.__dict__
    values["project_id"] = project_id
    values["received_at"] = received_at or values["received_at"] or utcnow()
    event.__pydantic_fields_set__.update(_STAMPED)
    if isinstance(event, LlmCall):
        price_event(event)
    return event

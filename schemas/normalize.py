"""Edge normalization shared by the gateway, the proxy and replay: one function, one result."""

from __future__ import annotations

from datetime import datetime

from schemas.events import EventBase, LlmCall, utcnow
from schemas.pricing import price_event


def normalize_event(event: EventBase, project_id: str, received_at: datetime | None = None) -> EventBase:
    """Stamp project and receive time, and price llm calls. The project always comes from the key."""
    event.project_id = project_id
    event.received_at = received_at or event.received_at or utcnow()
    if isinstance(event, LlmCall):
        price_event(event)
    return event

"""What the proxy learns about one call from the provider's response."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Usage:
    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_cached: int | None = None
    finish_reason: str | None = None
    error_type: str | None = None


def as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def get(doc: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(p)
    return doc


def error_field(doc: Any) -> str | None:
    """`{"error": {"type"|"code"|"status": ...}}`, the shape most providers share."""
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        for k in ("type", "status", "code"):
            if isinstance(err.get(k), str) and err[k]:
                return err[k]
    elif isinstance(err, str) and err:
        return err
    return None

"""Who made a call (AgentTrace key, agent and trace headers), and which headers go upstream."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.keys import KeyStore

# Hop-by-hop headers (RFC 9110 §7.6.1) plus the ones the HTTP client recomputes for the upstream hop.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
                        b"proxy-connection", b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade"})
DROP_REQUEST = HOP_BY_HOP | {b"host", b"content-length", b"x-target-url"}


@dataclass(slots=True)
class Identity:
    project_id: str = "default"
    agent_id: str = "default"
    trace_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    tags: list[str] = field(default_factory=list)
    key_valid: bool | None = None  # None: no key sent


def split_headers(raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], list[tuple[bytes, bytes]]]:
    """(all headers lower-cased as text, the headers to forward upstream in their original order)."""
    seen: dict[str, str] = {}
    forward: list[tuple[bytes, bytes]] = []
    for name, value in raw:
        lname = name.lower()
        seen[lname.decode("latin-1")] = value.decode("latin-1")
        if lname in DROP_REQUEST or lname.startswith(b"x-agenttrace-"):
            continue
        forward.append((name, value))
    return seen, forward


def identify(headers: dict[str, str], keys: KeyStore) -> Identity:
    ident = Identity()
    token = headers.get("x-agenttrace-key")
    if token:
        key = keys.verify(token.strip())
        ident.key_valid = key is not None
        if key is not None:
            ident.project_id = key.project_id
            ident.agent_id = key.name or "default"
    agent = headers.get("x-agenttrace-agent", "").strip()
    if agent:
        ident.agent_id = agent[:256]
    ident.trace_id = headers.get("x-agenttrace-trace-id", "").strip()[:256] or None
    ident.session_id = headers.get("x-agenttrace-session-id", "").strip()[:256] or None
    ident.user_id = headers.get("x-agenttrace-user-id", "").strip()[:256] or None
    tags = headers.get("x-agenttrace-tags", "")
    ident.tags = [t.strip()[:200] for t in tags.split(",") if t.strip()][:64]
    return ident

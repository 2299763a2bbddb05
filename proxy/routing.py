"""Which provider a request is for, and where it goes upstream."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from proxy.config import ProxySettings

PROVIDERS = ("openai", "anthropic", "google", "mistral", "cohere")
OPENAI_CALLS = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings")
_GOOGLE = re.compile(r"^/(v1|v1beta|v1alpha)/(?:tunedModels|models)/([^/:]+):(generateContent|streamGenerateContent)$")
# Mistral keys are 32 alphanumerics without the `sk-` prefix OpenAI-style keys carry.
_MISTRAL_KEY = re.compile(r"^[A-Za-z0-9]{32}$")


@dataclass(slots=True)
class Route:
    provider: str
    url: str  # full upstream URL with query
    kind: str  # chat | completion | responses | embeddings | messages | generate | other
    model: str | None = None  # from the path (Google)
    stream: bool = False  # known from the path (Google); bodies tell the rest
    template: str = "unmatched"  # bounded label for HTTP metrics


def _join(base: str, path: str, query: str) -> str:
    url = base.rstrip("/") + path
    return f"{url}?{query}" if query else url


def _target(target: str, path: str, query: str) -> str:
    # A base with its own path (".../v1", Azure deployments) replaces the client's leading /v1.
    parts = urlsplit(target)
    if parts.path.strip("/") and path.startswith("/v1/"):
        path = path[3:]
    return _join(target, path, query)


def _kind(provider: str, path: str) -> str:
    if provider == "anthropic":
        return "messages" if path.endswith("/messages") else "other"
    if provider == "cohere":
        return "chat" if path in ("/v1/chat", "/v2/chat") else "other"
    for suffix, kind in (("/chat/completions", "chat"), ("/completions", "completion"),
                         ("/responses", "responses"), ("/embeddings", "embeddings")):
        if path.endswith(suffix):
            return kind
    return "other"


def route(path: str, query: str, headers: dict[str, str], settings: ProxySettings) -> Route:
    """`headers` are lower-cased request headers (before stripping)."""
    hint = headers.get("x-agenttrace-provider", "").lower()
    # An explicit /<provider> prefix is the host hint for SDKs that only take a base URL.
    first, _, rest = path[1:].partition("/")
    if first in PROVIDERS and rest:
        hint, path = hint or first, "/" + rest
    g = _GOOGLE.match(unquote(path))
    if g:
        provider = "google"
    elif hint in PROVIDERS:
        provider = hint
    elif path.endswith("/messages") or "anthropic-version" in headers:
        provider = "anthropic"
    elif path in ("/v1/chat", "/v2/chat"):
        provider = "cohere"
    elif _is_mistral(headers):
        provider = "mistral"
    else:
        provider = "openai"
    target = headers.get("x-target-url")
    url = _target(target, path, query) if target else _join(settings.base_url(provider), path, query)
    if g:
        return Route("google", url, "generate", model=g.group(2), stream=g.group(3) == "streamGenerateContent",
                     template=f"/{g.group(1)}/models/{{model}}:{g.group(3)}")
    kind = _kind(provider, path)
    return Route(provider, url, kind, template=path if kind != "other" else "unmatched")


def _is_mistral(headers: dict[str, str]) -> bool:
    if "mistral" in headers.get("host", "").lower():
        return True
    auth = headers.get("authorization", "")
    return auth[:7].lower() == "bearer " and bool(_MISTRAL_KEY.match(auth[7:].strip()))

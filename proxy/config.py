"""Proxy-only knobs (`AGENTTRACE_PROXY_*`), kept apart from the shared `Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProxySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTTRACE_PROXY_", extra="ignore")

    openai_base_url: str = "https://api.openai.com"
    anthropic_base_url: str = "https://api.anthropic.com"
    google_base_url: str = "https://generativelanguage.googleapis.com"
    mistral_base_url: str = "https://api.mistral.ai"
    cohere_base_url: str = "https://api.cohere.com"

    # Off by default: the proxy must not change what the agent sends.
    openai_include_usage: bool = Field(default=False, description="add stream_options.include_usage to OpenAI streams")
    capture_bodies: bool = False
    capture_max_bytes: int = 4096

    # HTTP/2 to https upstreams that offer it in ALPN; 0 forces HTTP/1.1 for all, or per provider with
    # AGENTTRACE_PROXY_<PROVIDER>_HTTP2 (unset: follow the global switch).
    http2: bool = True
    openai_http2: bool | None = None
    anthropic_http2: bool | None = None
    google_http2: bool | None = None
    mistral_http2: bool | None = None
    cohere_http2: bool | None = None
    # PEM file of the CAs to trust for https upstreams instead of the system store.
    ca_bundle: str | None = None

    max_connections: int = 1000
    connect_timeout: float = 10.0
    # Long by default so the agent's own timeout fires first, exactly as with a direct call.
    read_timeout: float = 600.0
    max_parse_bytes: int = 8 * 1024 * 1024

    spool_max_events: int = 100_000
    spool_segment_events: int = 1000
    publish_batch: int = 2000
    # Events are for dashboards, not the agent: a longer linger makes fewer, larger produce requests.
    kafka_linger_ms: int = 20
    queue_max: int = 50_000
    kafka_timeout_ms: int = 5000
    retry_max_seconds: float = 5.0

    def base_url(self, provider: str) -> str:
        return getattr(self, f"{provider}_base_url")

    def http2_for(self, provider: str) -> bool:
        own = getattr(self, f"{provider}_http2", None)
        return self.http2 if own is None else own

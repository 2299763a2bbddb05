"""Knobs of the sinks that the shared Settings do not carry (env prefix AGENTTRACE_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SinkSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTTRACE_", extra="ignore")

    sink_batch_rows: int = Field(default=50_000, ge=1, description="flush a batch at this many messages")
    sink_batch_seconds: float = Field(default=0.5, gt=0, description="or after this long")
    # 0.5 s, not 0.2: each landed batch writes a part in each of four tables (a few ms of fixed cost
    # apiece, then merged again and again); at 20k events/s this cut the landing's CPU per event by
    # about a quarter, and rows still land within ~0.8 s (p99) of reaching the broker.
    sink_batch_min_seconds: float = Field(
        default=0.5, ge=0, description="or, when the topic is read to its end, this long")
    sink_insert_threads: int = Field(default=2, ge=1, description="event batches inserted at once (commits stay in order)")
    sink_backoff_max_seconds: float = Field(default=10.0, gt=0, description="cap of the ClickHouse retry backoff")
    webhook_secret: str = Field(default="", description="HMAC-SHA256 key of X-AgentTrace-Signature")
    webhook_timeout_seconds: float = 5.0
    # Delays before retry 1, 2, 3; a fourth failure is final.
    delivery_retry_delays: list[float] = Field(default_factory=lambda: [1.0, 4.0, 16.0])
    smtp_timeout_seconds: float = 10.0
    smtp_cert_bundle: str = Field(default="", description="CA file to trust for the SMTP server's TLS certificate")
    # Test hook: exit the process right after the first ClickHouse insert, before the commit.
    sink_crash_after_insert: bool = False

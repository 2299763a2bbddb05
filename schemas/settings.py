"""Process settings: every knob is an `AGENTTRACE_*` environment variable (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTTRACE_", extra="ignore")

    home: Path = Field(default=Path("~/.agenttrace"), description="data, config and broker files")
    host: str = Field(default="127.0.0.1", description="address services bind to (loopback by default)")

    # Kafka / Redpanda
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    topic_prefix: str = Field(default="", description="prepended to every topic name (test isolation, shared clusters)")
    topic_partitions: int = Field(default=6, description="partitions of the high-volume topics")

    # ClickHouse: empty URL = embedded chDB under $AGENTTRACE_HOME/clickhouse
    clickhouse_url: str = ""
    clickhouse_database: str = "agenttrace"
    clickhouse_dir: Path | None = Field(default=None, description="chDB data directory (default $AGENTTRACE_HOME/clickhouse)")
    retention_days: int = 30

    # HTTP ports
    gateway_port: int = 8080
    api_port: int = 8090
    proxy_port: int = 4000
    stream_metrics_port: int = 9101
    sink_metrics_port: int = 9102

    # gateway
    rate_limit_per_minute: int = 1000
    max_batch_events: int = 1000
    max_body_bytes: int = 10 * 1024 * 1024

    log_level: str = "info"

    # SMTP keeps the seed's plain names and also takes AGENTTRACE_SMTP_*.
    smtp_host: str = Field(default="", validation_alias=AliasChoices("AGENTTRACE_SMTP_HOST", "SMTP_HOST"))
    smtp_port: int = Field(default=587, validation_alias=AliasChoices("AGENTTRACE_SMTP_PORT", "SMTP_PORT"))
    smtp_user: str = Field(default="", validation_alias=AliasChoices("AGENTTRACE_SMTP_USER", "SMTP_USER"))
    smtp_pass: str = Field(default="", validation_alias=AliasChoices("AGENTTRACE_SMTP_PASS", "SMTP_PASS"))
    smtp_from: str = Field(
        default="alerts@agenttrace.dev", validation_alias=AliasChoices("AGENTTRACE_SMTP_FROM", "SMTP_FROM")
    )
    smtp_secure: bool = Field(default=False, validation_alias=AliasChoices("AGENTTRACE_SMTP_SECURE", "SMTP_SECURE"))

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()

    @property
    def clickhouse_path(self) -> Path:
        return (self.clickhouse_dir or self.home_dir / "clickhouse").expanduser()

    @property
    def config_path(self) -> Path:
        return self.home_dir / "config.json"

    def topic(self, base: str) -> str:
        """Full topic name for a catalogue name such as `agenttrace.events.v1`."""
        return f"{self.topic_prefix}{base}"


@lru_cache
def get_settings() -> Settings:
    return Settings()

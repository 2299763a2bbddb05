"""Knobs of the stream processors (`AGENTTRACE_STREAM_*`), separate from the shared Settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StreamConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTTRACE_STREAM_", extra="ignore")

    window_seconds: int = Field(default=60, ge=1, description="tumbling rollup window length")
    wait_seconds: float = Field(default=5.0, ge=0, description="watermark = max event time seen - wait")
    lateness_seconds: float = Field(default=300.0, ge=0, description="late events within this re-emit a corrected rollup")
    idle_advance: bool = Field(default=True, description="advance an idle partition's watermark with system time")
    tick_seconds: float = Field(default=1.0, gt=0, description="processing-time check interval (agent_down, idle windows)")
    minute_seconds: float = Field(default=60.0, gt=0,
                                  description="seconds per rule minute for processing-time durations (tests shrink it)")
    alert_history_minutes: int = Field(default=60, ge=1, description="minute buckets kept per agent for alert windows")
    epoch_seconds: float = Field(default=5.0, gt=0, description="Bytewax epoch = snapshot interval")
    addresses: str = Field(default="", description="host:port of every Bytewax process (comma-separated) for a cluster")
    process_id: int = Field(default=0, ge=0, description="this process's index in `addresses`")
    batch_size: int = Field(default=5000, ge=1, description="max Kafka messages per source poll")

"""Window aggregates on `agenttrace.rollups.v1`, one per window x project/agent/provider/model."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Rollup(BaseModel):
    window_start: datetime
    window_end: datetime
    project_id: str
    agent_id: str
    provider: str
    model: str
    calls: int = 0
    errors: int = Field(default=0, description="llm calls with status >= 400 plus error events")
    error_events: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    cost_usd: float = 0.0
    latency_ms_sum: float = 0.0
    latency_ms_max: float = 0.0
    latency_sketch: dict[str, int] = Field(default_factory=dict, description="schemas.sketch buckets")
    ttft_sketch: dict[str, int] = Field(default_factory=dict)
    version: int = Field(default=1, description="higher replaces lower for the same window and dimensions")
    replay: bool = False

    def key(self) -> str:
        return f"{self.window_start.isoformat()}/{self.project_id}/{self.agent_id}/{self.provider}/{self.model}"

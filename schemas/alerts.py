"""Alert rules (`agenttrace.alert-rules.v1`, compacted) and alert transitions (`agenttrace.alerts.v1`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from schemas.events import utcnow

RuleType = Literal["agent_down", "error_rate", "budget", "latency_p95"]


class AlertRule(BaseModel):
    """A rule as published by the gateway. `agent_id` None means every agent of the project."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=128)] = Field(default_factory=lambda: uuid4().hex)
    project_id: str = "default"
    type: RuleType
    name: Annotated[str, Field(max_length=256)] = ""
    agent_id: Annotated[str | None, Field(max_length=256)] = None
    threshold: float | None = Field(default=None, ge=0, description="% for error_rate, USD for budget, ms for latency_p95")
    window_minutes: int = Field(default=15, ge=1, le=24 * 60)
    duration_minutes: int = Field(default=5, ge=1, le=7 * 24 * 60)
    min_calls: int = Field(default=10, ge=1, description="error_rate fires only with at least this many calls")
    scope: Literal["agent", "project"] = Field(default="agent", description="budget: per agent or whole project")
    enabled: bool = True
    webhook_url: HttpUrl | None = None
    email_to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(default_factory=list, max_length=20)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _needs_threshold(self) -> AlertRule:
        if self.type != "agent_down" and self.threshold is None:
            raise ValueError(f"threshold is required for {self.type} rules")
        if self.type == "error_rate" and self.threshold is not None and self.threshold > 100:
            raise ValueError("threshold of an error_rate rule is a percentage (0-100)")
        return self


class Alert(BaseModel):
    """One alert transition. `alert_id` is deterministic so redelivery and replay are recognisable."""

    alert_id: str
    rule_id: str
    rule_type: RuleType
    project_id: str
    agent_id: str | None = None
    subject: str = Field(description="agent id, or project id for project-wide rules")
    state: Literal["fired", "resolved"]
    value: float | None = None
    threshold: float | None = None
    window_minutes: int | None = None
    message: str
    timestamp: datetime
    replay: bool = False
    webhook_url: str | None = None
    email_to: list[str] = Field(default_factory=list)

"""The topic catalogue: every topic the pipeline uses, with its configuration and key scheme."""

from __future__ import annotations

from dataclasses import dataclass, field

EVENTS = "agenttrace.events.v1"
ROLLUPS = "agenttrace.rollups.v1"
ALERTS = "agenttrace.alerts.v1"
ALERT_RULES = "agenttrace.alert-rules.v1"
DLQ = "agenttrace.dlq.v1"

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    value: str  # name of the pydantic model in schemas/ that describes the value
    partitions: int | None  # None: Settings.topic_partitions
    config: dict[str, str] = field(default_factory=dict)
    retention_days: int | None = None  # None: Settings.retention_days; ignored when compacted

    def partition_count(self, default: int) -> int:
        return self.partitions or default

    def topic_config(self, retention_days: int) -> dict[str, str]:
        cfg = dict(self.config)
        if cfg.get("cleanup.policy") != "compact":
            cfg["retention.ms"] = str((self.retention_days or retention_days) * DAY_MS)
        return cfg


CATALOGUE: tuple[Topic, ...] = (
    Topic(EVENTS, "project_id/agent_id", "Event", None,
          {"cleanup.policy": "delete", "compression.type": "producer", "max.message.bytes": "1048588"}),
    Topic(ROLLUPS, "window_start/project_id/agent_id/provider/model", "Rollup", None,
          {"cleanup.policy": "delete", "compression.type": "producer"}),
    Topic(ALERTS, "rule_id/subject", "Alert", 3, {"cleanup.policy": "delete"}),
    Topic(ALERT_RULES, "rule_id", "AlertRule", 1,
          {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "3600000"}),
    Topic(DLQ, "original key", "original bytes + reason headers", 3, {"cleanup.policy": "delete"}, 30),
)

BY_NAME = {t.name: t for t in CATALOGUE}


def event_key(project_id: str, agent_id: str) -> bytes:
    return f"{project_id}/{agent_id}".encode()

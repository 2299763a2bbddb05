"""The `alerts` history as the delivery state: transitions, attempts, and intents (at most once).

Rows are Replacing-engine rows keyed by (alert, channel, target, attempt, outcome), so writing the
same row twice (redelivery of the alert) is harmless.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from agenttrace.clickhouse import ClickHouse
from schemas.alerts import Alert
from sinks.clickhouse_io import insert_rows
from sinks.rows import ts_text

FINAL_OUTCOMES = ("delivered", "failed")


def alert_row(alert: Alert, channel: str = "", target: str = "", attempt: int = 0, outcome: str | None = None,
              error: str = "") -> bytes:
    return orjson.dumps({
        "alert_id": alert.alert_id, "rule_id": alert.rule_id, "rule_type": alert.rule_type,
        "project_id": alert.project_id, "agent_id": alert.agent_id or "", "subject": alert.subject,
        "state": alert.state, "value": alert.value, "threshold": alert.threshold,
        "window_minutes": alert.window_minutes, "message": alert.message,
        "timestamp": ts_text(alert.timestamp), "replay": alert.replay, "channel": channel, "target": target,
        "attempt": attempt, "outcome": outcome or alert.state, "error": error,
    })


@dataclass
class DeliveryState:
    done: bool  # delivered or failed already
    last_attempt: int  # highest attempt with an outcome
    last_at: float  # unix time of that outcome
    interrupted: int  # attempt that has an intent but no outcome (0: none)


def load(client: ClickHouse, alert: Alert, channel: str, target: str) -> DeliveryState:
    db = client.database
    p: dict[str, Any] = {"a": alert.alert_id, "c": channel, "t": target}
    rows = client.query(
        f"SELECT attempt, outcome, toUnixTimestamp64Milli(recorded_at) AS at FROM {db}.alerts "
        "WHERE alert_id = {a:String} AND channel = {c:String} AND target = {t:String}", p)
    intents = client.query(
        f"SELECT max(attempt) AS n FROM {db}.alert_delivery_intents "
        "WHERE alert_id = {a:String} AND channel = {c:String} AND target = {t:String}", p)
    done = any(r["outcome"] in FINAL_OUTCOMES for r in rows)
    last = max((r["attempt"] for r in rows), default=0)
    last_at = max((r["at"] for r in rows if r["attempt"] == last), default=0) / 1000
    intent = int(intents[0]["n"]) if intents else 0
    return DeliveryState(done, last, last_at, intent if intent > last else 0)


def record_intent(client: ClickHouse, alert: Alert, channel: str, target: str, attempt: int) -> None:
    insert_rows(client, "alert_delivery_intents", [orjson.dumps(
        {"alert_id": alert.alert_id, "channel": channel, "target": target, "attempt": attempt,
         "started_at": ts_text_now()})])


def ts_text_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"

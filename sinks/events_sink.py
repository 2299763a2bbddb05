"""Raw events -> `events` (every event), `spans`, `scores`, and `agents` (registration, last seen)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Message

from agenttrace.clickhouse import ClickHouse
from sinks.clickhouse_io import insert_rows
from sinks.rows import EVENTS_INSERT_SETTINGS, EventRows, event_rows, parse_ts, ts_text

log = logging.getLogger("sinks.events")


class EventsHandler:
    name = "events"
    parallel_writes = True  # batches are independent: rows keyed by event_id, agents by last_seen

    def __init__(self) -> None:
        # (project, agent) -> registration fields, so every agents row carries them: the agents table
        # keeps only the newest row per agent (ReplacingMergeTree(last_seen)).
        self._registered: dict[tuple[str, str], dict[str, Any]] = {}
        self._reload = True

    def on_assign(self) -> None:
        self._reload = True  # another worker may have registered agents of the partitions we got

    def decode(self, msg: Message) -> EventRows:
        return event_rows(msg.value(), msg.partition(), msg.offset())

    def _load_registered(self, client: ClickHouse) -> None:
        rows = client.query(
            f"SELECT project_id, agent_id, name, registered_at, metadata FROM {client.database}.agents FINAL "
            "WHERE registered_at IS NOT NULL")
        for r in rows:
            self._registered[(r["project_id"], r["agent_id"])] = {
                "name": r["name"], "registered_at": r["registered_at"], "metadata": r["metadata"]}
        self._reload = False

    def write(self, client: ClickHouse, items: list[EventRows], token: str) -> None:
        if self._reload:
            self._load_registered(client)
        insert_rows(client, "events", [e.event for e in items], token, EVENTS_INSERT_SETTINGS)
        insert_rows(client, "spans", [e.span for e in items if e.span is not None], token)
        insert_rows(client, "scores", [e.score for e in items if e.score is not None], token)
        insert_rows(client, "agents", self._agent_rows(items), token)

    def _agent_rows(self, items: list[EventRows]) -> list[bytes]:
        # Normalized events carry one ISO format (UTC, "Z"), so the latest per agent is the largest
        # string; only that one is parsed.
        latest: dict[tuple[str, str], str] = {}
        for e in items:
            k = (e.project_id, e.agent_id)
            if e.timestamp > latest.get(k, ""):
                latest[k] = e.timestamp
            if e.registration is not None:
                self._registered[k] = e.registration
        now = datetime.now(UTC)
        rows = []
        for (project, agent), ts in latest.items():
            try:
                t = min(parse_ts(ts), now)  # a clock in the future must not pin last_seen
            except ValueError:
                continue
            row: dict[str, Any] = {"project_id": project, "agent_id": agent, "last_seen": ts_text(t)}
            reg = self._registered.get((project, agent))
            if reg:
                meta = reg["metadata"]
                row.update(name=reg["name"], registered_at=reg["registered_at"],
                           metadata=meta if isinstance(meta, str) else orjson.dumps(meta).decode())
            rows.append(orjson.dumps(row))
        return rows

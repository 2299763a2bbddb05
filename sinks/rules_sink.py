"""The compacted rules topic -> `alert_rules` (current state; a tombstone is a row with deleted=true).

version = the record's offset, so the latest record of a rule wins under FINAL even on re-reads.
A tombstone has only the key (rule id); its project and type come from the rule's last known row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Message
from pydantic import ValidationError

from agenttrace.clickhouse import ClickHouse
from schemas.alerts import AlertRule
from sinks.clickhouse_io import insert_rows
from sinks.rows import Poison, ts_text


class RulesHandler:
    name = "alert_rules"

    def on_assign(self) -> None:
        pass

    def decode(self, msg: Message) -> dict[str, Any]:
        key = (msg.key() or b"").decode("utf-8", "replace")
        if msg.value() is None:
            if not key:
                raise Poison("invalid_rule", "key: a tombstone needs the rule id as key")
            return {"id": key, "deleted": True, "version": msg.offset()}
        try:
            rule = AlertRule.model_validate_json(msg.value())
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first["loc"]) or "value"
            raise Poison("invalid_rule", f"{field}: {first['msg']}") from None
        return {"project_id": rule.project_id, "id": rule.id, "type": rule.type,
                "rule": rule.model_dump_json(), "enabled": rule.enabled, "deleted": False,
                "updated_at": ts_text(rule.updated_at), "version": msg.offset()}

    def write(self, client: ClickHouse, items: list[dict[str, Any]], token: str) -> None:
        known: dict[str, dict[str, Any]] = {}
        rows = []
        for it in items:
            if it["deleted"]:
                last = known.get(it["id"]) or self._last(client, it["id"])
                it = {"project_id": last.get("project_id", ""), "id": it["id"], "type": last.get("type", ""),
                      "rule": last.get("rule", "{}"), "enabled": False, "deleted": True,
                      "updated_at": ts_text(datetime.now(UTC)), "version": it["version"]}
            known[it["id"]] = it
            rows.append(orjson.dumps(it))
        insert_rows(client, "alert_rules", rows, token)

    @staticmethod
    def _last(client: ClickHouse, rule_id: str) -> dict[str, Any]:
        rows = client.query(
            f"SELECT project_id, type, rule FROM {client.database}.alert_rules WHERE id = {{id:String}} "
            "ORDER BY version DESC LIMIT 1", {"id": rule_id})
        return rows[0] if rows else {}

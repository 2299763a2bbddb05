"""Alert rules: the gateway's view of the compacted `agenttrace.alert-rules.v1` topic, and rule edits.

The topic is the only store. Each gateway process reads it from the beginning in a background
thread; before a read-modify-write (PUT, PATCH toggle, DELETE) it waits until it has consumed up
to the topic's end, so edits made through another worker or gateway are seen.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from pydantic import ValidationError

from schemas.alerts import AlertRule
from schemas.events import utcnow
from schemas.settings import Settings
from schemas.topics import ALERT_RULES

log = logging.getLogger("ingest.rules")

_QUIET = logging.getLogger("ingest.rules.rdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

# Friendlier names some clients send, mapped onto the rule model.
_ALIASES = {"email": "email_to", "emails": "email_to", "webhook": "webhook_url", "rule_type": "type"}
_SERVER_FIELDS = ("id", "project_id", "created_at", "updated_at")


class RuleInputError(ValueError):
    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def _clean(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RuleInputError([{"field": "body", "message": "must be a JSON object"}])
    out: dict[str, Any] = {}
    for k, v in body.items():
        k = _ALIASES.get(k, k)
        if k in _SERVER_FIELDS:
            continue  # set by the gateway: id on create, project from the key, times now
        if k == "email_to" and isinstance(v, str):
            v = [x.strip() for x in v.split(",") if x.strip()]
        out[k] = v
    return out


def _validate(doc: dict[str, Any]) -> AlertRule:
    try:
        return AlertRule.model_validate(doc)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            message = err["msg"].removeprefix("Value error, ")
            # Rule-level checks (threshold by type) name their field first in the message.
            field = ".".join(str(p) for p in err["loc"]) or next(
                (f for f in AlertRule.model_fields if message.startswith(f + " ")), "rule")
            errors.append({"field": field, "message": message})
        raise RuleInputError(errors) from None


def new_rule(body: Any, project_id: str) -> AlertRule:
    return _validate({**_clean(body), "id": uuid.uuid4().hex, "project_id": project_id})


def updated_rule(current: AlertRule, body: Any) -> AlertRule:
    """PUT merges the given fields into the rule (omitted fields keep their value)."""
    doc = current.model_dump()
    doc.update(_clean(body))
    doc.update(id=current.id, project_id=current.project_id, created_at=current.created_at, updated_at=utcnow())
    return _validate(doc)


def toggled_rule(current: AlertRule, enabled: bool | None) -> AlertRule:
    return current.model_copy(update={"enabled": (not current.enabled) if enabled is None else enabled,
                                      "updated_at": utcnow()})


class RuleStore:
    """Current rules by id, kept from the compacted topic by a consumer thread."""

    def __init__(self, settings: Settings):
        self.topic = settings.topic(ALERT_RULES)
        self._rules: dict[str, AlertRule] = {}
        self._positions: dict[int, int] = {}
        self._lock = threading.Lock()
        self._running = True
        conf = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"agenttrace-gateway-rules-{uuid.uuid4().hex[:8]}",  # never committed; assign()-based
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        self._consumer = Consumer(conf, logger=_QUIET)
        # A second handle answers end-offset queries: one blocked in poll() on another thread stalls them.
        self._probe = Consumer(conf, logger=_QUIET)
        self._assigned: list[int] = []
        self._thread = threading.Thread(target=self._run, name="alert-rules", daemon=True)
        self._thread.start()

    def _assign(self) -> bool:
        try:
            md = self._consumer.list_topics(self.topic, timeout=5)
        except KafkaException:
            return False
        topic = md.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return False
        self._assigned = sorted(topic.partitions)
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._assigned])
        return True

    def _run(self) -> None:
        while self._running and not self._assign():
            time.sleep(1)
        while self._running:
            msg = self._consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            rule_id = (msg.key() or b"").decode("utf-8", "replace")
            value = msg.value()
            with self._lock:
                if value is None:
                    self._rules.pop(rule_id, None)
                else:
                    try:
                        self._rules[rule_id] = AlertRule.model_validate_json(value)
                    except ValidationError:
                        log.warning("unreadable alert rule on the topic", extra={"fields": {"rule_id": rule_id}})
                self._positions[msg.partition()] = msg.offset() + 1

    def _ends(self) -> dict[int, int]:
        return {p: self._probe.get_watermark_offsets(TopicPartition(self.topic, p), timeout=3, cached=False)[1]
                for p in self._assigned}

    async def sync(self, timeout: float = 5.0) -> None:
        """Wait until every rule published before this call is in the view."""
        deadline = time.monotonic() + timeout
        while not self._assigned:
            if time.monotonic() > deadline:
                raise TimeoutError("alert-rules topic not readable")
            await asyncio.sleep(0.05)
        ends = await asyncio.to_thread(self._ends)
        while True:
            with self._lock:
                if all(self._positions.get(p, 0) >= end for p, end in ends.items()):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("alert-rules topic not caught up")
            await asyncio.sleep(0.02)

    def get(self, rule_id: str, project_id: str) -> AlertRule | None:
        with self._lock:
            rule = self._rules.get(rule_id)
        # Another project's rule is indistinguishable from a missing one.
        return rule if rule is not None and rule.project_id == project_id else None

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2)
        self._consumer.close()
        self._probe.close()

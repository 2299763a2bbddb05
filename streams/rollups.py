"""The Bytewax dataflow: events -> per-partition windows -> rollups (+ DLQ), and per-project alerts.

    events topic ──(one item per poll, keyed by Kafka partition)──► windows  ──► rollups, dlq
                                                                       │ facts per project
    rules topic ──(keyed by rule id → project)──────────────────────► alerts ──► alerts topic

Keying the window stage by Kafka partition keeps each partition's log order, which makes every
output a function of the log (see windows.py). Alerts are keyed by project so project-wide
budgets see every agent.
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic

from schemas.alerts import AlertRule
from schemas.events import EventValidationError, LlmCall, event_from_json
from schemas.pricing import price_event
from schemas.topics import ALERT_RULES, ALERTS, DLQ, EVENTS, ROLLUPS
from streams import metrics
from streams.alerts import Facts, ProjectAlerts, alert_record
from streams.config import StreamConfig
from streams.decode import decode_event
from streams.kafka_io import EventsSource, ProducerSink, Raw, Record, RulesSource
from streams.windows import Outcome, PartitionWindows

log = logging.getLogger("streams.rollups")
_ACTIVE: dict[str, int] = {}  # partition -> open aggregates, summed into the gauge


@dataclass
class FlowSpec:
    """Everything a dataflow needs besides the broker: topics, mode and knobs."""

    bootstrap: str
    events_topic: str
    rollups_topic: str
    alerts_topic: str
    dlq_topic: str
    rules_topic: str | None  # None: no live rules input (replay/bounded runs use `rules`)
    cfg: StreamConfig
    live: bool = True  # unbounded input, processing-time progress
    replay: bool = False
    reprice: bool = False
    start: dict[int, int] | None = None
    end: dict[int, int] | None = None
    min_window: int | None = None
    max_window: int | None = None
    rules: list[tuple[str, int, AlertRule | None]] = field(default_factory=list)
    flow_name: str = "rollups"
    workers: int = 1  # total Bytewax workers of the run (routing of partitions to workers)

    @classmethod
    def from_settings(cls, settings: Any, cfg: StreamConfig, **kw: Any) -> FlowSpec:
        return cls(bootstrap=settings.kafka_bootstrap, events_topic=settings.topic(EVENTS),
                   rollups_topic=settings.topic(ROLLUPS), alerts_topic=settings.topic(ALERTS),
                   dlq_topic=settings.topic(DLQ), rules_topic=kw.pop("rules_topic", settings.topic(ALERT_RULES)),
                   cfg=cfg, **kw)


def _dlq(spec: FlowSpec, raw: Raw, part: str, reason: str, detail: str = "") -> Record:
    # The original record's own headers are not carried (the source does not read them, see
    # kafka_io.Raw); topic, partition and offset lead back to it, key and value are copied.
    key, value, offset = raw
    headers = [("reason", reason.encode()), ("original_topic", spec.events_topic.encode()),
               ("original_partition", part.encode()), ("original_offset", str(offset).encode())]
    if detail:
        headers.append(("error", detail[:1000].encode()))
    return (spec.dlq_topic, key, value, headers)


class WindowLogic(StatefulBatchLogic):
    """Windows of one Kafka partition. Emits ("out", record) and ("facts", (project, facts))."""

    def __init__(self, spec: FlowSpec, resume: bytes | None):
        # Bytewax builds logic without telling the key; the partition arrives with each batch.
        self.spec, self.part = spec, "?"
        cfg = spec.cfg
        if resume is not None:
            self.part, self.w, self.last_arrival = pickle.loads(resume)
        else:
            self.w = PartitionWindows(cfg.window_seconds, cfg.wait_seconds, cfg.lateness_seconds,
                                      spec.min_window, spec.max_window)
            self.last_arrival = time.time()

    def on_batch(self, values: list[tuple[str, list[Raw]]]) -> tuple[list, bool]:
        spec, w = self.spec, self.w
        out: list[Any] = []
        seen: dict[tuple[str, str], float] = {}
        res = Outcome()
        n = 0
        # Per-event loop: names hoisted into locals, the timestamp computed once (it is hot).
        reprice = spec.reprice
        decode = event_from_json if reprice else decode_event  # repricing needs the whole llm call
        add, seen_get = w.add, seen.get
        for part, batch in values:
            self.part = part
            for raw in batch:
                try:
                    ev = decode(raw[1] or b"")
                except EventValidationError as exc:
                    metrics.INVALID.inc()
                    out.append(("out", _dlq(spec, raw, self.part, "invalid", str(exc))))
                    continue
                n += 1
                if reprice and isinstance(ev, LlmCall):
                    price_event(ev)
                ts = ev.timestamp.timestamp()
                if not add(ev, res, ts):
                    out.append(("out", _dlq(spec, raw, self.part, "late")))
                    metrics.LATE.labels("too_late").inc()
                pa = (ev.project_id, ev.agent_id)
                if seen_get(pa, -1.0) < ts:
                    seen[pa] = ts
        metrics.EVENTS.labels(spec.flow_name).inc(n)
        if res.late:
            metrics.LATE.labels("late").inc(res.late)
        self.last_arrival = time.time()
        facts: dict[str, Facts] = {}
        for (project, agent), ts in seen.items():
            facts.setdefault(project, {"seen": {}, "buckets": []})["seen"][agent] = ts
        for wk in res.touched:  # current totals of every window this batch changed
            start, (project, agent, provider, model) = wk
            agg = w.windows[wk]
            facts[project]["buckets"].append((agent, start, provider, model, agg.calls, agg.errors,
                                              agg.cost_nanos, dict(agg.latency)))
        self._flush(out, res)
        for project, f in facts.items():
            out.append(("facts", (project, ("facts", (project, f)))))
        return out, False

    def _flush(self, out: list, res: Outcome, everything: bool = False) -> None:
        self.w.flush(res, everything=everything, now=time.time() if self.spec.live else None)
        for key, value in res.rollups:
            out.append(("out", (self.spec.rollups_topic, key, value, [("content-type", b"application/json")])))
        for lag in res.emit_lags:
            metrics.EMIT_LAG.observe(lag)
        _ACTIVE[self.part] = self.w.active_keys
        metrics.ACTIVE_KEYS.set(sum(_ACTIVE.values()))

    def on_notify(self) -> tuple[list, bool]:
        out: list[Any] = []
        if self.spec.cfg.idle_advance:
            self.w.advance_idle(time.time() - self.last_arrival)
        self._flush(out, Outcome())
        return out, False

    def on_eof(self) -> tuple[list, bool]:
        out: list[Any] = []
        if not self.spec.live:
            self._flush(out, Outcome(), everything=True)
        return out, False

    def notify_at(self) -> datetime | None:
        if self.spec.live and self.w.dirty:
            return datetime.now(UTC) + timedelta(seconds=self.spec.cfg.tick_seconds)
        return None

    def snapshot(self) -> bytes:
        return pickle.dumps((self.part, self.w, self.last_arrival), protocol=pickle.HIGHEST_PROTOCOL)


class AlertLogic(StatefulBatchLogic):
    """Alert state of one project. Inputs ("facts", facts) and ("rule", (id, offset, rule|None))."""

    def __init__(self, spec: FlowSpec, resume: bytes | None):
        # Bytewax builds logic without telling the key; every input names its project.
        self.spec = spec
        self.state: ProjectAlerts | None = pickle.loads(resume) if resume is not None else None

    def _state(self, project: str) -> ProjectAlerts:
        if self.state is None:
            spec = self.spec
            self.state = ProjectAlerts(project, spec.cfg.minute_seconds, spec.cfg.alert_history_minutes,
                                       replay=spec.replay)
            for rule_id, offset, rule in spec.rules:  # replay: the rules as they are now
                if rule is not None and rule.project_id == project:
                    self.state.apply_rule(rule_id, rule, offset, time.time())
        return self.state

    def _emit(self, alerts: list) -> list[Record]:
        out = []
        for a in alerts:
            metrics.ALERTS.labels(a.rule_type, a.state).inc()
            key, value = alert_record(a)
            out.append((self.spec.alerts_topic, key, value, [("content-type", b"application/json")]))
        return out

    def on_batch(self, values: list[tuple[str, Any]]) -> tuple[list, bool]:
        now = time.time()
        alerts = []
        touched: set[str] | None = set()
        for kind, (project, payload) in values:
            state = self._state(project)
            if kind == "facts":
                state.add_facts(payload, now)
                if touched is not None:
                    touched.update(payload["seen"])
            else:
                rule_id, offset, rule = payload
                alerts += state.apply_rule(rule_id, rule, offset, now)
                touched = None  # a new or changed rule: check every agent
        alerts += self._state(values[0][1][0]).evaluate(now, touched)
        return self._emit(alerts), False

    def on_notify(self) -> tuple[list, bool]:
        return (self._emit(self.state.evaluate(time.time())) if self.state else []), False

    def on_eof(self) -> tuple[list, bool]:
        return (self._emit(self.state.evaluate(time.time())) if self.state and not self.spec.live else []), False

    def notify_at(self) -> datetime | None:
        if self.spec.live and self.state is not None and self.state.rules:
            return datetime.now(UTC) + timedelta(seconds=self.spec.cfg.tick_seconds)
        return None

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


def _rule_route(project: str | None, item: tuple[int, bytes | None]) -> tuple[str | None, list]:
    """Keyed by rule id: remember the rule's project so a tombstone reaches the right project."""
    offset, value = item
    if value is None:
        return project, [(project, (offset, None))] if project else []
    try:
        rule = AlertRule.model_validate_json(value)
    except ValueError as exc:
        log.warning("bad alert rule ignored", extra={"fields": {"error": str(exc)[:500]}})
        return project, []
    out = [(rule.project_id, (offset, rule))]
    if project and project != rule.project_id:  # moved project: drop it from the old one
        out.append((project, (offset, None)))
    return rule.project_id, out


def build_flow(spec: FlowSpec) -> Dataflow:
    flow = Dataflow(spec.flow_name)
    src = EventsSource(spec.bootstrap, spec.events_topic, spec.start, spec.end, spec.cfg.batch_size,
                       spec.workers)
    batches = op.input("events", flow, src)  # items: (partition, (partition, [raw, ...]))
    windows = op.stateful_batch("windows", batches, lambda resume: WindowLogic(spec, resume))
    tagged = op.map("untag_windows", windows, lambda kv: kv[1])
    records = op.filter_map("rollup_records", tagged, lambda t: t[1] if t[0] == "out" else None)
    to_alerts = op.filter_map("facts", tagged, lambda t: t[1] if t[0] == "facts" else None)
    if spec.rules_topic is not None:
        rules_in = op.input("rules", flow, RulesSource(spec.bootstrap, spec.rules_topic))
        routed = op.stateful_map("route_rules", rules_in, _rule_route)
        rule_items = op.flat_map(
            "rule_items", routed,
            lambda kv: [(proj, ("rule", (proj, (kv[0], off, rule)))) for proj, (off, rule) in kv[1]])
        to_alerts = op.merge("alert_inputs", to_alerts, rule_items)
    alerts = op.stateful_batch("alerts", to_alerts, lambda resume: AlertLogic(spec, resume))
    alert_records = op.map("alert_records", alerts, lambda kv: kv[1])
    op.output("out", op.merge("all_records", records, alert_records), ProducerSink(spec.bootstrap))
    return flow

"""Alert rule evaluation for one project: per-agent minute buckets, daily spend, last-seen times.

Event-time rules (error_rate, latency_p95, budget) are evaluated against the project's event
clock (the newest event time seen), so a replay evaluates them the same way. `agent_down` runs
on processing time: silence itself fires it, on the periodic tick. Each (rule, subject) fires once
when its condition becomes true and resolves once when it clears, or when the rule is disabled
or deleted while firing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.alerts import Alert, AlertRule
from schemas.sketch import Sketch

# What the window stage tells the alert stage after each batch, per project:
#   {"seen": {agent: newest event time}, "buckets": [(agent, window_start, provider, model,
#    calls, errors, cost_nanos, {sketch_key: n}), ...]}
# Buckets carry a window aggregate's CURRENT totals (not deltas), so they replace what the alert stage
# had for that window and a re-sent bucket never counts twice.
Facts = dict[str, Any]


def _fmt(x: float) -> str:
    return f"{x:g}"


def _dur(minutes: float) -> str:
    if minutes >= 60 and minutes % 60 == 0:
        return f"{int(minutes // 60)}h"
    return f"{minutes:g}m"


@dataclass
class AgentState:
    # (window start, provider, model) -> [calls, errors, cost_nanos, sketch]
    buckets: dict[tuple[int, str, str], list] = field(default_factory=dict)
    day_spend: dict[str, int] = field(default_factory=dict)  # UTC day -> nano-USD
    last_seen: float = 0.0  # processing time of the last event


@dataclass
class Verdict:
    cond: bool
    value: float | None
    text: str  # the readable sentence, without a fired/resolved prefix


class ProjectAlerts:
    def __init__(self, project_id: str, minute_seconds: float = 60.0, history_minutes: int = 60,
                 replay: bool = False):
        self.project_id = project_id
        self.minute_seconds = minute_seconds
        self.history_minutes = history_minutes
        self.replay = replay
        self.rules: dict[str, AlertRule] = {}
        self.rule_seen: dict[str, float] = {}  # processing time a rule became active (agent_down baseline)
        self.applied: dict[str, int] = {}  # rule id -> offset of the last rule record applied
        self.agents: dict[str, AgentState] = {}
        self.clock: float | None = None  # newest event time of the project
        self.firing: dict[tuple[str, str], str] = {}  # (rule, subject) -> fired alert id
        self.pruned_minute = 0

    # ---- inputs -------------------------------------------------------------------------
    def apply_rule(self, rule_id: str, rule: AlertRule | None, offset: int, now: float) -> list[Alert]:
        """Create/change (rule) or delete (None). Records at or below an applied offset are
        ignored, so re-reading the compacted topic after a restart changes nothing."""
        if offset <= self.applied.get(rule_id, -1):
            return []
        self.applied[rule_id] = offset
        out: list[Alert] = []
        old = self.rules.get(rule_id)
        if rule is None or not rule.enabled:
            why = "deleted" if rule is None else "disabled"
            out += self._resolve_all(rule_id, old or rule, f"rule {why}")
            self.rules.pop(rule_id, None)
            self.rule_seen.pop(rule_id, None)
            return out
        if old is None or not old.enabled:
            self.rule_seen[rule_id] = now
        self.rules[rule_id] = rule
        return out

    def add_facts(self, facts: Facts, now: float) -> None:
        for agent, ts in facts["seen"].items():
            st = self.agents.get(agent)
            if st is None:
                st = self.agents[agent] = AgentState()
            st.last_seen = now
            if self.clock is None or ts > self.clock:
                self.clock = ts
        for agent, start, provider, model, calls, errors, cost, sk in facts["buckets"]:
            st = self.agents[agent]
            key = (start, provider, model)
            old = st.buckets.get(key)
            delta = cost - (old[2] if old else 0)
            st.buckets[key] = [calls, errors, cost, sk]
            if delta:
                day = datetime.fromtimestamp(start, UTC).date().isoformat()
                st.day_spend[day] = st.day_spend.get(day, 0) + delta
        self._prune()

    def _prune(self) -> None:
        # Once per minute of event time: walking every agent on every batch would cost O(agents).
        if self.clock is None or int(self.clock // 60) <= self.pruned_minute:
            return
        self.pruned_minute = int(self.clock // 60)
        keep = max([self.history_minutes] + [r.window_minutes for r in self.rules.values()])
        oldest = self.clock - keep * 60 - 60
        today = datetime.fromtimestamp(self.clock, UTC).date().isoformat()
        for st in self.agents.values():
            for k in [k for k in st.buckets if k[0] < oldest]:
                del st.buckets[k]
            for d in [d for d in st.day_spend if d < today]:
                del st.day_spend[d]

    # ---- evaluation ---------------------------------------------------------------------
    def evaluate(self, now: float, only: set[str] | None = None) -> list[Alert]:
        """Check every rule; `only`: just these agents (a batch touched them; the periodic tick checks
        everyone, e.g. when the clock moved windows on)."""
        out: list[Alert] = []
        for rule in sorted(self.rules.values(), key=lambda r: r.id):
            if rule.project_id != self.project_id:
                continue
            for subject, verdict in self._verdicts(rule, now, only):
                out += self._transition(rule, subject, verdict, now)
        return out

    def _subjects(self, rule: AlertRule, only: set[str] | None = None) -> list[str]:
        subjects = [rule.agent_id] if rule.agent_id else sorted(self.agents)
        return subjects if only is None else [a for a in subjects if a in only]

    def _verdicts(self, rule: AlertRule, now: float, only: set[str] | None = None):
        if rule.type == "agent_down":
            if self.replay:
                return  # silence is a processing-time fact; a replay has none
            for agent in self._subjects(rule, only):
                st = self.agents.get(agent)
                since = max(st.last_seen if st else 0.0, self.rule_seen.get(rule.id, now))
                silent_min = (now - since) / self.minute_seconds
                cond = silent_min >= rule.duration_minutes
                text = (f'Agent "{agent}" has sent no heartbeat or event for {_dur(math.floor(silent_min))} '
                        f"(threshold: {_dur(rule.duration_minutes)})" if cond
                        else f'Agent "{agent}" is sending events again')
                yield agent, Verdict(cond, round(silent_min, 2), text)
            return
        if self.clock is None:
            return
        if rule.type == "budget":
            day = datetime.fromtimestamp(self.clock, UTC).date().isoformat()
            if rule.scope == "project":
                nanos = sum(st.day_spend.get(day, 0) for st in self.agents.values())
                yield self.project_id, self._budget(f'Project "{self.project_id}"', nanos, rule)
            else:
                for agent in self._subjects(rule, only):
                    st = self.agents.get(agent)
                    yield agent, self._budget(f'Agent "{agent}"', st.day_spend.get(day, 0) if st else 0, rule)
            return
        first = (int(self.clock // 60) - rule.window_minutes + 1) * 60
        for agent in self._subjects(rule, only):
            st = self.agents.get(agent)
            buckets = [b for k, b in st.buckets.items() if k[0] >= first] if st else []
            calls = sum(b[0] for b in buckets)
            over = f"over the last {_dur(rule.window_minutes)}"
            if rule.type == "error_rate":
                errors = sum(b[1] for b in buckets)
                rate = 100.0 * errors / calls if calls else 0.0
                cond = calls >= rule.min_calls and rate > (rule.threshold or 0)
                text = (f'Agent "{agent}" error rate is {rate:.1f}% ({errors}/{calls}) {over} '
                        f"(threshold: {_fmt(rule.threshold or 0)}%)")
                yield agent, Verdict(cond, round(rate, 4), text)
            else:  # latency_p95
                sk = Sketch()
                for b in buckets:
                    for k, n in b[3].items():
                        sk.counts[k] = sk.counts.get(k, 0) + n
                p95 = sk.quantile(0.95)
                cond = p95 is not None and p95 > (rule.threshold or 0)
                shown = f"{p95:.0f}ms" if p95 is not None else "n/a"
                text = f'Agent "{agent}" p95 latency is {shown} {over} (threshold: {_fmt(rule.threshold or 0)}ms)'
                yield agent, Verdict(cond, round(p95, 3) if p95 is not None else None, text)

    @staticmethod
    def _budget(who: str, nanos: int, rule: AlertRule) -> Verdict:
        usd = nanos / 1e9
        return Verdict(usd > (rule.threshold or 0), round(usd, 6),
                       f"{who} spend today is ${usd:.2f} (threshold: ${_fmt(rule.threshold or 0)})")

    def _stamp(self, rule: AlertRule, subject: str, now: float) -> float:
        if rule.type == "agent_down":
            st = self.agents.get(subject)
            since = max(st.last_seen if st else 0.0, self.rule_seen.get(rule.id, now))
            return min(now, since + rule.duration_minutes * self.minute_seconds)
        return self.clock if self.clock is not None else now

    def _transition(self, rule: AlertRule, subject: str, v: Verdict, now: float) -> list[Alert]:
        key = (rule.id, subject)
        if v.cond and key not in self.firing:
            alert = self._alert(rule, subject, "fired", v.value, v.text, self._stamp(rule, subject, now))
            self.firing[key] = alert.alert_id
            return [alert]
        if not v.cond and key in self.firing:
            del self.firing[key]
            stamp = now if rule.type == "agent_down" else self._stamp(rule, subject, now)
            return [self._alert(rule, subject, "resolved", v.value, v.text, stamp)]
        return []

    def _resolve_all(self, rule_id: str, rule: AlertRule | None, why: str) -> list[Alert]:
        out = []
        for key in sorted(k for k in self.firing if k[0] == rule_id):
            del self.firing[key]
            if rule is not None:
                stamp = self.clock if self.clock is not None else 0.0
                out.append(self._alert(rule, key[1], "resolved", None, f"{why}: {rule.name or rule.type} "
                                       f"no longer watches {key[1]!r}", stamp))
        return out

    def _alert(self, rule: AlertRule, subject: str, state: str, value: float | None, text: str,
               stamp: float) -> Alert:
        ts = datetime.fromtimestamp(round(stamp, 3), UTC)
        window = rule.window_minutes if rule.type in ("error_rate", "latency_p95") else (
            rule.duration_minutes if rule.type == "agent_down" else 24 * 60)
        is_project = rule.type == "budget" and rule.scope == "project"
        return Alert(
            alert_id=f"{rule.id}/{subject}/{state}/{ts.isoformat().replace('+00:00', 'Z')}",
            rule_id=rule.id, rule_type=rule.type, project_id=self.project_id,
            agent_id=None if is_project else subject, subject=subject, state=state,  # type: ignore[arg-type]
            value=value, threshold=rule.threshold, window_minutes=window,
            message=text if state == "fired" or text.startswith("rule ") else f"Resolved: {text}",
            timestamp=ts, replay=self.replay,
            webhook_url=str(rule.webhook_url) if rule.webhook_url else None, email_to=list(rule.email_to),
        )


def alert_record(alert: Alert) -> tuple[bytes, bytes]:
    return f"{alert.rule_id}/{alert.subject}".encode(), orjson.dumps(alert.model_dump(mode="json"))

"""The alert engine's pure core: ``evaluate(rules, state, samples) -> (state, alerts)``.

The wiring samples each rule's metric (on a closed bar of its timeframe, or on a feed-health tick)
and hands the samples in; the engine decides. No clock, no I/O: the same samples always give the
same alerts, which is what the tests replay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from quantpanel.alerts.rules import Rule

__all__ = ["Sample", "RuleState", "Alert", "evaluate", "ALERT_COLUMNS"]


@dataclass(frozen=True, slots=True)
class Sample:
    """A rule's metric at ``time`` (epoch ms: the bar's time, or the health tick's wall time)."""

    time: int
    value: float


@dataclass(frozen=True, slots=True)
class RuleState:
    prev: float = math.nan  # the last finite value (for crossings)
    streak: int = 0  # consecutive evaluations the condition held
    armed: bool = True  # False after firing, until the value is back past the reset level
    last_fired: int | None = None  # time of the last alert (for the cooldown)


@dataclass(frozen=True, slots=True)
class Alert:
    time: int
    rule_id: int
    rule: str  # the rule's name
    metric: str
    subject: str  # pair "A/B", symbol, or "feed"
    timeframe: str
    value: float
    threshold: float
    condition: str  # the rule, in words


ALERT_COLUMNS = ("time", "rule_id", "rule", "metric", "subject", "timeframe", "value", "threshold",
                 "condition")


def _holds(rule: Rule, prev: float, v: float) -> bool:
    op, th = rule.op, rule.threshold
    if op == ">":
        return v > th
    if op == "<":
        return v < th
    if op == "outside":
        lo, hi = rule.band
        return v < lo or v > hi
    if prev != prev:  # crossings need a previous value
        return False
    if op == "crosses_above":
        return prev <= th < v
    return prev >= th > v  # crosses_below


def _rearms(rule: Rule, v: float) -> bool:
    """Back past the reset level: the rule may fire again."""
    op = rule.op
    if op == "outside":
        lo, hi = rule.reset_band
        return lo <= v <= hi
    reset = rule.threshold if rule.reset is None else rule.reset
    if op in (">", "crosses_above"):
        return v <= reset
    return v >= reset


def step(rule: Rule, state: RuleState, sample: Sample) -> tuple[RuleState, Alert | None]:
    """One rule, one sample."""
    v = sample.value
    if not math.isfinite(v):  # undefined metric: no signal, the streak breaks, nothing re-arms
        return replace(state, streak=0), None
    armed = state.armed or _rearms(rule, v)
    holds = _holds(rule, state.prev, v)
    streak = state.streak + 1 if holds else 0
    fire = (holds and armed and streak >= rule.for_bars and not rule.muted
            and (state.last_fired is None or sample.time - state.last_fired >= rule.cooldown_s * 1000))
    if not fire:
        return RuleState(v, streak, armed, state.last_fired), None
    alert = Alert(sample.time, rule.id if rule.id is not None else -1, rule.name, rule.metric,
                  rule.subject, "" if rule.metric in ("ticks_per_s", "feed_lag_s") else rule.timeframe,
                  v, rule.threshold, rule.describe())
    return RuleState(v, streak, False, sample.time), alert


def evaluate(
    rules: Mapping[int, Rule], states: Mapping[int, RuleState], samples: Mapping[int, list[Sample]]
) -> tuple[dict[int, RuleState], list[Alert]]:
    """Advance every rule over its new samples (oldest first); alerts in time order."""
    out = dict(states)
    alerts: list[Alert] = []
    for rid, rule_samples in samples.items():
        rule = rules.get(rid)
        if rule is None:
            continue
        st = out.get(rid, RuleState())
        for s in rule_samples:
            st, alert = step(rule, st, s)
            if alert is not None:
                alerts.append(alert)
        out[rid] = st
    alerts.sort(key=lambda a: a.time)
    return out, alerts

"""The pure alert engine on constructed series: every operator, persistence, hysteresis, cooldown."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantpanel.alerts.engine import RuleState, Sample, evaluate
from quantpanel.alerts.rules import Rule, RuleError, parse_rule


def rule(**kw) -> Rule:
    base = {"id": 1, "name": "r", "metric": "zscore", "pair": ("A", "B"), "timeframe": "1s"}
    return Rule(**{**base, **kw})


def fired(r: Rule, values: list[float], *, step_ms: int = 1000) -> list[int]:
    """Indices of the samples that fired."""
    _, alerts = evaluate({1: r}, {}, {1: [Sample(i * step_ms, v) for i, v in enumerate(values)]})
    return [a.time // step_ms for a in alerts]


def test_greater_and_less_fire_when_armed_and_rearm_past_the_threshold():
    assert fired(rule(op=">", threshold=2), [1, 3, 3, 1, 2.5, 2, 4]) == [1, 4, 6]
    assert fired(rule(op="<", threshold=-2), [0, -3, -2.5, 0, -3]) == [1, 4]


def test_crossings_need_the_previous_value_on_the_other_side():
    assert fired(rule(op="crosses_above", threshold=1), [2, 0, 1, 1.5, 0.5, 2]) == [3, 5]
    assert fired(rule(op="crosses_below", threshold=1), [0, 2, 1, 0.5, 1.5, 0]) == [3, 5]


def test_outside_band_symmetric_by_default_and_explicit_lower():
    assert fired(rule(op="outside", threshold=2), [0, 2.5, 0, -2.5, -3, 0]) == [1, 3]
    assert fired(rule(op="outside", threshold=5, lower=1), [3, 0.5, 3, 6]) == [1, 3]


def test_for_bars_requires_consecutive_evaluations():
    assert fired(rule(op=">", threshold=2, for_bars=3), [3, 3, 1, 3, 3, 3, 3]) == [5]


def test_hysteresis_fires_once_per_cycle_while_oscillating_around_the_threshold():
    wobble = [1.9, 2.1, 1.95, 2.05, 1.99, 2.2, 1.0, 2.1, 1.98, 2.3]
    assert fired(rule(op=">", threshold=2), wobble) == [1, 3, 5, 7, 9]  # no hysteresis: every return
    assert fired(rule(op=">", threshold=2, reset=1.5), wobble) == [1, 7]  # re-armed only at 1.0
    band = [0, 2.1, 1.9, 2.1, -2.2, 0.5, 2.5]
    assert fired(rule(op="outside", threshold=2, reset=1), band) == [1, 6]


def test_cooldown_counts_sample_time():
    r = rule(op=">", threshold=2, cooldown_s=3)
    assert fired(r, [3, 1, 3, 1, 3, 1, 3]) == [0, 4]  # t=2 is within 3 s of t=0


def test_nan_breaks_the_streak_and_is_not_a_crossing():
    assert fired(rule(op=">", threshold=2, for_bars=2), [3, math.nan, 3, 3]) == [3]
    assert fired(rule(op="crosses_above", threshold=1), [0, math.nan, 2]) == [2]  # prev stays 0


def test_muted_rules_track_state_but_never_fire():
    assert fired(rule(op=">", threshold=2, muted=True), [3, 1, 3]) == []


def test_state_carries_across_calls_exactly_like_one_call():
    r = rule(op=">", threshold=1, reset=0.5, for_bars=2, cooldown_s=2)
    rng = np.random.default_rng(3)
    values = list(rng.normal(0, 1.2, 400))
    whole = fired(r, values)
    st_: dict[int, RuleState] = {}
    parts = []
    for i in range(0, 400, 37):
        st_, alerts = evaluate({1: r}, st_, {1: [Sample(j * 1000, values[j]) for j in range(i, min(i + 37, 400))]})
        parts += [a.time // 1000 for a in alerts]
    assert parts == whole and whole


def reference(values: list[float], threshold: float, reset: float) -> list[int]:
    """An independent '|z| > threshold, re-arm inside ±reset' loop."""
    out, armed = [], True
    for i, v in enumerate(values):
        if abs(v) <= reset:
            armed = True
        if armed and abs(v) > threshold:
            out.append(i)
            armed = False
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-4, 4, allow_nan=False), min_size=1, max_size=200),
       st.floats(0.5, 3), st.floats(0, 1))
def test_outside_band_equals_an_independent_loop(values, threshold, frac):
    reset = threshold * frac
    r = rule(op="outside", threshold=threshold, reset=reset)
    assert fired(r, values) == reference(values, threshold, reset)


@pytest.mark.parametrize(("data", "field"), [
    ({"name": "x", "metric": "zscore", "op": ">", "threshold": 1}, "rule.pair"),
    ({"name": "x", "metric": "price", "op": ">", "threshold": 1}, "rule.symbol"),
    ({"name": "x", "metric": "zscore", "pair": ["A", "B"], "op": ">>", "threshold": 1}, "rule.op"),
    ({"name": "x", "metric": "zscore", "pair": ["A", "A"], "op": ">", "threshold": 1}, "rule.pair"),
    ({"name": "x", "metric": "zscore", "pair": ["A", "B"], "op": ">", "threshold": "nan"}, "rule.threshold"),
    ({"name": "x", "metric": "price", "symbol": "A", "op": "crosses_above", "threshold": 1, "for_bars": 3},
     "rule.for_bars"),
    ({"name": "x", "metric": "spread", "pair": ["A", "B"], "op": "outside", "threshold": 1, "lower": 2},
     "rule.lower"),
    ({"name": "x", "metric": "zscore", "pair": ["A", "B"], "op": ">", "threshold": 1, "colour": "red"},
     "rule.colour"),
])
def test_a_rule_that_cannot_be_parsed_names_the_field(data, field):
    with pytest.raises(RuleError, match="^" + re.escape(field) + ":"):
        parse_rule(data)

"""The alert engine's live side: sample every rule's metric from the shared pipeline, decide with
the pure ``alerts.engine.evaluate``, and emit the alerts on one stream that the store writer, the
webhook and the dashboard hub subscribe to.

Runs on the event loop inside the pipeline's callbacks (after the bar step), never on a session's
rendering path; its work per closed bar is O(rules).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from streamz import Stream

from quantpanel.alerts.engine import ALERT_COLUMNS, Alert, RuleState, Sample, evaluate
from quantpanel.alerts.rules import FEED_METRICS, MARKET_METRICS, PAIR_METRICS, Rule, inactive_reason
from quantpanel.analytics.funding import quoted_spread_bps
from quantpanel.config import Config
from quantpanel.models import Bar, MarketBatch
from quantpanel.pipeline.bars import BarUpdate
from quantpanel.pipeline.market import MarketView
from quantpanel.pipeline.pairs import PairPoint, PairRegistry, PairSpec

__all__ = ["Alerting", "alert_row"]

log = logging.getLogger(__name__)


def alert_row(a: Alert) -> tuple[object, ...]:
    """An alert as a store row, in ``ALERT_COLUMNS`` order."""
    return tuple(getattr(a, c) for c in ALERT_COLUMNS)


class Alerting:
    """Rules by id, their states, and the bars the symbol metrics and pair warm-ups need."""

    def __init__(self, config: Config, pairs: PairRegistry, *, history: dict[tuple[str, str], list[Bar]] | None = None,
                 history_bars: int = 600) -> None:
        self.config = config
        self.pairs = pairs
        self.rules: dict[int, Rule] = {}  # the active rules: evaluated
        self.inactive: dict[int, tuple[Rule, str]] = {}  # kept, not evaluated, with the reason
        self.states: dict[int, RuleState] = {}
        self.alerts: Stream = Stream(asynchronous=True, stream_name="alerts")
        self.fired = 0
        self._history_bars = history_bars
        self._bars: dict[tuple[str, str], deque[Bar]] = {}
        for key, bars in (history or {}).items():
            self._series(key).extend(b for b in bars if b.closed)

    # -- rules ---------------------------------------------------------------------------------
    def spec(self, rule: Rule) -> PairSpec:
        """The live pair analytics a pair rule watches: the same spec a Pair tab with these
        settings shows, so they share one computation."""
        assert rule.pair is not None
        w, k = self.config.windows, self.config.kalman
        return PairSpec(rule.pair[0], rule.pair[1], rule.timeframe, rule.window or w.zscore, w.lookback,
                        w.hedge_refit_bars, k.delta, k.ve)

    def set_rules(self, rules: Iterable[Rule]) -> None:
        self.rules, self.inactive, self.states = {}, {}, {}
        for r in rules:
            self.upsert(r)

    def all_rules(self) -> list[tuple[Rule, str | None]]:
        """Every rule with why it is inactive (None: active), by id."""
        both = [(r, None) for r in self.rules.values()] + list(self.inactive.values())
        return sorted(both, key=lambda rr: rr[0].id or 0)

    def upsert(self, rule: Rule) -> None:
        """Add or replace a rule (its state restarts: a changed rule is a new rule). A rule the
        feed cannot serve (``inactive_reason``) is kept but not evaluated."""
        assert rule.id is not None, "rules are stored (and get an id) before they are watched"
        self.remove(rule.id)
        reason = inactive_reason(rule, self.config.symbols, self.config.timeframes)
        if reason is not None:
            log.warning("alert rule %r is inactive: %s", rule.name, reason)
            self.inactive[rule.id] = (rule, reason)
            return
        self.rules[rule.id] = rule
        self.states[rule.id] = RuleState()
        if rule.metric in PAIR_METRICS:
            self._watch(rule)

    def remove(self, rule_id: int) -> None:
        self.rules.pop(rule_id, None)
        self.inactive.pop(rule_id, None)
        self.states.pop(rule_id, None)

    def _watch(self, rule: Rule) -> None:
        """Compute the rule's pair live; prime the rule with the last warm-up value (no alerts
        for the past)."""
        spec = self.spec(rule)
        if self.pairs.state(spec) is None:
            history = [*self._series((spec.a, spec.timeframe)), *self._series((spec.b, spec.timeframe))]
            points = self.pairs.watch(spec, history)
            if points and rule.id is not None:
                v = getattr(points[-1], rule.metric)
                self.states[rule.id] = RuleState(prev=v if math.isfinite(v) else math.nan)

    def _series(self, key: tuple[str, str]) -> deque[Bar]:
        s = self._bars.get(key)
        if s is None:
            s = self._bars[key] = deque(maxlen=self._history_bars)
        return s

    # -- samples -------------------------------------------------------------------------------
    def on_update(self, update: BarUpdate) -> None:
        """Closed bars: symbol metrics; re-watch pairs the registry evicted."""
        if not update.closed:
            return
        samples: dict[int, list[Sample]] = {}
        for b in update.closed:
            series = self._series((b.symbol, b.timeframe))
            series.append(b)
            for rid, r in self.rules.items():
                if r.symbol != b.symbol or r.timeframe != b.timeframe:
                    continue
                if r.metric == "price":
                    samples.setdefault(rid, []).append(Sample(b.time, b.close))
                elif r.metric == "price_change_pct" and len(series) > r.change_bars:
                    base = series[-1 - r.change_bars].close
                    samples.setdefault(rid, []).append(Sample(b.time, (b.close / base - 1) * 100))
        for r in self.rules.values():
            if r.metric in PAIR_METRICS and self.pairs.state(self.spec(r)) is None:
                self._watch(r)
        self._run(samples)

    def on_pairs(self, points: dict[PairSpec, list[PairPoint]]) -> None:
        samples: dict[int, list[Sample]] = {}
        for rid, r in self.rules.items():
            if r.metric in PAIR_METRICS:
                pts = points.get(self.spec(r))
                if pts:
                    samples[rid] = [Sample(p.time, getattr(p, r.metric)) for p in pts]
        self._run(samples)

    def on_market(self, batch: MarketBatch, views: Mapping[str, MarketView]) -> None:
        """Futures-native events: a sample per event of the symbol a market rule watches."""
        samples: dict[int, list[Sample]] = {}
        for rid, r in self.rules.items():
            if r.metric not in MARKET_METRICS:
                continue
            got: list[Sample] = []
            if r.metric == "funding_rate":
                got = [Sample(m.time, m.funding_rate) for m in batch.marks if m.symbol == r.symbol]
            elif r.metric == "quoted_spread_bps":
                got = [Sample(q.time, quoted_spread_bps(q.bid, q.ask)) for q in batch.quotes if q.symbol == r.symbol]
            elif r.metric == "liquidation_notional":
                got = [Sample(x.time, x.notional) for x in batch.liquidations if x.symbol == r.symbol]
            elif r.metric == "open_interest_change_pct":
                v = views.get(r.symbol or "")
                mine = [o for o in batch.open_interest if o.symbol == r.symbol]
                if v is not None and mine:  # the view holds this poll and the one before
                    got = [Sample(mine[-1].time, v.open_interest_change_pct)]
            elif r.metric == "basis_bps":
                v = views.get(r.symbol or "")
                mentioned = any(q.symbol == r.symbol for q in batch.quotes) or any(
                    m.symbol == r.symbol for m in batch.marks)
                if v is not None and mentioned:
                    got = [Sample(v.updated_ms, v.basis_bps)]  # one per batch: the basis now
            if got:
                samples[rid] = got
        self._run(samples)

    def on_health(self, now_ms: int, ticks_per_s: float, feed_lag_s: float | None) -> None:
        values = {"ticks_per_s": ticks_per_s, "feed_lag_s": math.nan if feed_lag_s is None else feed_lag_s}
        self._run({rid: [Sample(now_ms, values[r.metric])] for rid, r in self.rules.items()
                   if r.metric in FEED_METRICS})

    def _run(self, samples: dict[int, list[Sample]]) -> None:
        if not samples:
            return
        self.states, alerts = evaluate(self.rules, self.states, samples)
        if alerts:
            self.fired += len(alerts)
            self.alerts.emit(alerts)


def rows(alerts: Sequence[Alert]) -> list[tuple[object, ...]]:
    return [alert_row(a) for a in alerts]

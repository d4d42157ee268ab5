"""What a stored pair's backtest pays beyond fees: funding at each leg's funding events and, in
``half_spread`` mode, half the quoted spread of each fill's bar (docs/ANALYTICS.md
"Perpetual-futures funding", "Quoted spread"). The one reader of those inputs, for the CLI's
``backtest``/``sweep`` and the Backtest tab alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from quantpanel.analytics.funding import funding_per_bar
from quantpanel.models import timeframe_ms
from quantpanel.storage.store import Store

__all__ = ["FundingMode", "SlippageModel", "PairCosts", "pair_costs"]

FundingMode = Literal["auto", "off"]
SlippageModel = Literal["fixed", "half_spread"]


@dataclass(frozen=True)
class PairCosts:
    """The keyword arguments ``backtest``/``sweep`` take for funding and spreads, and what the
    report says about them."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    funding_included: bool = False
    funding_events: dict[str, int] = field(default_factory=dict)  # per leg, inside the bars' span
    funding_unmatched: int = 0  # events in no aligned bar (a gap of the pair's join)
    quoted_bars: dict[str, int] = field(default_factory=dict)  # per leg, bars with a quote at their close
    why_no_funding: str = ""

    def report(self) -> dict[str, Any]:
        return {"funding_included": self.funding_included, "funding_events": self.funding_events,
                "funding_unmatched": self.funding_unmatched, "quoted_bars": self.quoted_bars,
                **({"funding_off_because": self.why_no_funding} if self.why_no_funding else {})}


def _ms(index: pd.Index) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(index).as_unit("ms").asi8, dtype=np.int64)


def _spreads(store: Store, symbol: str, timeframe: str, times: np.ndarray) -> np.ndarray:
    """Per bar, ask − bid of the last quote at or before its close (NaN: none stored)."""
    tf = timeframe_ms(timeframe)
    bars = store.read_quote_bars(symbol, timeframe, None, int(times[-1]) + tf)
    if not bars:
        return np.full(len(times), np.nan)
    qt = np.array([b.time for b in bars], dtype=np.int64)
    gap = np.array([b.ask - b.bid for b in bars])
    k = np.searchsorted(qt, times, side="right") - 1  # the quote bar of this bar, else the last before
    return np.where(k >= 0, gap[k.clip(0)], np.nan)


def pair_costs(store: Store, a: str, b: str, timeframe: str, y: pd.Series, x: pd.Series, *,
               funding: FundingMode = "auto", slippage_model: SlippageModel = "fixed") -> PairCosts:
    """Funding per bar of each leg (when ``funding`` is auto and both legs have stored events in
    the bars' span) and, for ``half_spread``, each leg's quoted spread per bar."""
    times = _ms(y.index)
    if not len(times):
        return PairCosts()
    tf = timeframe_ms(timeframe)
    kwargs: dict[str, Any] = {}
    quoted: dict[str, int] = {}
    if slippage_model == "half_spread":
        sa, sb = _spreads(store, a, timeframe, times), _spreads(store, b, timeframe, times)
        kwargs.update(slippage_model="half_spread", spread_a=sa, spread_b=sb)
        quoted = {a: int(np.isfinite(sa).sum()), b: int(np.isfinite(sb).sum())}
    if funding == "off":
        return PairCosts(kwargs, quoted_bars=quoted, why_no_funding="--funding off")
    span = (int(times[0]), int(times[-1]) + tf)  # start <= F < end: every bar's window
    events = {leg: store.read_funding(leg, *span) for leg in (a, b)}
    counts = {leg: len(ev) for leg, ev in events.items()}
    missing = [leg for leg, n in counts.items() if not n]
    if missing:
        return PairCosts(kwargs, funding_events=counts, quoted_bars=quoted,
                         why_no_funding=f"no funding events stored for {', '.join(missing)} in the bars' span")
    unmatched = 0
    for leg, closes, key in ((a, y, "funding_a"), (b, x, "funding_b")):
        ev = events[leg]
        per = funding_per_bar(times, tf, closes.to_numpy(dtype=float), [e.time for e in ev],
                              [e.rate for e in ev], [e.mark for e in ev])
        kwargs[key] = per.per_bar
        unmatched += per.unmatched
    return PairCosts(kwargs, True, counts, unmatched, quoted)

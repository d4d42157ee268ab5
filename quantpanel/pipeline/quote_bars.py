"""Quote bars: per-bar best bid/ask statistics from bookTicker updates (ANALYTICS.md "Quoted spread").

A bar ``[t, t + tf)`` holds the last bid/ask in it and the mean and max quoted spread in bps,
``(ask - bid) / mid * 1e4`` with ``mid = (bid + ask) / 2``, over its updates. A bar with no update
is never emitted: a reader wanting a bar's quote takes the last quote at or before its close
(as-of), so filling gaps here would only store copies. Live and batch (a file import) are one
code path: feed ``add`` and close with ``close_until`` (the pipeline's clock, or the end of a file).

Pure: no I/O, no clock of its own. Quotes of a symbol arrive in update-id order; a quote older
than that symbol's forming (or last closed) bar is out of order: counted and ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from quantpanel.models import Quote, QuoteBar, timeframe_ms

__all__ = ["QuoteBarBuilder", "spread_bps"]

_NEVER = -(2**62)  # earlier than any time


def spread_bps(bid: float, ask: float) -> float:
    """The quoted spread of one quote in basis points of its mid.

    >>> round(spread_bps(99.0, 101.0), 6)
    200.0
    """
    return (ask - bid) / ((ask + bid) / 2) * 1e4


class _Forming:
    """The accumulators of one forming bar (mutable: one per series, updated per quote)."""

    __slots__ = ("ask", "bid", "max_bps", "sum_bps", "time", "updates")

    def __init__(self, time: int, bid: float, ask: float, bps: float) -> None:
        self.time, self.bid, self.ask = time, bid, ask
        self.sum_bps = self.max_bps = bps
        self.updates = 1

    def bar(self, symbol: str, timeframe: str) -> QuoteBar:
        return QuoteBar(symbol, timeframe, self.time, self.bid, self.ask, self.sum_bps / self.updates,
                        self.max_bps, self.updates)


class QuoteBarBuilder:
    """Quote bars of every symbol for ``timeframes`` (names from ``models.SERIES_TIMEFRAMES``).

    ``out_of_order`` counts quotes older than the symbol's forming or last closed bar of any
    timeframe; ``invalid`` counts quotes whose mid is not a positive finite number. Both are ignored.
    """

    def __init__(self, timeframes: Sequence[str]) -> None:
        if not timeframes:
            raise ValueError("timeframes: at least one timeframe is needed")
        self.timeframes = tuple(timeframes)
        self._tf_ms = tuple(timeframe_ms(tf) for tf in self.timeframes)  # ValueError names the allowed
        self._forming: dict[str, list[_Forming | None]] = {}  # symbol -> per timeframe
        self._floor: dict[str, int] = {}  # symbol -> the earliest time a quote may have
        self._latest: dict[str, Quote] = {}
        self.out_of_order = 0
        self.invalid = 0

    def add(self, quotes: Iterable[Quote]) -> list[QuoteBar]:
        """Take quotes; return the bars they closed (a quote in a later bar closes the forming one),
        oldest first per series."""
        closed: list[QuoteBar] = []
        tfs, tf_ms = self.timeframes, self._tf_ms
        for q in quotes:
            sym, t = q.symbol, q.time
            if t < self._floor.get(sym, t):
                self.out_of_order += 1
                continue
            mid = (q.bid + q.ask) / 2
            if not 0 < mid < math.inf:
                self.invalid += 1
                continue
            bps = (q.ask - q.bid) / mid * 1e4
            forming = self._forming.get(sym)
            if forming is None:
                forming = self._forming[sym] = [None] * len(tfs)
            floor = _NEVER  # the latest start of this quote's bars: no later quote may be older
            for i, ms in enumerate(tf_ms):
                start = t - t % ms
                if start > floor:
                    floor = start
                f = forming[i]
                if f is not None and f.time == start:
                    f.bid, f.ask = q.bid, q.ask
                    f.sum_bps += bps
                    if bps > f.max_bps:
                        f.max_bps = bps
                    f.updates += 1
                    continue
                if f is not None:  # start is later: f is complete
                    closed.append(f.bar(sym, tfs[i]))
                forming[i] = _Forming(start, q.bid, q.ask, bps)
            if floor > self._floor.get(sym, _NEVER):
                self._floor[sym] = floor
            self._latest[sym] = q
        return closed

    def close_until(self, time_ms: int) -> list[QuoteBar]:
        """Close every forming bar ending at or before ``time_ms``; quotes older than a closed
        bar's end are out of order from then on."""
        closed: list[QuoteBar] = []
        for sym, forming in self._forming.items():
            for i, ms in enumerate(self._tf_ms):
                f = forming[i]
                if f is not None and f.time + ms <= time_ms:
                    closed.append(f.bar(sym, self.timeframes[i]))
                    forming[i] = None
                    self._floor[sym] = max(self._floor.get(sym, _NEVER), f.time + ms)
        return closed

    def forming(self, symbol: str, timeframe: str) -> QuoteBar | None:
        """The bar of ``symbol`` still open in ``timeframe`` (None: no quote since the last close)."""
        if timeframe not in self.timeframes:
            raise ValueError(f"timeframe {timeframe!r} is not built here; expected one of {', '.join(self.timeframes)}")
        forming = self._forming.get(symbol)
        f = forming[self.timeframes.index(timeframe)] if forming is not None else None
        return f.bar(symbol, timeframe) if f is not None else None

    def latest(self, symbol: str) -> Quote | None:
        """The last quote of ``symbol`` taken."""
        return self._latest.get(symbol)

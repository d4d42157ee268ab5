"""What the hub keeps of the futures-native market data for the Market tab's charts.

The pipeline's ``MarketData`` holds the newest values per symbol (``MarketView``: quote, mark,
funding, open interest), which the cards read as they are. The charts need series: the mark price
per bar of each timeframe (the last mark in the bar, drawn over the candles) and the recent
liquidations (markers). Both are bounded logs with sequence numbers, read incrementally by every
session like the bars, warmed from the store at start and when a symbol is added.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from quantpanel.dashboard.logs import Delta, Log
from quantpanel.errors import StoreError
from quantpanel.models import Liquidation, MarketBatch, MarkPrice, timeframe_ms
from quantpanel.pipeline.market import LIQUIDATIONS_KEPT, MarketView
from quantpanel.storage.store import Store

__all__ = ["MarkPoint", "MarketSeries", "read_stored_market"]

log = logging.getLogger(__name__)


class MarkPoint(NamedTuple):
    """The mark price of one bar: the last mark update inside ``[time, time + tf)``."""

    time: int  # the bar's open (ms)
    mark: float


@dataclass
class _Marks:
    log: Log[MarkPoint]
    forming: MarkPoint | None = None

    @property
    def first_time(self) -> int | None:
        if self.log.items:
            return self.log.items[0].time
        return self.forming.time if self.forming is not None else None


def _buckets(marks: Iterable[MarkPrice], tf_ms: int) -> list[MarkPoint]:
    """The last mark of each bar, oldest first (``marks`` sorted by time)."""
    out: list[MarkPoint] = []
    for m in marks:
        t = m.time - m.time % tf_ms
        if out and out[-1].time == t:
            out[-1] = MarkPoint(t, m.mark)
        elif not out or t > out[-1].time:
            out.append(MarkPoint(t, m.mark))
    return out


class Views(Protocol):
    """Where the newest values per symbol come from: the pipeline's ``MarketData``, or the
    broker's copy of them in a ``serve --broker`` process."""

    views: dict[str, MarketView]


class MarketSeries:
    """Per (symbol, timeframe) mark points and per symbol liquidations; the latest values
    (``view``) are the pipeline's own ``MarketView`` snapshots. Runs on the event loop."""

    def __init__(self, timeframes: Sequence[str], buffer_bars: int) -> None:
        self._tf = {tf: timeframe_ms(tf) for tf in timeframes}
        self._n = buffer_bars
        self._marks: dict[tuple[str, str], _Marks] = {}
        self._liqs: dict[str, Log[Liquidation]] = {}
        self.data: Views | None = None

    def attach(self, data: Views) -> None:
        self.data = data

    def view(self, symbol: str) -> MarketView | None:
        """The newest quote, mark, funding and open interest of ``symbol`` (None: none yet)."""
        return self.data.views.get(symbol) if self.data is not None else None

    # -- folding in (event loop) -----------------------------------------------------------------
    def _series(self, symbol: str, tf: str) -> _Marks:
        s = self._marks.get((symbol, tf))
        if s is None:
            s = self._marks[(symbol, tf)] = _Marks(Log(self._n))
        return s

    def _liq_log(self, symbol: str) -> Log[Liquidation]:
        lg = self._liqs.get(symbol)
        if lg is None:
            lg = self._liqs[symbol] = Log(LIQUIDATIONS_KEPT)
        return lg

    def apply(self, batch: MarketBatch) -> bool:
        """Fold a batch in; True when a chart or a slow card has something new (not quotes alone:
        they change at tick rate and the cards read them at their own pace)."""
        for m in batch.marks:
            for tf, ms in self._tf.items():
                s = self._series(m.symbol, tf)
                t = m.time - m.time % ms
                f = s.forming
                if f is None:
                    if not s.log.items or t > s.log.items[-1].time:
                        s.forming = MarkPoint(t, m.mark)
                elif t == f.time:
                    s.forming = MarkPoint(t, m.mark)
                elif t > f.time:  # the bar of the forming point is over
                    s.log.extend([f])
                    s.forming = MarkPoint(t, m.mark)
        for liq in batch.liquidations:
            self._liq_log(liq.symbol).extend([liq])
        return bool(batch.marks or batch.liquidations or batch.open_interest)

    def warm(self, symbol: str, marks: list[MarkPrice], liquidations: list[Liquidation]) -> None:
        """Stored history older than anything live, put in front of it (readers reset)."""
        for tf, ms in self._tf.items():
            s = self._series(symbol, tf)
            first = s.first_time
            keep = [p for p in _buckets(marks, ms) if first is None or p.time < first]
            if not keep:
                continue
            if first is None:  # nothing live yet: the newest stored bar may still be forming
                keep, s.forming = keep[:-1], keep[-1]
            s.log.reset_to([*keep, *s.log.items])
        lg = self._liq_log(symbol)
        first_liq = lg.items[0].time if lg.items else None
        old = [x for x in liquidations if first_liq is None or x.time < first_liq]
        if old:
            lg.reset_to([*old, *lg.items])

    async def warm_from_store(self, db: str | Path, starts: dict[str, int],
                              following: Callable[[], list[str]]) -> bool:
        """``warm`` each symbol of ``starts`` still ``following()`` from the store (read in a
        worker thread); False when nothing could be read."""
        try:
            stored = await asyncio.to_thread(read_stored_market, db, starts)
        except (StoreError, sqlite3.Error) as exc:
            log.warning("no stored marks for the charts: %s", exc)
            return False
        for sym, (marks, liqs) in stored.items():
            if sym in following():
                self.warm(sym, marks, liqs)
        return True

    def drop(self, symbol: str) -> None:
        """A symbol no longer followed: what was kept of it goes (a re-add warms from the store)."""
        for key in [k for k in self._marks if k[0] == symbol]:
            del self._marks[key]
        self._liqs.pop(symbol, None)

    # -- reading (any session) -------------------------------------------------------------------
    def marks_since(self, symbol: str, tf: str, seq: int | None) -> Delta[MarkPoint]:
        """Closed mark points after ``seq`` (all when ``seq`` is None or too old)."""
        s = self._marks.get((symbol, tf))
        if s is None:
            return Delta([], 0, seq is None)
        items, reset = s.log.since(seq)
        return Delta(items, s.log.seq, reset)

    def marks_seq(self, symbol: str, tf: str) -> int:
        s = self._marks.get((symbol, tf))
        return s.log.seq if s else 0

    def liquidations(self, symbol: str) -> tuple[int, list[Liquidation]]:
        """(sequence, the kept liquidations oldest first): the sequence changes with each new one."""
        lg = self._liqs.get(symbol)
        return (lg.seq, list(lg.items)) if lg else (0, [])

    def liquidations_seq(self, symbol: str) -> int:
        lg = self._liqs.get(symbol)
        return lg.seq if lg else 0


def read_stored_market(db: str | Path, starts: dict[str, int]
                       ) -> dict[str, tuple[list[MarkPrice], list[Liquidation]]]:
    """Stored marks and the newest liquidations of each symbol from ``starts[symbol]`` on.
    Blocking: call from a worker thread (a read-only connection beside the writer)."""
    out = {}
    with Store(db, readonly=True) as store:
        for sym, start in starts.items():
            out[sym] = (store.read_marks(sym, start, None),
                        store.read_liquidations(sym, start, None)[-LIQUIDATIONS_KEPT:])
    return out

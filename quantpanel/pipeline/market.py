"""The futures-native market data node: quotes, marks, liquidations and open interest from the
feed, stored through the writer and folded into what the dashboard and the alert rules read.

Quotes become per-bar quote statistics (``QuoteBarBuilder``; raw quotes are stored only with
``storage.keep_quotes``), mark updates become mark samples and, when a funding time passes,
funding events (``FundingTracker``). The latest of each per symbol is kept in a ``MarketView``,
a snapshot any session may read. Every batch is re-emitted on ``updates`` once folded, which the
dashboard hub subscribes to, like it does to bars.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from streamz import Stream

from quantpanel.analytics.funding import basis_bps, quoted_spread_bps
from quantpanel.models import FundingEvent, Liquidation, MarketBatch, MarkPrice, OpenInterest, Quote, QuoteBar
from quantpanel.pipeline.funding_events import FundingTracker
from quantpanel.pipeline.quote_bars import QuoteBarBuilder
from quantpanel.storage.writer import StoreWriter

__all__ = ["MarketData", "MarketView", "LIQUIDATIONS_KEPT"]

LIQUIDATIONS_KEPT = 500  # per symbol, for the charts' markers and the alert rules


@dataclass
class MarketView:
    """The newest futures-native values of one symbol (None / NaN until first seen)."""

    symbol: str
    quote: Quote | None = None
    mark: MarkPrice | None = None
    open_interest: OpenInterest | None = None
    open_interest_before: OpenInterest | None = None  # the poll before, for its change
    funding: list[FundingEvent] = field(default_factory=list)  # this run's funding events, oldest first
    liquidations: deque[Liquidation] = field(default_factory=lambda: deque(maxlen=LIQUIDATIONS_KEPT))
    updated_ms: int = 0  # wall clock of the last change
    spot_price: float = math.nan  # the last trade of its spot twin (a ``venue: spot`` symbol), if any

    @property
    def quoted_spread_bps(self) -> float:
        q = self.quote
        return math.nan if q is None else quoted_spread_bps(q.bid, q.ask)

    @property
    def basis_bps(self) -> float:
        """Futures over its spot twin, in bps: the futures mid (a price one can trade; else the
        mark) against the last spot trade."""
        q = self.quote
        fut = (q.bid + q.ask) / 2 if q is not None else self.mark.mark if self.mark is not None else math.nan
        return basis_bps(fut, self.spot_price)

    @property
    def open_interest_change_pct(self) -> float:
        now, before = self.open_interest, self.open_interest_before
        if now is None or before is None or before.open_interest == 0:
            return math.nan
        return (now.open_interest / before.open_interest - 1) * 100


class MarketData:
    """One per process, beside the bar pipeline. ``on_batch``/``on_clock``/``on_open_interest`` run
    on the event loop; rows go to ``writer`` (when given) in its thread."""

    def __init__(self, timeframes: Iterable[str], writer: StoreWriter | None = None, *,
                 keep_quotes: bool = False) -> None:
        self.writer = writer
        self.keep_quotes = keep_quotes
        self.quote_bars = QuoteBarBuilder(tuple(timeframes))
        self.funding = FundingTracker()
        self.views: dict[str, MarketView] = {}
        self.updates: Stream = Stream(asynchronous=True, stream_name="market")

    def view(self, symbol: str) -> MarketView:
        v = self.views.get(symbol)
        if v is None:
            v = self.views[symbol] = MarketView(symbol)
        return v

    def on_batch(self, batch: MarketBatch) -> None:
        now = int(time.time() * 1000)
        closed: list[QuoteBar] = []
        if batch.quotes:
            closed = self.quote_bars.add(batch.quotes)
            for q in batch.quotes:
                self.view(q.symbol).quote = q
        events: list[FundingEvent] = []
        if batch.marks:
            events = self.funding.add(batch.marks)
            for m in batch.marks:
                self.view(m.symbol).mark = m
            for e in events:
                self.view(e.symbol).funding.append(e)
        for liq in batch.liquidations:
            self.view(liq.symbol).liquidations.append(liq)
        touched = {q.symbol for q in batch.quotes} | {m.symbol for m in batch.marks}
        for sym in touched | {x.symbol for x in batch.liquidations}:
            self.view(sym).updated_ms = now
        w = self.writer
        if w is not None:
            if closed:
                w.put_quote_bars(closed)
            if batch.quotes and self.keep_quotes:
                w.put_quotes(list(batch.quotes))
            if batch.marks:
                w.put_marks(list(batch.marks))
            if events:
                w.put_funding(events)
            if batch.liquidations:
                w.put_liquidations(list(batch.liquidations))
        self.updates.emit(batch)

    def on_clock(self, now_ms: int) -> None:
        """Close quote bars the clock has passed (bars with no later quote would stay open)."""
        closed = self.quote_bars.close_until(now_ms)
        if closed and self.writer is not None:
            self.writer.put_quote_bars(closed)

    def on_open_interest(self, rows: Iterable[OpenInterest]) -> None:
        rows = list(rows)
        for oi in rows:
            v = self.view(oi.symbol)
            v.open_interest_before, v.open_interest = v.open_interest, oi
            v.updated_ms = int(time.time() * 1000)
        if rows and self.writer is not None:
            self.writer.put_open_interest(rows)
        if rows:
            self.updates.emit(MarketBatch(received_ms=int(time.time() * 1000), open_interest=tuple(rows)))

    def on_spot(self, prices: dict[str, float]) -> None:
        """The last spot trade of each futures symbol's spot twin (for its basis)."""
        for sym, price in prices.items():
            self.view(sym).spot_price = price

    def on_funding_history(self, events: Iterable[FundingEvent]) -> None:
        """Funding events fetched over REST (start-up, after an outage): stored, and kept in the
        views when they are newer than what the stream has told."""
        events = sorted(events, key=lambda e: e.time)
        for e in events:
            v = self.view(e.symbol)
            if not v.funding or e.time > v.funding[-1].time:
                v.funding.append(e)
        if events and self.writer is not None:
            self.writer.put_funding(events)

    def flush(self) -> None:
        """Write the forming quote bars (at stop): what the run saw of them is kept."""
        if self.writer is not None:
            forming = self.quote_bars.close_until(2**62)
            if forming:
                self.writer.put_quote_bars(forming)

"""The bars of an imported file: built from the file's own chunks as they are stored, and written
in the file's transaction over exactly the span it touched.

``storage.importer.import_file`` hands each stored chunk to ``ImportBars.add``; ``finish`` writes
every configured timeframe's bars. The result is what a rebuild of the symbol from all its stored
ticks would give (``history.rebuild_bars``, the incremental builder), without reading any tick
the file did not bring:

- the file's ticks are the only ones in its bars, and come in (time, agg_id) order: its chunks
  are the bars' input as they are (``bar_arrays.SeriesBuilder``, vectorised);
- otherwise (ticks stored there before, duplicates, a file out of order): the span is rebuilt from
  the store, in the store's order, by the same builder;
- around the span: the empty bars between the tick before it and its first bar carry that tick's
  price, the empty bars after it up to the next stored tick carry the file's last price, and a
  bar the cache lacked before the span (an uncached tail) is rebuilt from its ticks.

The span's last bar is cached once it is closed by the stored-history rule (ANALYTICS.md: a later
tick is stored, or its end plus the grace period is past); otherwise ``history.load_bars`` keeps
building it from its ticks, as it does for any forming bar.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from quantpanel.models import TickColumns, timeframe_ms
from quantpanel.pipeline.bar_arrays import BarColumns, SeriesBuilder
from quantpanel.pipeline.bars import SeriesState
from quantpanel.storage.store import Store

__all__ = ["ImportBars"]


@dataclass
class _Span:
    """What one symbol's part of the file has shown so far."""

    rows: int = 0
    added: int = 0
    lo: int = 2**62
    hi: int = -(2**62)
    last_key: tuple[int, int] = (-(2**62), -(2**62))
    builders: dict[str, SeriesBuilder] | None = None  # None: rebuild the span from the store
    closed: dict[str, list[BarColumns]] = field(default_factory=dict)


def _in_order(cols: TickColumns, after: tuple[int, int]) -> bool:
    """Strictly rising (time, agg_id), starting after ``after``: the store's order, no duplicate."""
    t, a = cols.time, cols.agg_id
    if (int(t[0]), int(a[0])) <= after:
        return False
    dt = t[1:] - t[:-1]
    return bool(((dt > 0) | ((dt == 0) & (a[1:] > a[:-1]))).all())


def _seeded(store: Store, symbol: str, tf: str, before: int) -> SeriesBuilder:
    """A builder continuing after the newest stored tick before ``before`` (its price carries into
    the empty bars up to the span; its id is the highest seen when ids rise with time)."""
    tf_ms = timeframe_ms(tf)
    prev = store.tick_before(symbol, before)
    if prev is None:
        return SeriesBuilder(tf)
    t, agg_id, price = prev
    return SeriesBuilder(tf, SeriesState(tf_ms, None, price, t - t % tf_ms + tf_ms), last_agg_id=agg_id)


class ImportBars:
    """``storage.importer.TradeBarSink`` for ``timeframes``; ``now_ms`` (default: the wall clock
    at ``finish``) decides whether the span's last bar is closed."""

    def __init__(self, timeframes: Iterable[str], *, grace_ms: int = 250, now_ms: int | None = None) -> None:
        self.timeframes = tuple(timeframes)
        self.grace_ms = grace_ms
        self.now_ms = now_ms
        self._spans: dict[str, _Span] = {}
        self.rebuilt_from_store: list[tuple[str, str]] = []  # (symbol, timeframe) spans not built from the file

    def add(self, store: Store, symbol: str, cols: TickColumns, added: int) -> None:
        if not len(cols):
            return
        sp = self._spans.get(symbol)
        if sp is None:
            sp = self._spans[symbol] = _Span()
            sp.builders = {tf: _seeded(store, symbol, tf, int(cols.time[0])) for tf in self.timeframes}
            sp.closed = {tf: [] for tf in self.timeframes}
        sp.rows += len(cols)
        sp.added += added
        sp.lo = min(sp.lo, int(cols.time.min()))
        sp.hi = max(sp.hi, int(cols.time.max()))
        if sp.builders is not None and _in_order(cols, sp.last_key):
            for tf, b in sp.builders.items():
                sp.closed[tf].append(b.add(cols))
            sp.last_key = (int(cols.time[-1]), int(cols.agg_id[-1]))
        else:
            sp.builders, sp.closed = None, {}

    def finish(self, store: Store) -> dict[str, int]:
        """Write the bars of every span (inside the import's transaction); bars written per symbol."""
        now = int(time.time() * 1000) if self.now_ms is None else self.now_ms
        written: dict[str, int] = {}
        for symbol, sp in self._spans.items():
            written[symbol] = sum(self._write(store, symbol, tf, sp, now) for tf in self.timeframes)
        return written

    def _write(self, store: Store, symbol: str, tf: str, sp: _Span, now: int) -> int:
        tf_ms = timeframe_ms(tf)
        span_lo, span_hi = sp.lo - sp.lo % tf_ms, sp.hi - sp.hi % tf_ms + tf_ms
        n = self._rebuild_uncached_tail(store, symbol, tf, span_lo)
        clean = (sp.builders is not None and sp.added == sp.rows
                 and store.tick_count_between(symbol, span_lo, span_hi) == sp.rows)
        if clean:
            assert sp.builders is not None
            builder, parts = sp.builders[tf], sp.closed[tf]
        else:
            self.rebuilt_from_store.append((symbol, tf))
            builder = _seeded(store, symbol, tf, span_lo)
            parts = [builder.add(cols) for cols in store.iter_tick_columns(symbol, span_lo, span_hi)]
        builder_start = span_lo
        if parts and len(parts[0]):
            builder_start = min(span_lo, int(parts[0].time[0]))  # the empty bars before the span
        nxt = store.first_tick_time(symbol, span_hi)
        until = None
        if nxt is not None:
            until = nxt - nxt % tf_ms
        else:
            stale = store.read_bars(symbol, tf, span_hi, None, last=1)  # empty bars past the last tick
            if stale:
                until = stale[-1].time + tf_ms
        forming = builder.state.forming
        if until is not None or (forming is not None and forming[0] + tf_ms + self.grace_ms < now):
            parts.append(builder.close_forming(until))
        bars = BarColumns.concat(parts)
        n += store.replace_bar_range(symbol, tf, builder_start, until if until is not None else span_hi,
                                     bars.rows(symbol, tf))
        return n

    def _rebuild_uncached_tail(self, store: Store, symbol: str, tf: str, span_lo: int) -> int:
        """Bars before the span that the cache lacks (the newest stored tick's bar was still forming
        when the cache was last written): rebuilt from their ticks and closed, since the file's
        ticks come after them."""
        tf_ms = timeframe_ms(tf)
        prev = store.tick_before(symbol, span_lo)
        if prev is None:
            return 0
        prev_bar = prev[0] - prev[0] % tf_ms
        cached = store.read_bars(symbol, tf, None, span_lo, last=1)
        if cached and cached[-1].time >= prev_bar:
            return 0
        seed = cached[-1] if cached else None
        start = seed.time + tf_ms if seed else None
        state = SeriesState(tf_ms, None, seed.close, seed.time + tf_ms) if seed else None
        builder = SeriesBuilder(tf, state)
        parts = [builder.add(cols) for cols in store.iter_tick_columns(symbol, start, prev_bar + tf_ms)]
        parts.append(builder.close_forming())
        bars = BarColumns.concat(parts)
        lo = start if start is not None else (int(bars.time[0]) if len(bars) else prev_bar)
        return store.replace_bar_range(symbol, tf, lo, prev_bar + tf_ms, bars.rows(symbol, tf))

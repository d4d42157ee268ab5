"""Bars over stored history: cached closed bars plus the tail rebuilt from ticks.

One path serves warm-up, ``quantpanel bars``, the analytics readers and crash recovery: whatever the
``bars`` cache lacks after its last closed bar (a crash, an import) is rebuilt from the ticks by the
same builder.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

import pandas as pd

from quantpanel.errors import ConfigError, SeriesNotFoundError
from quantpanel.models import SPOT_SUFFIX, TIMEFRAMES, Bar, timeframe_ms
from quantpanel.pipeline.bars import BarState, Clock, SeriesState, build_bars, initial_state, step
from quantpanel.storage.store import Store

__all__ = ["load_bars", "load_closes", "pair_closes", "stored_series", "require_series", "warm_start", "rebuild_bars",
           "rebuild_bars_since", "WarmStart"]


def _series_bars(
    store: Store, symbol: str, timeframe: str, start: int | None, end: int | None, last: int | None
) -> tuple[list[Bar], list[Bar], SeriesState, int]:
    """(cached closed bars, bars rebuilt from the tail incl. forming, final series state, last id)."""
    tf_ms = timeframe_ms(timeframe)
    cached = store.read_bars(symbol, timeframe, start, end, last=last)
    anchor = store.read_bars(symbol, timeframe, None, end, last=1)  # newest cached bar before end
    seed = anchor[-1] if anchor else None
    tail_from = seed.time + tf_ms if seed else start
    state = initial_state([timeframe], last_bars=[seed] if seed else [])
    tail, state = build_bars(store.iter_ticks(symbol, tail_from, end), [timeframe], state=state)
    if start is not None:
        tail = [b for b in tail if b.time >= start]
    series = state.series.get((symbol, timeframe)) or SeriesState(tf_ms, None, *(
        (seed.close, seed.time + tf_ms) if seed else (None, None)))
    return cached, tail, series, state.last_agg_id.get(symbol, -1)


def _settle(store: Store, bars: list[Bar], grace_ms: int, now_ms: int | None) -> list[Bar]:
    """ANALYTICS.md's stored-history rule for the newest bar built from ticks: closed once a later
    tick of its symbol is stored, or once its end plus the grace period is before the wall clock."""
    if not bars or bars[-1].closed:
        return bars
    b = bars[-1]
    end = b.time + timeframe_ms(b.timeframe)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if end + grace_ms < now or store.max_time(b.symbol) >= end:
        return [*bars[:-1], replace(b, closed=True)]
    return bars


def _with_imported(store: Store, symbol: str, timeframe: str, start: int | None, end: int | None,
                   bars: list[Bar]) -> list[Bar]:
    """An imported OHLC series of (symbol, timeframe) is bars like any other: it covers the times
    the ticks do not (where both have a bar, the one built from ticks wins: ticks are the truth)."""
    imported = store.read_ohlc(symbol, timeframe, start, end)
    if not imported:
        return bars
    merged = {b.time: b for b in imported}
    merged.update((b.time, b) for b in bars)
    return [merged[t] for t in sorted(merged)]


def load_bars(
    store: Store,
    symbol: str,
    timeframe: str,
    start: int | None = None,
    end: int | None = None,
    *,
    last: int | None = None,
    include_forming: bool = True,
    grace_ms: int = 250,
    now_ms: int | None = None,
) -> list[Bar]:
    """Bars of ``symbol`` with ``start <= time < end`` (or the ``last`` N), oldest first: cached
    bars, the tail rebuilt from ticks and any imported OHLC series of that timeframe.

    The one reader of stored history (CLI, notebook API, Backtest tab): the final bar has
    ``closed=False`` only while it may still grow (``_settle``), so every reader counts the same
    closed bars.
    """
    cached, tail, _, _ = _series_bars(store, symbol, timeframe, start, end, last)
    tail = _settle(store, tail, grace_ms, now_ms)
    bars = _with_imported(store, symbol, timeframe, start, end,
                          cached + [b for b in tail if include_forming or b.closed])
    return bars[-last:] if last is not None else bars


def load_closes(
    store: Store,
    symbols: Iterable[str],
    timeframe: str,
    start: int | None = None,
    end: int | None = None,
    *,
    last: int | None = None,
    grace_ms: int = 250,
) -> pd.DataFrame:
    """Closes of closed bars, one float column per symbol, outer-joined on bar time (UTC, ns).

    The pair and multi-symbol analytics inner-join it themselves (ANALYTICS.md inputs).
    """
    cols = {}
    for sym in symbols:
        bars = load_bars(store, sym, timeframe, start, end, last=last, include_forming=False,
                         grace_ms=grace_ms)
        cols[sym] = pd.Series([b.close for b in bars], dtype="float64",
                              index=pd.to_datetime([b.time for b in bars], unit="ms").astype("datetime64[ns]"))
    return pd.DataFrame(cols).sort_index()


def pair_closes(store: Store, a: str, b: str, timeframe: str, start: int | None = None,
                end: int | None = None, *, grace_ms: int = 250) -> tuple[pd.Series, pd.Series]:
    """Closes of both legs' closed bars, inner-joined on bar time (docs/ANALYTICS.md pair inputs):
    the one reader of a stored pair, so every pair analytic counts the same aligned bars.

    A pair of one symbol with itself, or a leg the database has no bars of, is an error."""
    # imported here, not above, so ``record`` and ``import`` never load statsmodels
    from quantpanel.analytics import align

    if a == b:
        raise ConfigError(f"--pair {a} {b}: a pair needs two different symbols")
    for leg in (a, b):
        require_series(store, leg, timeframe)
    closes = load_closes(store, [a, b], timeframe, start, end, grace_ms=grace_ms)
    return align(closes[a].dropna(), closes[b].dropna())


def stored_series(store: Store) -> tuple[list[str], list[tuple[str, str]]]:
    """What the database can serve: (symbols with ticks, any builder timeframe), and the
    (symbol, timeframe) series cached or imported."""
    return store.symbols(), [(s, tf) for s, tf, *_ in store.bar_series()]


def require_series(store: Store, symbol: str, timeframe: str) -> None:
    """Raise ``SeriesNotFoundError`` naming (symbol, timeframe) and what the database holds when
    no bar of it is stored or can be built: an unknown symbol is an error, never ``n: 0``."""
    if store.has_bars(symbol, timeframe) or (timeframe in TIMEFRAMES and store.has_ticks(symbol)):
        return  # the common case: index lookups only; the listing below scans, for the message
    tick_symbols, series = stored_series(store)
    held = [f"{s} (trades: {', '.join(TIMEFRAMES)})" for s in tick_symbols]
    held += [f"{s} {tf}" for s, tf in series if s not in tick_symbols]
    what = (f"no {timeframe} bars of {symbol}" if symbol in tick_symbols or any(s == symbol for s, _ in series)
            else f"no stored bars of {symbol}")
    raise SeriesNotFoundError(f"{what} in {store.path}; it holds "
                              + ("; ".join(held) if held else "nothing yet"))


@dataclass(frozen=True)
class WarmStart:
    state: BarState  # continue the pipeline from here
    history: dict[tuple[str, str], list[Bar]]  # last N bars per series, forming bar last
    recovered: list[Bar]  # closed bars rebuilt from ticks that the cache lacked: store them


def warm_start(
    store: Store, symbols: Iterable[str], timeframes: Iterable[str], *, bars: int, grace_ms: int
) -> WarmStart:
    """The pipeline's starting point after a restart, so charts show history at once."""
    tfs = tuple(timeframes)
    series: dict[tuple[str, str], SeriesState] = {}
    last_ids: dict[str, int] = {}
    history: dict[tuple[str, str], list[Bar]] = {}
    recovered: list[Bar] = []
    for symbol in symbols:
        for tf in tfs:
            cached, tail, s, last_id = _series_bars(store, symbol, tf, None, None, max(bars, 1))
            series[(symbol, tf)] = s
            last_ids[symbol] = max(last_ids.get(symbol, -1), last_id)
            recovered.extend(b for b in tail if b.closed)
            history[(symbol, tf)] = (cached + tail)[-bars:] if bars else []
        last_ids[symbol] = max(last_ids[symbol], store.max_agg_id(symbol))
    state = BarState(tfs, grace_ms, series, {k: v for k, v in last_ids.items() if v >= 0})
    return WarmStart(state, history, recovered)


def rebuild_bars(store: Store, symbol: str, timeframes: Iterable[str]) -> int:
    """Recompute a symbol's cached bars from all its ticks (after an import). Returns bars stored."""
    bars, _ = build_bars(store.iter_ticks(symbol), timeframes, include_forming=False)
    return store.replace_bars(symbol, bars)


def rebuild_bars_since(store: Store, symbol: str, timeframes: Iterable[str], since_ms: int,
                       grace_ms: int = 250) -> list[Bar]:
    """Recompute the cached bars of ``symbol`` from the one holding ``since_ms`` up to the newest
    cached bar, from the stored ticks (after a late backfill). Returns the bars rewritten."""
    written: list[Bar] = []
    for tf in timeframes:
        tf_ms = timeframe_ms(tf)
        start = since_ms // tf_ms * tf_ms
        newest = store.read_bars(symbol, tf, start, None, last=1)
        if not newest:
            continue  # nothing closed at or after it yet: the live builder will close it
        end = newest[-1].time + tf_ms
        prev = store.read_bars(symbol, tf, None, start, last=1)
        state = initial_state([tf], grace_ms=grace_ms, last_bars=prev)
        state = replace(state, last_agg_id={})
        bars, state = build_bars(store.iter_ticks(symbol, start, end), [tf], state=state, include_forming=False)
        # close the last bars up to the newest cached one
        state, upd = step(state, Clock(end + grace_ms, symbol.endswith(SPOT_SUFFIX)))
        bars = [b for b in [*bars, *upd.closed] if start <= b.time < end]
        store.upsert_bars(bars)
        written.extend(bars)
    return written

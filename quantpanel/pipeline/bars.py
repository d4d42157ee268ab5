"""The bar builder: a pure step function ``step(state, event) -> (state, update)``.

Implements docs/ANALYTICS.md "Bars" exactly: a bar covers ``[t, t + tf)`` with ``t`` a multiple of
the timeframe since the epoch; OHLC in tick order; vwap = sum(p*q)/sum(q); buy_volume = q of ticks
with ``m`` false (NaN once a tick of unknown side is in the bar); empty intervals between a
symbol's ticks are bars carrying the previous close (up to ``MAX_EMPTY_BARS`` in a row). A bar
closes when a tick at or past its end arrives, or when a ``Clock`` event says its feed's clock
passed its end plus the grace period (the spot twins, ``SYMBOL.SPOT``, come on their own
connection and close by its clock: a spot stream lagging the futures one loses no trades). Ticks
at or below the highest ``agg_id`` already seen for a symbol are duplicates; ticks for an already
closed bar are late. Both are counted and skipped.

The state is never mutated: the streamz graph wraps ``step`` with
``accumulate(..., returns_state=True)`` and tests call it directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from quantpanel.models import SPOT_SUFFIX, Bar, Tick, TickBatch, timeframe_ms

__all__ = ["MAX_EMPTY_BARS", "Clock", "SeriesState", "BarState", "BarUpdate", "step", "initial_state", "build_bars"]

_NAN = float("nan")
#: The longest run of empty bars: a silence longer than this many bars of a timeframe (27.8 hours
#: of 1s bars, 69 days of 1m) is a hole in the data (a day never imported, a server stopped for a
#: week), not bars; the bar after it opens fresh. Without the cap one year-old tick would make
#: 31 million 1s bars.
MAX_EMPTY_BARS = 100_000
# The forming bar's accumulators: (time, open, high, low, close, volume, trades, sum p*q, buy volume)
_Acc = tuple[int, float, float, float, float, float, int, float, float]


@dataclass(frozen=True, slots=True)
class Clock:
    """A feed's clock reached ``now_ms``: close its bars that ended more than the grace period ago.

    ``spot`` False is the USD-M feed's clock (every series but the spot twins'); True is the spot
    feed's (the ``SYMBOL.SPOT`` series only)."""

    now_ms: int
    spot: bool = False


@dataclass(frozen=True, slots=True)
class SeriesState:
    """One (symbol, timeframe) series: the forming bar and what the next bar carries."""

    tf_ms: int
    forming: _Acc | None = None
    last_close: float | None = None  # close of the last closed bar
    next_time: int | None = None  # open time of the bar after the last closed one


@dataclass(frozen=True)
class BarState:
    timeframes: tuple[str, ...]
    grace_ms: int = 250
    series: Mapping[tuple[str, str], SeriesState] = field(default_factory=dict)
    last_agg_id: Mapping[str, int] = field(default_factory=dict)
    duplicates: int = 0
    late: int = 0


@dataclass(frozen=True, slots=True)
class BarUpdate:
    """What one step produced: newly closed bars in time order per series, and forming bars."""

    closed: tuple[Bar, ...] = ()
    forming: tuple[Bar, ...] = ()


def initial_state(
    timeframes: Iterable[str], *, grace_ms: int = 250, last_bars: Iterable[Bar] = ()
) -> BarState:
    """A state that continues after ``last_bars`` (the last closed bar of each series, if any)."""
    tfs = tuple(timeframes)
    series: dict[tuple[str, str], SeriesState] = {}
    for bar in last_bars:
        tf_ms = timeframe_ms(bar.timeframe)
        series[(bar.symbol, bar.timeframe)] = SeriesState(
            tf_ms, None, bar.close, bar.time + tf_ms
        )
    return BarState(tfs, grace_ms, series)


def _bar(symbol: str, tf: str, acc: _Acc, closed: bool) -> Bar:
    t, o, h, lo, c, v, n, pv, bv = acc
    return Bar(symbol, tf, t, o, h, lo, c, v, n, pv / v if v > 0 else c, bv, closed)


def _advance(
    s: SeriesState, ticks: list[Tick], symbol: str, tf: str, out: list[Bar]
) -> tuple[SeriesState, int]:
    """Fold a symbol's ticks (in order) into one series; closed bars are appended to ``out``."""
    tf_ms = s.tf_ms
    last_close, next_time = s.last_close, s.next_time
    late = 0
    if s.forming is not None:
        t0, o, h, lo, c, v, n, pv, bv = s.forming
    else:
        t0 = -1
        o = h = lo = c = v = pv = bv = 0.0
        n = 0
    for _sym, ts, _aid, p, q, m in ticks:  # unpacking: cheaper than four attribute reads
        bt = ts - ts % tf_ms
        if bt == t0:
            if p > h:
                h = p
            if p < lo:
                lo = p
            c = p
            v += q
            n += 1
            pv += p * q
            if m is False:
                bv += q
            elif m is None:  # side unknown (a collector without sides): the bar can't tell either
                bv = _NAN
            continue
        if t0 >= 0:
            if bt < t0:
                late += 1
                continue
            out.append(Bar(symbol, tf, t0, o, h, lo, c, v, n, pv / v if v > 0 else c, bv))
            last_close, next_time = c, t0 + tf_ms
        elif next_time is not None and bt < next_time:
            late += 1
            continue
        if next_time is not None and last_close is not None and bt - next_time <= MAX_EMPTY_BARS * tf_ms:
            lc = last_close
            for et in range(next_time, bt, tf_ms):
                out.append(Bar(symbol, tf, et, lc, lc, lc, lc, 0.0, 0, lc, 0.0))
        t0, o, h, lo, c, v, n, pv = bt, p, p, p, p, q, 1, p * q
        bv = 0.0 if m is True else q if m is False else _NAN
    forming = (t0, o, h, lo, c, v, n, pv, bv) if t0 >= 0 else None
    return SeriesState(tf_ms, forming, last_close, next_time), late


def _close_by_clock(
    s: SeriesState, now_ms: int, grace_ms: int, symbol: str, tf: str, out: list[Bar]
) -> SeriesState:
    tf_ms = s.tf_ms
    last_close, next_time, forming = s.last_close, s.next_time, s.forming
    if forming is not None and forming[0] + tf_ms + grace_ms <= now_ms:
        out.append(_bar(symbol, tf, forming, True))
        last_close, next_time, forming = forming[4], forming[0] + tf_ms, None
    if forming is None and last_close is not None and next_time is not None:
        if (now_ms - grace_ms - next_time) // tf_ms > MAX_EMPTY_BARS:  # a hole: no bars, as between ticks
            next_time += (now_ms - grace_ms - next_time) // tf_ms * tf_ms
        while next_time + tf_ms + grace_ms <= now_ms:
            lc = last_close
            out.append(Bar(symbol, tf, next_time, lc, lc, lc, lc, 0.0, 0, lc, 0.0))
            next_time += tf_ms
    if (last_close, next_time, forming) == (s.last_close, s.next_time, s.forming):
        return s
    return SeriesState(tf_ms, forming, last_close, next_time)


def step(state: BarState, event: TickBatch | Clock) -> tuple[BarState, BarUpdate]:
    """Fold one tick batch or clock event into the bar state."""
    series = dict(state.series)
    closed: list[Bar] = []
    forming: list[Bar] = []
    if isinstance(event, Clock):
        for (symbol, tf), s in state.series.items():
            if symbol.endswith(SPOT_SUFFIX) is not event.spot:
                continue
            series[(symbol, tf)] = _close_by_clock(
                s, event.now_ms, state.grace_ms, symbol, tf, closed
            )
        return replace(state, series=series), BarUpdate(tuple(closed), ())

    by_symbol: dict[str, list[Tick]] = {}
    for tk in event.ticks:
        lst = by_symbol.get(tk[0])  # tk[0]: the symbol (a subscript beats the attribute, per tick)
        if lst is None:
            by_symbol[tk[0]] = lst = []
        lst.append(tk)
    last_ids = dict(state.last_agg_id)
    duplicates = state.duplicates
    late = state.late
    for symbol, ticks in by_symbol.items():
        last = last_ids.get(symbol, -1)
        fresh: list[Tick] = []
        keep = fresh.append
        for tk in ticks:
            aid = tk[2]  # agg_id
            if aid > last:
                keep(tk)
                last = aid
            elif aid < 0:  # a synthetic key (no exchange id): unique by the store, unsequenced
                keep(tk)
        duplicates += len(ticks) - len(fresh)
        if not fresh:
            continue
        last_ids[symbol] = last
        for tf in state.timeframes:
            key = (symbol, tf)
            s = series.get(key) or SeriesState(timeframe_ms(tf))
            s, n_late = _advance(s, fresh, symbol, tf, closed)
            late += n_late
            series[key] = s
            if s.forming is not None:
                forming.append(_bar(symbol, tf, s.forming, False))
    new_state = BarState(state.timeframes, state.grace_ms, series, last_ids, duplicates, late)
    return new_state, BarUpdate(tuple(closed), tuple(forming))


def build_bars(
    ticks: Iterable[Tick],
    timeframes: Iterable[str],
    *,
    state: BarState | None = None,
    include_forming: bool = True,
    chunk: int = 50_000,
) -> tuple[list[Bar], BarState]:
    """Batch helper: all bars of ``ticks`` (in order) through the same ``step`` the live path uses.

    The last bar of each series is returned with ``closed=False`` when ``include_forming``.
    """
    st = state or initial_state(timeframes)
    out: list[Bar] = []
    buf: list[Tick] = []
    for tk in ticks:
        buf.append(tk)
        if len(buf) >= chunk:
            st, upd = step(st, TickBatch(tuple(buf), 0, 0))
            out.extend(upd.closed)
            buf = []
    if buf:
        st, upd = step(st, TickBatch(tuple(buf), 0, 0))
        out.extend(upd.closed)
    if include_forming:
        out.extend(
            _bar(sym, tf, s.forming, False)
            for (sym, tf), s in st.series.items()
            if s.forming is not None
        )
    return out, st

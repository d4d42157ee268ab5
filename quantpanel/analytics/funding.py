"""The futures-native numbers: funding charges per bar for the backtest, live carry, basis and
the quoted spread (docs/ANALYTICS.md "Perpetual-futures funding", "Quoted spread").

At a funding event (time F, rate r) a position of ``q`` units receives ``-q · P(F) · r``: positive r,
longs pay shorts. ``P(F)`` is the event's mark price when known, else the close of the last bar
ending at or before F. The backtest charges every event with ``T <= F < T + tf`` to the position held
during the bar ``[T, T + tf)``, so this module turns events into one ``sum P(F)·r`` per bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeAlias, overload

import numpy as np
import numpy.typing as npt
import pandas as pd

from quantpanel.analytics._inputs import ArrayLike, FloatArray, as_array
from quantpanel.errors import AnalyticsInputError

__all__ = ["BarFunding", "basis_bps", "funding_legs", "funding_per_bar", "pair_carry", "quoted_spread_bps"]

IntArray: TypeAlias = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class BarFunding:
    """Funding events gathered onto bars: ``per_bar[t]`` is ``sum P(F)·r`` of the events of bar t.

    A position of ``q`` units held during bar t receives ``-q * per_bar[t]``.
    """

    per_bar: FloatArray
    charged: int  # events that fell in a bar's window and had a price
    skipped: int  # in a bar's window but no mark and no bar ending at or before F: no price to charge
    unmatched: int  # in no bar's window (before the first bar, after the last, or in a gap): not charged


def _times(x: ArrayLike | pd.DatetimeIndex, name: str) -> IntArray:
    """ms since the epoch; a DatetimeIndex (naive = UTC, or tz-aware) is converted."""
    if isinstance(x, pd.DatetimeIndex):
        x = (x.tz_convert("UTC").tz_localize(None) if x.tz is not None else x).to_numpy()
    arr = np.asarray(x)
    if np.issubdtype(arr.dtype, np.datetime64):
        arr = arr.astype("datetime64[ms]").astype(np.int64)
    if arr.ndim != 1:
        raise AnalyticsInputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        f = arr.astype(np.float64)
        if not (np.isfinite(f).all() and (f == np.round(f)).all()):
            raise AnalyticsInputError(f"{name} must be whole milliseconds since the epoch")
    return arr.astype(np.int64)


def funding_per_bar(
    bar_times_ms: ArrayLike | pd.DatetimeIndex,
    timeframe_ms: int,
    closes: ArrayLike,
    event_times_ms: ArrayLike | pd.DatetimeIndex,
    rates: ArrayLike,
    marks: ArrayLike,
) -> BarFunding:
    """Sum ``P(F)·r`` of one symbol's funding events over each bar's window ``[T, T + tf)``.

    ``bar_times_ms`` are the bar opens the backtest trades (aligned pair bars, which may have
    gaps; ms since the epoch, or a DatetimeIndex such as ``y.index``); ``closes`` their closes.
    ``marks`` is NaN where an event has no stored mark price: then ``P(F)`` is the close of the
    last of these bars ending at or before F. Events need not be sorted. An event in a gap
    between bars is in no window and is counted in ``unmatched``, not charged.

    Examples
    --------
    >>> f = funding_per_bar([0, 60_000, 120_000], 60_000, [100.0, 101.0, 102.0],
    ...                     [60_000, 90_000, 120_000, 500_000], [1e-4, -2e-4, 1e-4, 1e-4],
    ...                     [float("nan"), 101.5, float("nan"), 99.0])
    >>> f.per_bar.round(6).tolist(), f.charged, f.unmatched
    ([0.0, -0.0103, 0.0101], 3, 1)
    """
    bt = _times(bar_times_ms, "bar_times_ms")
    tf = int(timeframe_ms)
    if tf <= 0:
        raise AnalyticsInputError(f"timeframe_ms must be > 0, got {timeframe_ms}")
    if len(bt) > 1 and (np.diff(bt) < tf).any():
        i = int(np.argmax(np.diff(bt) < tf))
        raise AnalyticsInputError(
            f"bar_times_ms must increase by at least timeframe_ms ({tf}); not at position {i + 1}")
    c = as_array(closes, "closes")
    if len(c) != len(bt):
        raise AnalyticsInputError(f"bar_times_ms and closes differ in length: {len(bt)}, {len(c)}")
    ft = _times(event_times_ms, "event_times_ms")
    r = as_array(rates, "rates")
    m = np.asarray(marks, dtype=np.float64)
    if m.ndim != 1 or np.isinf(m).any() or (m <= 0).any():
        raise AnalyticsInputError("marks must be one-dimensional prices > 0 (NaN = no mark at F)")
    if not len(ft) == len(r) == len(m):
        raise AnalyticsInputError(
            f"event_times_ms, rates and marks differ in length: {len(ft)}, {len(r)}, {len(m)}")
    n = len(bt)
    k = np.searchsorted(bt, ft, side="right") - 1  # the last bar opening at or before F
    in_bar = (k >= 0) & (ft < bt[k.clip(0)] + tf) if n else np.zeros(len(ft), dtype=bool)
    j = np.searchsorted(bt + tf, ft, side="right") - 1  # the last bar ending at or before F
    price = np.where(np.isnan(m), c[j.clip(0)] if n else np.nan, m)
    priced = ~np.isnan(m) | (j >= 0)
    ok = in_bar & priced
    per_bar = np.bincount(k[ok], weights=price[ok] * r[ok], minlength=n).astype(np.float64)
    return BarFunding(per_bar, int(ok.sum()), int((in_bar & ~priced).sum()), int((~in_bar).sum()))


def funding_legs(funding_a: ArrayLike | None, funding_b: ArrayLike | None, n: int
                 ) -> tuple[FloatArray, FloatArray] | None:
    """Both legs' per-bar ``sum P(F)·r`` (``BarFunding.per_bar``), or None when funding is off.

    A leg passed as None has no funding events (zeros) as long as the other leg has some.

    Examples
    --------
    >>> funding_legs(None, [0.0, 0.5], 2)[0].tolist()
    [0.0, 0.0]
    """
    if funding_a is None and funding_b is None:
        return None
    legs = []
    for f, name in ((funding_a, "funding_a"), (funding_b, "funding_b")):
        arr = np.zeros(n) if f is None else np.asarray(f, dtype=np.float64)
        if arr.shape != (n,):
            raise AnalyticsInputError(f"{name} must have one value per bar ({n}), got shape {arr.shape}")
        if not np.isfinite(arr).all():
            i = int(np.argmax(~np.isfinite(arr)))
            raise AnalyticsInputError(f"{name} has a non-finite value {float(arr[i])} at position {i} "
                                      "(a bar without funding events is 0)")
        legs.append(arr)
    return legs[0], legs[1]


def pair_carry(pos_a: float, price_a: float, rate_a: float, pos_b: float, price_b: float,
               rate_b: float) -> float:
    """What a pair position receives at the next funding: ``-(pos_A·P_A·r_A + pos_B·P_B·r_B)``.

    Positions are signed units (long spread: ``+1`` A, ``-beta`` B); negative = paid. NaN when a
    rate or price is unknown.

    Examples
    --------
    >>> round(pair_carry(1.0, 60_000.0, 1e-4, -20.0, 3_000.0, 5e-5), 6)  # long A pays 6, short B gets 3
    -3.0
    """
    return -(pos_a * price_a * rate_a + pos_b * price_b * rate_b)


@overload
def basis_bps(futures_price: float, spot_price: float) -> float: ...
@overload
def basis_bps(futures_price: ArrayLike, spot_price: ArrayLike) -> FloatArray: ...
def basis_bps(futures_price: float | ArrayLike, spot_price: float | ArrayLike) -> float | FloatArray:
    """Basis of the future over spot, ``(futures - spot) / spot · 10,000``.

    NaN where it is undefined (a NaN price, spot <= 0), so a live view never raises on a bad tick.

    Examples
    --------
    >>> basis_bps(60_030.0, 60_000.0)
    5.0
    >>> basis_bps([101.0, 99.0], [100.0, 100.0]).tolist()
    [100.0, -100.0]
    """
    if isinstance(futures_price, float | int) and isinstance(spot_price, float | int):  # per tick: no numpy
        return (futures_price - spot_price) / spot_price * 1e4 if spot_price > 0 else math.nan
    f = np.asarray(futures_price, dtype=np.float64)
    s = np.asarray(spot_price, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(s > 0, (f - s) / s * 1e4, np.nan)
    return float(out) if out.ndim == 0 else out


@overload
def quoted_spread_bps(bid: float, ask: float) -> float: ...
@overload
def quoted_spread_bps(bid: ArrayLike, ask: ArrayLike) -> FloatArray: ...
def quoted_spread_bps(bid: float | ArrayLike, ask: float | ArrayLike) -> float | FloatArray:
    """Quoted spread ``(ask - bid) / mid · 10,000`` with ``mid = (bid + ask) / 2``.

    NaN where it is undefined (a NaN price, mid <= 0, e.g. an empty book side sent as 0 by both).

    Examples
    --------
    >>> round(quoted_spread_bps(59_999.9, 60_000.1), 6)
    0.033333
    >>> quoted_spread_bps([99.0, 100.0], [101.0, 100.0]).tolist()
    [200.0, 0.0]
    """
    if isinstance(bid, float | int) and isinstance(ask, float | int):  # once per quote: no numpy
        m = (bid + ask) / 2
        return (ask - bid) / m * 1e4 if m > 0 else math.nan
    bb = np.asarray(bid, dtype=np.float64)
    aa = np.asarray(ask, dtype=np.float64)
    mid = (bb + aa) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(mid > 0, (aa - bb) / mid * 1e4, np.nan)
    return float(out) if out.ndim == 0 else out

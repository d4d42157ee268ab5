"""Price statistics of one symbol over a window of bars (docs/ANALYTICS.md "Price statistics")."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quantpanel.analytics._inputs import as_array, check_sorted_index
from quantpanel.errors import AnalyticsInputError, InsufficientDataError

__all__ = ["PriceStats", "price_stats", "bars_per_year"]

_YEAR_S = 365 * 86_400


def bars_per_year(timeframe_s: float) -> float:
    """Bars in 365 days: the annualisation factor's square is this.

    Examples
    --------
    >>> bars_per_year(60)
    525600.0
    """
    return _YEAR_S / timeframe_s


@dataclass(frozen=True, slots=True)
class PriceStats:
    last: float
    change: float  # last close - first bar's open
    change_pct: float
    high: float
    low: float
    mean: float  # of the closes
    std_log_return: float  # ddof=1
    realised_vol: float  # std_log_return * sqrt(bars per 365 days)
    volume: float
    vwap: float
    n: int


def price_stats(bars: pd.DataFrame, *, timeframe_s: float, window: int | None = None) -> PriceStats:
    """Statistics of the last ``window`` bars (all when None).

    ``bars`` has columns open, high, low, close, volume, vwap, indexed by bar time; volume and
    vwap may be NaN (an OHLC file that lacks them), and so then are ``volume`` and ``vwap``.

    Examples
    --------
    >>> bars = pd.DataFrame({"open": [10.0, 11.0], "high": [11.0, 12.5], "low": [9.5, 10.5],
    ...                      "close": [11.0, 12.0], "volume": [2.0, 1.0], "vwap": [10.5, 11.5]})
    >>> p = price_stats(bars, timeframe_s=60)
    >>> p.last, p.change, round(p.change_pct, 2), p.high, p.low, round(p.vwap, 4), p.n
    (12.0, 2.0, 20.0, 12.5, 9.5, 10.8333, 2)
    """
    missing = {"open", "high", "low", "close", "volume", "vwap"} - set(bars.columns)
    if missing:
        raise AnalyticsInputError(f"bars lack column(s) {sorted(missing)}")
    check_sorted_index(bars["close"], "bars")
    b = bars.iloc[-window:] if window else bars
    if len(b) < 2:
        raise InsufficientDataError("price statistics", 2, len(b))
    close = as_array(b["close"], "close")
    # an imported OHLC series may not say its volume or vwap (NaN): then neither can these
    vol = b["volume"].to_numpy(dtype="float64")
    bar_vwap = b["vwap"].to_numpy(dtype="float64")
    r = np.diff(np.log(close))
    first_open = float(b["open"].iloc[0])
    last = float(close[-1])
    sd = float(np.std(r, ddof=1)) if len(r) >= 2 else math.nan
    total = float(vol.sum())
    vwap = float((bar_vwap * vol).sum() / total) if total > 0 else last if total == 0 else math.nan
    return PriceStats(
        last=last, change=last - first_open, change_pct=(last / first_open - 1.0) * 100.0,
        high=float(b["high"].max()), low=float(b["low"].min()), mean=float(close.mean()),
        std_log_return=sd, realised_vol=sd * math.sqrt(bars_per_year(timeframe_s)),
        volume=total, vwap=vwap, n=len(b),
    )

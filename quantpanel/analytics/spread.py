"""Spread, rolling z-score and rolling correlation of log returns (ANALYTICS.md "Pair analytics").

Batch functions work on whole arrays with exact per-window statistics (numpy sliding windows), so
the live path, which computes the same statistic over the newest window only, gives the same
numbers bar for bar.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from quantpanel.analytics._inputs import ArrayLike, as_array, check_sorted_index, pair_arrays
from quantpanel.errors import AnalyticsInputError

__all__ = ["align", "spread", "rolling_zscore", "log_returns", "rolling_correlation",
           "window_zscore", "window_correlation"]


def align(a: pd.Series, b: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Inner-join two close series on bar time (ANALYTICS.md: pair inputs are aligned closes)."""
    check_sorted_index(a, "leg A")
    check_sorted_index(b, "leg B")
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
    return both["a"], both["b"]


def spread(y: ArrayLike, x: ArrayLike, *, beta: float, alpha: float) -> np.ndarray:
    """``s_t = y_t - beta * x_t - alpha``."""
    ya, xa = pair_arrays(y, x, need=0, what="spread")
    return ya - beta * xa - alpha


def _check_window(window: int) -> None:
    if not isinstance(window, (int, np.integer)) or window < 2:
        raise AnalyticsInputError(f"window must be an integer >= 2, got {window!r}")


def window_zscore(values: np.ndarray) -> float:
    """z of the last value against its window (ddof=1); NaN when the window is constant."""
    if values.max() == values.min():
        return float("nan")
    return float((values[-1] - values.mean()) / values.std(ddof=1))


def rolling_zscore(s: ArrayLike, *, window: int = 60) -> np.ndarray:
    """``z_t = (s_t - mean(s[t-w+1..t])) / std(s[t-w+1..t], ddof=1)``.

    NaN for the first ``window - 1`` points and wherever the window is constant (std 0).
    """
    _check_window(window)
    arr = as_array(s, "spread")
    out = np.full(len(arr), np.nan)
    if len(arr) < window:
        return out
    w = sliding_window_view(arr, window)
    std = w.std(axis=1, ddof=1)
    flat = w.max(axis=1) == w.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (arr[window - 1:] - w.mean(axis=1)) / std
    z[flat] = np.nan
    out[window - 1:] = z
    return out


def log_returns(closes: ArrayLike) -> np.ndarray:
    """``ln(c_t / c_{t-1})``; one shorter than the input."""
    c = as_array(closes, "closes")
    if (c <= 0).any():
        raise AnalyticsInputError(f"closes must be positive, got {c[c <= 0][0]!r}")
    return np.diff(np.log(c))


def window_correlation(ra: np.ndarray, rb: np.ndarray) -> float:
    """Pearson correlation of two equally long return windows; NaN when either is constant."""
    da, db = ra - ra.mean(), rb - rb.mean()
    saa, sbb = float(da @ da), float(db @ db)
    if saa == 0.0 or sbb == 0.0 or ra.max() == ra.min() or rb.max() == rb.min():
        return float("nan")
    return float(da @ db) / float(np.sqrt(saa * sbb))


def rolling_correlation(a: ArrayLike, b: ArrayLike, *, window: int = 60) -> np.ndarray:
    """Rolling Pearson correlation of the two legs' log returns over ``window`` returns.

    Aligned with the closes: element t uses the returns ending at bar t, so the first
    ``window`` elements are NaN (``window + 1`` closes are needed).
    """
    _check_window(window)
    ya, xa = pair_arrays(a, b, need=0, what="rolling correlation")
    out = np.full(len(ya), np.nan)
    if len(ya) < window + 1:
        return out
    ra, rb = log_returns(ya), log_returns(xa)
    wa, wb = sliding_window_view(ra, window), sliding_window_view(rb, window)
    da = wa - wa.mean(axis=1, keepdims=True)
    db = wb - wb.mean(axis=1, keepdims=True)
    saa, sbb = (da * da).sum(axis=1), (db * db).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (da * db).sum(axis=1) / np.sqrt(saa * sbb)
    flat = (wa.max(axis=1) == wa.min(axis=1)) | (wb.max(axis=1) == wb.min(axis=1))
    corr[flat] = np.nan
    out[window:] = corr
    return out

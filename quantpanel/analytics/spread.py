"""Spread, rolling z-score and rolling correlation of log returns (docs/ANALYTICS.md "Pair analytics").

Batch functions work on whole arrays with exact per-window statistics (numpy sliding windows), so
the live path, which computes the same statistic over the newest window only, gives the same
numbers bar for bar.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from quantpanel.analytics._inputs import ArrayLike, FloatArray, as_array, check_sorted_index, pair_arrays
from quantpanel.errors import AnalyticsInputError

__all__ = ["align", "spread", "rolling_zscore", "log_returns", "rolling_correlation",
           "window_zscore", "window_correlation"]


def align(a: pd.Series, b: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Inner-join two close series on bar time (docs/ANALYTICS.md: pair inputs are aligned closes).

    Examples
    --------
    >>> y, x = align(pd.Series([1.0, 2.0, 3.0], index=[10, 20, 30]), pd.Series([7.0, 9.0], index=[10, 30]))
    >>> y.tolist(), x.tolist(), y.index.tolist()
    ([1.0, 3.0], [7.0, 9.0], [10, 30])
    """
    check_sorted_index(a, "leg A")
    check_sorted_index(b, "leg B")
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
    return both["a"], both["b"]


def spread(y: ArrayLike, x: ArrayLike, *, beta: float, alpha: float) -> FloatArray:
    """``s_t = y_t - beta * x_t - alpha``.

    Examples
    --------
    >>> spread([3.0, 5.0, 7.5], [1.0, 2.0, 3.0], beta=2.0, alpha=1.0)
    array([0. , 0. , 0.5])
    """
    ya, xa = pair_arrays(y, x, need=0, what="spread")
    return ya - beta * xa - alpha


def _check_window(window: int) -> None:
    if not isinstance(window, (int, np.integer)) or window < 2:
        raise AnalyticsInputError(f"window must be an integer >= 2, got {window!r}")


def window_zscore(values: FloatArray) -> float:
    """z of the last value against its window (ddof=1); NaN when the window is constant.

    Examples
    --------
    >>> window_zscore(np.array([1.0, 2.0, 3.0])), window_zscore(np.array([2.0, 2.0]))
    (1.0, nan)
    """
    if values.max() == values.min():
        return float("nan")
    return float((values[-1] - values.mean()) / values.std(ddof=1))


def rolling_zscore(s: ArrayLike, *, window: int = 60) -> FloatArray:
    """``z_t = (s_t - mean(s[t-w+1..t])) / std(s[t-w+1..t], ddof=1)``.

    NaN for the first ``window - 1`` points and wherever the window is constant (std 0).

    Examples
    --------
    >>> rolling_zscore([1.0, 2.0, 3.0, 2.0, 1.0], window=3).round(3).tolist()
    [nan, nan, 1.0, -0.577, -1.0]
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


def log_returns(closes: ArrayLike) -> FloatArray:
    """``ln(c_t / c_{t-1})``; one shorter than the input.

    Examples
    --------
    >>> log_returns([100.0, 110.0, 99.0]).round(4).tolist()
    [0.0953, -0.1054]
    """
    c = as_array(closes, "closes")
    if (c <= 0).any():
        raise AnalyticsInputError(f"closes must be positive, got {c[c <= 0][0]!r}")
    return np.diff(np.log(c))


def window_correlation(ra: FloatArray, rb: FloatArray) -> float:
    """Pearson correlation of two equally long return windows; NaN when either is constant.

    Examples
    --------
    >>> round(window_correlation(np.array([0.01, -0.02, 0.03]), np.array([0.02, -0.04, 0.05])), 4)
    0.9972
    """
    da, db = ra - ra.mean(), rb - rb.mean()
    saa, sbb = float(da @ da), float(db @ db)
    if saa == 0.0 or sbb == 0.0 or ra.max() == ra.min() or rb.max() == rb.min():
        return float("nan")
    return float(da @ db) / float(np.sqrt(saa * sbb))


def rolling_correlation(a: ArrayLike, b: ArrayLike, *, window: int = 60) -> FloatArray:
    """Rolling Pearson correlation of the two legs' log returns over ``window`` returns.

    Aligned with the closes: element t uses the returns ending at bar t, so the first
    ``window`` elements are NaN (``window + 1`` closes are needed).

    Examples
    --------
    >>> a, b = [100.0, 101.0, 100.5, 102.0, 101.0], [50.0, 50.4, 50.3, 51.0, 50.6]
    >>> rolling_correlation(a, b, window=3).round(3).tolist()
    [nan, nan, nan, 0.991, 0.997]
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

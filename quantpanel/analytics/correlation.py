"""Many symbols at once: the correlation heatmap and the pair scanner."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd

from quantpanel.analytics.hedge import ols_hedge
from quantpanel.analytics.spread import spread
from quantpanel.analytics.stationarity import engle_granger, half_life
from quantpanel.errors import AnalyticsInputError, InsufficientDataError

__all__ = ["correlation_matrix", "scan_pairs", "SCAN_COLUMNS"]

SCAN_COLUMNS = ("a", "b", "n", "coint_pvalue", "half_life", "corr", "beta")


def _closes(closes: pd.DataFrame, window: int | None, *, need: int, what: str) -> pd.DataFrame:
    if closes.shape[1] < 2:
        raise AnalyticsInputError(f"{what} needs at least 2 symbols, got {closes.shape[1]}")
    if not closes.index.is_monotonic_increasing or closes.index.has_duplicates:
        raise AnalyticsInputError(f"{what}: closes must be sorted by unique bar times")
    joined = closes.dropna()  # docs/ANALYTICS.md: inner-joined on bar time
    if (joined <= 0).any().any():
        raise AnalyticsInputError(f"{what}: closes must be positive")
    if window:
        joined = joined.iloc[-(window + 1):]
    if len(joined) < need:
        raise InsufficientDataError(what, need, len(joined))
    return joined


def correlation_matrix(closes: pd.DataFrame, *, window: int | None = 60) -> pd.DataFrame:
    """Pearson correlation of log returns over the last ``window`` returns (all when None).

    ``closes``: one column per symbol, indexed by bar time; rows missing a symbol are dropped.
    A symbol whose returns are constant over the window has NaN correlations.

    Examples
    --------
    >>> closes = pd.DataFrame({"A": [100.0, 101.0, 100.5, 102.0, 101.0], "B": [50.0, 50.4, 50.3, 51.0, 50.6],
    ...                        "C": [20.0, 19.9, 20.1, 20.0, 20.2]})
    >>> correlation_matrix(closes).round(2)
          A     B     C
    A  1.00  0.99 -0.97
    B  0.99  1.00 -0.94
    C -0.97 -0.94  1.00
    """
    joined = _closes(closes, window, need=3, what="correlation heatmap")
    r = np.log(joined).diff().iloc[1:]
    return r.corr()


def scan_pairs(
    closes: pd.DataFrame,
    *,
    lookback: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Engle-Granger p-value, half-life of the OLS spread and return correlation for every pair.

    Rows sorted by p-value (most cointegrated first); a pair the data cannot support has NaN
    statistics. ``progress(done, total)`` is called after each pair.

    Examples
    --------
    >>> noise = np.sin(np.arange(200.0) ** 2)
    >>> x = 100 + np.cumsum(noise)
    >>> walk = 50 + np.cumsum(np.cos(np.arange(200.0) ** 1.5))  # another random walk
    >>> closes = pd.DataFrame({"A": x, "B": 2 * x + np.roll(noise, 7), "C": walk})
    >>> out = scan_pairs(closes)
    >>> out[["a", "b"]].iloc[0].tolist(), out.columns.tolist() == list(SCAN_COLUMNS)
    (['A', 'B'], True)
    """
    joined = _closes(closes, lookback, need=10, what="pair scanner")
    if lookback:
        joined = joined.iloc[-lookback:]
    logret = np.log(joined).diff().iloc[1:]
    corr = logret.corr()
    pairs = list(itertools.combinations(joined.columns, 2))
    rows = []
    for k, (a, b) in enumerate(pairs, 1):
        y, x = joined[a].to_numpy(), joined[b].to_numpy()
        p = hl = beta = np.nan
        try:
            p = engle_granger(y, x).pvalue
            h = ols_hedge(y, x)
            beta = h.beta
            hl = half_life(spread(y, x, beta=h.beta, alpha=h.alpha))
        except AnalyticsInputError:
            pass
        rows.append((a, b, len(y), p, hl, float(corr.loc[a, b]), beta))
        if progress:
            progress(k, len(pairs))
    out = pd.DataFrame(rows, columns=list(SCAN_COLUMNS))
    return out.sort_values("coint_pvalue", na_position="last", kind="stable").reset_index(drop=True)

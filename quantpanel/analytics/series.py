"""Whole-history pair series by the batch analytics: what the Pair tab draws once from every stored
bar, what the Offline tab draws for two uploaded series, and what a notebook plots."""

from __future__ import annotations

import numpy as np
import pandas as pd

from quantpanel.analytics.hedge import ols_hedge
from quantpanel.analytics.kalman import kalman_hedge
from quantpanel.analytics.spread import align, rolling_correlation, rolling_zscore, spread

__all__ = ["pair_series"]


def pair_series(y: pd.Series, x: pd.Series, *, window: int = 60, lookback: int | None = None,
                delta: float = 1e-4, ve: float = 1e-3) -> pd.DataFrame:
    """The Pair tab's series over a whole history: static OLS over the last ``lookback`` bars
    (all when None), its spread, rolling z, rolling correlation of log returns, and the Kalman
    filter's beta and z (docs/ANALYTICS.md).

    One row per aligned bar: ``time`` (datetime64[ns]), ``spread``, ``zscore``, ``corr``,
    ``beta``, ``alpha``, ``kalman_beta``, ``kalman_z``.

    Examples
    --------
    >>> t = pd.date_range("2024-08-08", periods=40, freq="1min")
    >>> x = pd.Series(100 + np.cumsum(np.sin(np.arange(40))), index=t)
    >>> y = 2 * x + 5 + 0.1 * np.cos(np.arange(40))
    >>> df = pair_series(y, x, window=10)
    >>> len(df), list(df.columns)
    (40, ['time', 'spread', 'zscore', 'corr', 'beta', 'alpha', 'kalman_beta', 'kalman_z'])
    >>> round(float(df["beta"].iloc[-1]), 3)
    1.915
    """
    ya, xa = align(y, x)
    h = ols_hedge(ya, xa, lookback=lookback)
    s = spread(ya, xa, beta=h.beta, alpha=h.alpha)
    k = kalman_hedge(ya, xa, delta=delta, ve=ve)
    return pd.DataFrame({
        "time": pd.DatetimeIndex(ya.index).astype("datetime64[ns]"), "spread": s,
        "zscore": rolling_zscore(s, window=window),
        "corr": rolling_correlation(ya, xa, window=window),
        "beta": np.full(len(ya), h.beta), "alpha": np.full(len(ya), h.alpha),
        "kalman_beta": np.asarray(k.beta), "kalman_z": np.asarray(k.zscore)})

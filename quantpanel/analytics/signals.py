"""What a backtest trades: the pair's z-score and hedge ratio, and the sweep's grid axes
(docs/ANALYTICS.md "Mean-reversion backtest"). Kept apart from the engine in backtest.py, which
re-exports these for the CLI and the dashboard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import pandas as pd

from quantpanel.analytics._inputs import FloatArray
from quantpanel.analytics.hedge import ols_hedge
from quantpanel.analytics.kalman import kalman_hedge
from quantpanel.analytics.spread import rolling_zscore, spread
from quantpanel.errors import AnalyticsInputError

__all__ = ["BetaMode", "Signal", "pair_signal", "parse_grid"]

BetaMode: TypeAlias = Literal["ols", "kalman"]


@dataclass(frozen=True)
class Signal:
    """The z-score a backtest trades and the beta it hedges with, one value per aligned bar."""

    z: FloatArray
    beta: FloatArray
    mode: BetaMode


def pair_signal(
    y: pd.Series,
    x: pd.Series,
    *,
    mode: BetaMode = "ols",
    window: int = 60,
    lookback: int | None = None,
    delta: float = 1e-4,
    ve: float = 1e-3,
) -> Signal:
    """``ols``: static OLS beta (over the last ``lookback`` bars) and the rolling z of its spread;
    ``kalman``: the filter's beta_t and its innovation z-score (docs/ANALYTICS.md).

    Examples
    --------
    >>> sig = pair_signal(pd.Series([2.0, 4.1, 5.9, 8.0, 9.9]), pd.Series([1.0, 2.0, 3.0, 4.0, 5.0]), window=3)
    >>> sig.mode, sig.z.round(2).tolist(), round(float(sig.beta[0]), 3)
    ('ols', [nan, nan, -0.79, 0.34, -0.05], 1.97)
    """
    if mode == "kalman":
        k = kalman_hedge(y, x, delta=delta, ve=ve)
        return Signal(np.asarray(k.zscore, dtype=np.float64), np.asarray(k.beta, dtype=np.float64), mode)
    if mode != "ols":
        raise AnalyticsInputError(f"beta mode must be 'ols' or 'kalman', got {mode!r}")
    h = ols_hedge(y, x, lookback=lookback)
    z = rolling_zscore(spread(y, x, beta=h.beta, alpha=h.alpha), window=window)
    return Signal(np.asarray(z, dtype=np.float64), np.full(len(y), h.beta), mode)


def parse_grid(text: str) -> FloatArray:
    """``start:stop:step`` (stop included), e.g. ``1:3:0.25`` -> 1, 1.25, ..., 3.

    Examples
    --------
    >>> parse_grid("1:2:0.25").tolist()
    [1.0, 1.25, 1.5, 1.75, 2.0]
    """
    try:
        start, stop, step = (float(v) for v in text.split(":"))
    except ValueError:
        raise AnalyticsInputError(f"{text!r} is not start:stop:step, e.g. 1:3:0.25") from None
    if not (step > 0 and stop >= start and math.isfinite(stop) and math.isfinite(start)):
        raise AnalyticsInputError(f"{text!r}: need step > 0 and stop >= start")
    k = round((stop - start) / step)
    if k >= 1000:
        raise AnalyticsInputError(f"{text!r}: {k + 1} values; at most 1000 per grid axis")
    return np.round(start + np.arange(k + 1) * step, 10)

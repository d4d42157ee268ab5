"""Tests of mean reversion on the spread: ADF, Engle-Granger, half-life, Hurst (statsmodels)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from statsmodels.tsa.stattools import adfuller, coint

from quantpanel.analytics._inputs import ArrayLike, pair_arrays, series_array
from quantpanel.errors import AnalyticsInputError

__all__ = ["AdfResult", "CointResult", "adf", "engle_granger", "half_life", "hurst"]


@dataclass(frozen=True, slots=True)
class AdfResult:
    stat: float
    pvalue: float
    used_lag: int
    nobs: int
    crit_1: float
    crit_5: float
    crit_10: float

    @property
    def stationary_at_5pct(self) -> bool:
        """The verdict at 5 %: the unit root is rejected."""
        return self.pvalue < 0.05


@dataclass(frozen=True, slots=True)
class CointResult:
    stat: float
    pvalue: float
    crit_1: float
    crit_5: float
    crit_10: float


def adf(s: ArrayLike, *, maxlag: int | None = None) -> AdfResult:
    """``adfuller(s, maxlag=maxlag, regression="c", autolag="AIC")``.

    ``maxlag=None`` is statsmodels' default ``12 * (n/100)**0.25``; cap it on long series
    (the default takes ~20 s on 100k points).

    Examples
    --------
    >>> noise = np.sin(np.arange(200.0) ** 2)  # deterministic, and as good as white noise here
    >>> adf(noise, maxlag=2).stationary_at_5pct, adf(np.cumsum(noise), maxlag=2).stationary_at_5pct
    (True, False)
    """
    arr = series_array(s, need=10, what="ADF test")
    if arr.max() == arr.min():
        raise AnalyticsInputError("the spread is constant: the ADF test is undefined")
    stat, pvalue, used_lag, nobs, crit, _ = adfuller(
        arr, maxlag=maxlag, regression="c", autolag="AIC", result_object=False)
    return AdfResult(float(stat), float(pvalue), int(used_lag), int(nobs),
                     float(crit["1%"]), float(crit["5%"]), float(crit["10%"]))


def engle_granger(y: ArrayLike, x: ArrayLike) -> CointResult:
    """``statsmodels.tsa.stattools.coint(y, x)`` (constant trend, AEG method).

    Examples
    --------
    >>> noise = np.sin(np.arange(200.0) ** 2)
    >>> x = 100 + np.cumsum(noise)  # a random walk
    >>> engle_granger(2 * x + np.roll(noise, 7), x).pvalue < 0.05  # cointegrated at 5 %
    True
    """
    ya, xa = pair_arrays(y, x, need=10, what="Engle-Granger test")
    stat, pvalue, crit = coint(ya, xa)
    return CointResult(float(stat), float(pvalue), float(crit[0]), float(crit[1]), float(crit[2]))


def half_life(s: ArrayLike) -> float:
    """``-ln 2 / lambda`` from OLS of ``diff(s)`` on ``s[:-1]`` with intercept; inf if lambda >= 0.

    Examples
    --------
    >>> round(half_life([1.0, 0.5, 0.25, 0.125, 0.0625]), 3), half_life([1.0, 2.0, 4.0, 8.0])
    (1.386, inf)
    """
    arr = series_array(s, need=3, what="half-life")
    lagged, delta = arr[:-1], np.diff(arr)
    dx = lagged - lagged.mean()
    sxx = float(dx @ dx)
    if sxx == 0.0:
        raise AnalyticsInputError("the spread is constant: the half-life is undefined")
    lam = float(dx @ (delta - delta.mean())) / sxx
    return math.inf if lam >= 0 else -math.log(2) / lam


def hurst(s: ArrayLike, *, max_lag: int = 100) -> float:
    """Hurst exponent by the variance of lagged differences over lags 2..max_lag.

    ``Var(s_{t+k} - s_t) ~ k^{2H}``, so H is half the slope of log variance on log lag.

    Examples
    --------
    >>> noise = np.sin(np.arange(200.0) ** 2)
    >>> round(hurst(noise, max_lag=20), 2), round(hurst(np.cumsum(noise), max_lag=20), 2)
    (0.02, 0.52)
    """
    if max_lag < 3:
        raise AnalyticsInputError(f"max_lag must be >= 3, got {max_lag}")
    arr = series_array(s, need=max_lag + 2, what=f"Hurst exponent (max_lag={max_lag})")
    lags = np.arange(2, max_lag + 1)
    var = np.array([np.var(arr[k:] - arr[:-k]) for k in lags])
    if (var <= 0).any():
        raise AnalyticsInputError("the spread has constant lagged differences: Hurst is undefined")
    slope = np.polyfit(np.log(lags), np.log(var), 1)[0]
    return float(slope / 2.0)

"""Tests of mean reversion on the spread: ADF, Engle-Granger, half-life, Hurst (statsmodels)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from statsmodels.regression.linear_model import OLS
from statsmodels.tsa.stattools import adfuller, coint
from statsmodels.tsa.tsatools import add_trend, lagmat

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


_SQRTEPS = float(np.sqrt(np.finfo(float).eps))


def _aic_lag(x: np.ndarray, regression: str, maxlag: int | None) -> int | None:
    """The lag ``adfuller(x, maxlag, regression, autolag="AIC")`` picks, or None to let it search.

    statsmodels fits one OLS per candidate lag (55 fits of 43k rows for a month of 1m bars: 7 s).
    The candidates are nested (the first k columns of one design), so one QR decomposition gives
    every fit's residual sum of squares: the full fit's plus the tail of Q'y past column k. Same
    observations, same AIC formula (-2 llf + 2 k) and ties to the shorter lag, as there; a near
    tie (1e-9) or a short series goes back to statsmodels' own search."""
    n0 = len(x)
    ntrend = 1 if regression == "c" else 0
    if maxlag is None:
        maxlag = min(n0 // 2 - ntrend - 1, int(np.ceil(12.0 * np.power(n0 / 100.0, 1 / 4.0))))
    if maxlag < 1 or maxlag > n0 // 2 - ntrend - 1:
        return None if maxlag != 0 else 0
    dx = np.diff(x)
    design = lagmat(dx[:, None], maxlag, trim="both", original="in")
    nobs = design.shape[0]
    design[:, 0] = x[-nobs - 1:-1]
    y = dx[-nobs:]
    if ntrend:
        design = np.column_stack([np.ones(nobs), design])
    q, r = np.linalg.qr(design)
    if np.abs(np.diag(r)).min() < 1e-10 * np.abs(np.diag(r)).max():
        return None  # (nearly) collinear lags: statsmodels' pinv fits decide
    qy = q.T @ y
    resid = y - q @ qy
    tail = np.append(np.cumsum((qy**2)[::-1])[::-1], 0.0)  # tail[k]: sum of qy[k:]**2
    first = ntrend + 1  # columns: the trend, the level, then the lags
    k = np.arange(first, first + maxlag + 1)
    ssr = resid @ resid + tail[k]
    aic = nobs * (np.log(2 * np.pi) + np.log(ssr / nobs) + 1) + 2 * k
    order = np.argsort(aic, kind="stable")
    if len(order) > 1 and abs(aic[order[1]] - aic[order[0]]) <= 1e-9 * abs(aic[order[0]]):
        return None
    return int(order[0])


def adf(s: ArrayLike, *, maxlag: int | None = None) -> AdfResult:
    """``adfuller(s, maxlag=maxlag, regression="c", autolag="AIC")``, its lag search done at once
    (``_aic_lag``).

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
    lag = _aic_lag(arr, "c", maxlag)
    stat, pvalue, used_lag, nobs, crit = adfuller(  # without autolag, no best-IC entry at the end
        arr, maxlag=maxlag if lag is None else lag, regression="c", autolag="AIC" if lag is None else None,
        result_object=False)[:5]
    return AdfResult(float(stat), float(pvalue), int(used_lag), int(nobs),
                     float(crit["1%"]), float(crit["5%"]), float(crit["10%"]))


def engle_granger(y: ArrayLike, x: ArrayLike) -> CointResult:
    """``statsmodels.tsa.stattools.coint(y, x)`` (constant trend, AEG method), the lag search of its
    ADF step done at once (``_aic_lag``).

    Examples
    --------
    >>> noise = np.sin(np.arange(200.0) ** 2)
    >>> x = 100 + np.cumsum(noise)  # a random walk
    >>> engle_granger(2 * x + np.roll(noise, 7), x).pvalue < 0.05  # cointegrated at 5 %
    True
    """
    ya, xa = pair_arrays(y, x, need=10, what="Engle-Granger test")
    fit = OLS(ya, add_trend(xa[:, None], trend="c", prepend=False)).fit()  # coint's own first step
    lag = _aic_lag(np.asarray(fit.resid, dtype=float), "n", None) if fit.rsquared < 1 - 100 * _SQRTEPS else None
    stat, pvalue, crit = coint(ya, xa, maxlag=lag, autolag=None if lag is not None else "aic")
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

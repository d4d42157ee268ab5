"""Everything about a pair in one frozen result: the CLI's ``analyze`` and the "Run tests" button.

A statistic that cannot be computed on this data (too short, constant) is None, with the reason
in ``errors``; the others are still reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np

from quantpanel.analytics._inputs import ArrayLike
from quantpanel.analytics.hedge import ols_hedge
from quantpanel.analytics.spread import rolling_correlation, rolling_zscore, spread
from quantpanel.analytics.stationarity import adf, engle_granger, half_life, hurst
from quantpanel.errors import AnalyticsInputError

__all__ = ["PairReport", "pair_report", "REPORT_KEYS"]

#: The keys of ``quantpanel analyze --json``: a contract scripts rely on.
REPORT_KEYS = ("n", "beta", "alpha", "r2", "beta_se", "adf_stat", "adf_pvalue", "adf_lag",
               "coint_stat", "coint_pvalue", "half_life", "hurst", "zscore_last", "corr_last")
T = TypeVar("T")


@dataclass(frozen=True)
class PairReport:
    n: int
    beta: float | None = None
    alpha: float | None = None
    r2: float | None = None
    beta_se: float | None = None
    adf_stat: float | None = None
    adf_pvalue: float | None = None
    adf_lag: int | None = None
    adf_crit_5: float | None = None
    coint_stat: float | None = None
    coint_pvalue: float | None = None
    half_life: float | None = None
    hurst: float | None = None
    zscore_last: float | None = None
    corr_last: float | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The contract keys, NaN and inf as None (JSON null)."""
        d = asdict(self)
        return {k: _finite(d[k]) for k in REPORT_KEYS}

    @property
    def verdict(self) -> str:
        """A plain-language reading of the tests at 5 %."""
        if self.adf_pvalue is None and self.coint_pvalue is None:
            return "Not enough data to test for mean reversion."
        parts = []
        if self.coint_pvalue is not None:
            parts.append(
                f"The legs are {'' if self.coint_pvalue < 0.05 else 'not '}cointegrated at 5 % "
                f"(Engle-Granger p = {self.coint_pvalue:.3f})")
        if self.adf_pvalue is not None:
            parts.append(
                f"the spread is {'' if self.adf_pvalue < 0.05 else 'not '}stationary at 5 % "
                f"(ADF p = {self.adf_pvalue:.3f})")
        if self.half_life is not None:
            parts.append("it does not mean-revert (half-life infinite)" if math.isinf(self.half_life)
                         else f"its half-life is {self.half_life:.1f} bars")
        if self.hurst is not None:
            kind = "mean-reverting" if self.hurst < 0.5 else "trending" if self.hurst > 0.5 else "a random walk"
            parts.append(f"Hurst {self.hurst:.2f} suggests {kind}")
        return "; ".join(parts) + "."


def _finite(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _try(errors: dict[str, str], key: str, fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except AnalyticsInputError as exc:
        errors[key] = str(exc)
        return None


def pair_report(
    y: ArrayLike,
    x: ArrayLike,
    *,
    window: int = 60,
    lookback: int | None = None,
    adf_maxlag: int | None = None,
    hurst_max_lag: int = 100,
) -> PairReport:
    """Static OLS hedge over the lookback, then spread tests, last z-score and correlation.

    Examples
    --------
    >>> noise = np.sin(np.arange(200.0) ** 2)
    >>> x = 100 + np.cumsum(noise)
    >>> r = pair_report(2 * x + np.roll(noise, 7), x, adf_maxlag=2)
    >>> r.n, round(r.beta, 2), r.coint_pvalue < 0.05, r.errors
    (200, 2.04, True, {})
    >>> pair_report([1.0, 2.0], [1.0, 3.0]).errors
    {'hedge': 'OLS hedge ratio needs at least 3 observations, got 2'}
    """
    errors: dict[str, str] = {}
    h = _try(errors, "hedge", lambda: ols_hedge(y, x, lookback=lookback))
    n = len(np.asarray(y)) if not lookback else min(lookback, len(np.asarray(y)))
    if h is None:
        return PairReport(n=n, errors=errors)
    s = spread(y, x, beta=h.beta, alpha=h.alpha)
    a = _try(errors, "adf", lambda: adf(s, maxlag=adf_maxlag))
    c = _try(errors, "coint", lambda: engle_granger(y, x))
    hl = _try(errors, "half_life", lambda: half_life(s))
    hu = _try(errors, "hurst", lambda: hurst(s, max_lag=hurst_max_lag))
    z = rolling_zscore(s, window=window)
    corr = rolling_correlation(y, x, window=window)
    return PairReport(
        n=h.n, beta=h.beta, alpha=h.alpha, r2=h.r2, beta_se=h.beta_se,
        adf_stat=a.stat if a else None, adf_pvalue=a.pvalue if a else None,
        adf_lag=a.used_lag if a else None, adf_crit_5=a.crit_5 if a else None,
        coint_stat=c.stat if c else None, coint_pvalue=c.pvalue if c else None,
        half_life=hl, hurst=hu,
        zscore_last=float(z[-1]) if len(z) else None,
        corr_last=float(corr[-1]) if len(corr) else None,
        errors=errors,
    )

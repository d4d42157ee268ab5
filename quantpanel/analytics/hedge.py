"""Static OLS hedge ratio of leg A (y) on leg B (x) with intercept: ``y = alpha + beta * x + e``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantpanel.analytics._inputs import ArrayLike, pair_arrays
from quantpanel.errors import AnalyticsInputError

__all__ = ["HedgeResult", "ols_hedge"]


@dataclass(frozen=True, slots=True)
class HedgeResult:
    beta: float
    alpha: float
    r2: float
    beta_se: float  # standard error of beta (classical, n - 2 degrees of freedom)
    n: int


def ols_hedge(y: ArrayLike, x: ArrayLike, *, lookback: int | None = None) -> HedgeResult:
    """OLS of ``y`` on ``x`` with intercept over the last ``lookback`` points (all when None).

    Examples
    --------
    >>> r = ols_hedge([2.0, 4.1, 5.9, 8.0], [1.0, 2.0, 3.0, 4.0])
    >>> round(r.beta, 3), round(r.alpha, 3)
    (1.98, 0.05)
    """
    ya, xa = pair_arrays(y, x, need=3, what="OLS hedge ratio")
    if lookback:
        ya, xa = ya[-lookback:], xa[-lookback:]
    n = len(ya)
    xm, ym = xa.mean(), ya.mean()
    dx, dy = xa - xm, ya - ym
    sxx = float(dx @ dx)
    if sxx == 0.0:
        raise AnalyticsInputError("x is constant over the lookback: the hedge ratio is undefined")
    beta = float(dx @ dy) / sxx
    alpha = float(ym - beta * xm)
    resid = ya - alpha - beta * xa
    sse = float(resid @ resid)
    sst = float(dy @ dy)
    r2 = 1.0 - sse / sst if sst > 0 else float("nan")
    beta_se = float(np.sqrt(sse / (n - 2) / sxx))
    return HedgeResult(beta, alpha, r2, beta_se, n)

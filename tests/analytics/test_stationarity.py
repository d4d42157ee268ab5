"""ADF and Engle-Granger with their lag search done from one QR decomposition (``_aic_lag``) give
statsmodels' own ``adfuller(autolag="AIC")`` and ``coint`` answers exactly: the same lag, the same
statistic, p-value and observations, to the bit."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.tsa.stattools import adfuller, coint

from quantpanel.analytics.stationarity import adf, engle_granger


@pytest.mark.parametrize("seed", range(40))
def test_the_lag_search_picks_what_statsmodels_picks(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 2_500))  # long enough for maxlag 10
    e = rng.normal(size=n)
    x = 100 + (np.cumsum(e), e, np.convolve(e, [1, 0.6, 0.3], "same"))[seed % 3]  # walk, noise, MA(2)
    maxlag = (None, 0, 3, 10)[seed % 4]
    ref = adfuller(x, maxlag=maxlag, regression="c", autolag="AIC", result_object=False)
    got = adf(x, maxlag=maxlag)
    assert (got.stat, got.pvalue, got.used_lag, got.nobs, got.crit_5) == (ref[0], ref[1], ref[2], ref[3],
                                                                               ref[4]["5%"])
    y = 2 * x + rng.normal(size=n) * (seed % 5 + 0.1)
    stat, pvalue, crit = coint(y, x)
    g = engle_granger(y, x)
    assert (g.stat, g.pvalue, g.crit_5) == (stat, pvalue, crit[1])

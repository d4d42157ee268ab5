"""Random cointegrated and non-cointegrated pairs: only documented errors, NaN exactly as defined."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import quantpanel.analytics as qa
from quantpanel.errors import AnalyticsInputError, InsufficientDataError


@st.composite
def pairs(draw):
    n = draw(st.integers(min_value=0, max_value=400))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    kind = draw(st.sampled_from(["cointegrated", "independent", "flat_legs", "flat_runs"]))
    rng = np.random.default_rng(seed)
    x = 100 + np.cumsum(rng.normal(size=n))
    if kind == "cointegrated":
        y = 3 + draw(st.floats(0.1, 5)) * x + rng.normal(scale=0.5, size=n)
    elif kind == "independent":
        y = 100 + np.cumsum(rng.normal(size=n))
    elif kind == "flat_legs":
        y, x = np.full(n, 50.0), np.full(n, 20.0)
    else:  # prices that sit still for a while (empty bars carry the close)
        y = 100 + np.repeat(np.cumsum(rng.normal(size=(n + 9) // 10)), 10)[:n]
        x = 50 + np.repeat(np.cumsum(rng.normal(size=(n + 9) // 10)), 10)[:n]
    return np.abs(y) + 1, np.abs(x) + 1, draw(st.integers(min_value=2, max_value=80))


@settings(max_examples=150, deadline=None)
@given(pairs())
def test_pair_analytics_raise_only_documented_errors_and_nan_where_defined(case):
    y, x, w = case
    try:
        h = qa.ols_hedge(y, x)
    except InsufficientDataError as e:
        assert len(y) < 3 and e.needed == 3 and e.got == len(y)
        return
    except AnalyticsInputError as e:
        assert "x is constant" in str(e)
        return
    s = qa.spread(y, x, beta=h.beta, alpha=h.alpha)
    z = qa.rolling_zscore(s, window=w)
    assert len(z) == len(s)
    for t in range(len(s)):
        if t < w - 1:
            assert np.isnan(z[t])
        else:
            win = s[t - w + 1:t + 1]
            if win.max() == win.min():
                assert np.isnan(z[t])
            else:
                assert not np.isnan(z[t])
                assert z[t] == pytest.approx((s[t] - win.mean()) / win.std(ddof=1), rel=1e-9, abs=1e-12)
    c = qa.rolling_correlation(y, x, window=w)
    assert np.isnan(c[: min(w, len(c))]).all()
    finite = c[~np.isnan(c)]
    assert ((finite >= -1 - 1e-9) & (finite <= 1 + 1e-9)).all()
    for fn in (qa.half_life, lambda v: qa.hurst(v, max_lag=20), lambda v: qa.adf(v, maxlag=2)):
        try:
            fn(s)
        except InsufficientDataError as e:
            assert e.got == len(s) < e.needed
        except AnalyticsInputError as e:
            assert "constant" in str(e)


def test_errors_say_what_is_needed_and_where():
    with pytest.raises(InsufficientDataError, match="OLS hedge ratio needs at least 3 observations, got 2"):
        qa.ols_hedge([1.0, 2.0], [1.0, 3.0])
    with pytest.raises(AnalyticsInputError, match="y and x differ in length: 4 vs 3"):
        qa.ols_hedge([1.0, 2, 3, 4], [1.0, 2, 3])
    with pytest.raises(AnalyticsInputError, match="x has a non-finite value nan at position 1"):
        qa.ols_hedge([1.0, 2, 3], [1.0, np.nan, 3])
    t = pd.to_datetime([3, 1, 2], unit="s")
    with pytest.raises(AnalyticsInputError, match="y is not sorted by time"):
        qa.ols_hedge(pd.Series([1.0, 2, 3], t), pd.Series([1.0, 2, 4], t))
    a = pd.Series([1.0, 2, 3], pd.to_datetime([1, 2, 3], unit="s"))
    b = pd.Series([1.0, 2, 3], pd.to_datetime([1, 2, 4], unit="s"))
    with pytest.raises(AnalyticsInputError, match="not aligned on the same bar times"):
        qa.ols_hedge(a, b)
    y, x = qa.align(a, b)
    assert list(y.index) == list(x.index) == list(pd.to_datetime([1, 2], unit="s"))
    with pytest.raises(InsufficientDataError,
                       match=r"Hurst exponent \(max_lag=100\) needs at least 102 observations, got 50"):
        qa.hurst(np.arange(50.0))
    with pytest.raises(AnalyticsInputError, match="window must be an integer >= 2, got 1"):
        qa.rolling_zscore([1.0, 2.0], window=1)
    with pytest.raises(AnalyticsInputError, match="closes must be positive"):
        qa.log_returns([1.0, 0.0])

"""Correlation heatmap and pair scanner against independent pandas/statsmodels computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.tsa.stattools import coint

from quantpanel.analytics.correlation import correlation_matrix, scan_pairs
from quantpanel.errors import AnalyticsInputError, InsufficientDataError

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def triple() -> pd.DataFrame:
    """Real Binance.US 1m closes of BTCUSDT, BTCUSDC and BTCUSD (first 3,000 minutes)."""
    cols = {}
    for sym in ("BTCUSDT", "BTCUSDC", "BTCUSD"):
        df = pd.read_csv(ROOT / "data" / "ohlc" / f"binanceus-{sym}-1m-2023-03-01_2023-03-21.csv.gz",
                         parse_dates=["open_time"], nrows=3000)
        cols[sym] = df.set_index("open_time")["close"]
    return pd.DataFrame(cols)


def test_correlation_matrix_equals_pandas(triple):
    m = correlation_matrix(triple, window=500)
    ref = np.log(triple.iloc[-501:]).diff().iloc[1:].corr()
    pd.testing.assert_frame_equal(m, ref, rtol=1e-12)
    assert list(m.columns) == ["BTCUSDT", "BTCUSDC", "BTCUSD"]
    full = correlation_matrix(triple, window=None)
    pd.testing.assert_frame_equal(full, np.log(triple).diff().iloc[1:].corr(), rtol=1e-12)


def test_rows_missing_a_symbol_are_inner_joined_away(triple):
    t = triple.copy()
    t.iloc[10:20, 1] = np.nan
    m = correlation_matrix(t, window=None)
    ref = np.log(t.dropna()).diff().iloc[1:].corr()
    pd.testing.assert_frame_equal(m, ref, rtol=1e-12)


def test_scanner_equals_statsmodels(triple):
    seen = []
    out = scan_pairs(triple, lookback=1000, progress=lambda d, n: seen.append((d, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert list(out.coint_pvalue) == sorted(out.coint_pvalue)
    last = triple.iloc[-1000:]
    for row in out.itertuples():
        y, x = last[row.a].to_numpy(), last[row.b].to_numpy()
        assert row.coint_pvalue == coint(y, x)[1]
        fit = sm.OLS(y, sm.add_constant(x)).fit()
        s = y - fit.params[1] * x - fit.params[0]
        lam = sm.OLS(np.diff(s), sm.add_constant(s[:-1])).fit().params[1]
        assert math.isclose(row.half_life, -math.log(2) / lam if lam < 0 else math.inf, rel_tol=1e-6)
        r = np.log(last).diff().iloc[1:]
        assert math.isclose(row.corr, r[row.a].corr(r[row.b]), rel_tol=1e-12)
        assert row.n == 1000


def test_errors():
    idx = pd.date_range("2024-01-01", periods=5, freq="1min")
    with pytest.raises(AnalyticsInputError, match="needs at least 2 symbols, got 1"):
        correlation_matrix(pd.DataFrame({"A": range(1, 6)}, index=idx))
    with pytest.raises(InsufficientDataError, match="pair scanner needs at least 10 observations, got 5"):
        scan_pairs(pd.DataFrame({"A": range(1, 6), "B": range(2, 7)}, index=idx))
    with pytest.raises(AnalyticsInputError, match="sorted by unique bar times"):
        correlation_matrix(pd.DataFrame({"A": [1, 2, 3], "B": [1, 2, 3]}, index=idx[[2, 1, 0]]))

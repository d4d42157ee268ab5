"""Every pair statistic equals an independent numpy/pandas/statsmodels computation on real data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from numpy.testing import assert_allclose
from statsmodels.tsa.stattools import adfuller, coint

import quantpanel.analytics as qa
from quantpanel.pipeline.bars import build_bars

from tests.conftest import ROOT

OHLC = ROOT / "data" / "ohlc"
RTOL = 1e-9


def klines(symbol: str) -> pd.Series:
    df = pd.read_csv(OHLC / f"binanceus-{symbol}-1m-2023-03-01_2023-03-21.csv.gz",
                     parse_dates=["open_time"])
    return df.set_index("open_time")["close"]


@pytest.fixture(scope="module")
def depeg_pair() -> tuple[pd.Series, pd.Series]:
    """Real Binance.US 1m closes, BTCUSDT vs BTCUSD, through the March 2023 USDC de-peg."""
    return qa.align(klines("BTCUSDT"), klines("BTCUSD"))


@pytest.fixture(scope="module")
def futures_pair(usdm_ticks) -> tuple[pd.Series, pd.Series]:
    """Real Binance USD-M 1s closes, ETHUSDT (y) vs BTCUSDT (x), 2024-08-08."""
    bars, _ = build_bars(usdm_ticks, ["1s"])
    s = {sym: pd.Series({b.time: b.close for b in bars if b.symbol == sym}).sort_index()
         for sym in ("ETHUSDT", "BTCUSDT")}
    return qa.align(s["ETHUSDT"], s["BTCUSDT"])


@pytest.fixture(params=["depeg", "futures"])
def pair(request, depeg_pair, futures_pair):
    return depeg_pair if request.param == "depeg" else futures_pair


def test_ols_hedge_equals_statsmodels(pair):
    y, x = pair
    h = qa.ols_hedge(y, x)
    ref = sm.OLS(y.to_numpy(), sm.add_constant(x.to_numpy())).fit()
    assert_allclose([h.alpha, h.beta, h.r2, h.beta_se],
                    [ref.params[0], ref.params[1], ref.rsquared, ref.bse[1]], rtol=RTOL)
    assert h.n == len(y)
    # over a lookback: only the last N points count
    h2 = qa.ols_hedge(y, x, lookback=200)
    ref2 = sm.OLS(y.to_numpy()[-200:], sm.add_constant(x.to_numpy()[-200:])).fit()
    assert_allclose([h2.alpha, h2.beta], ref2.params, rtol=RTOL)


def test_spread_and_zscore_equal_pandas(pair):
    y, x = pair
    h = qa.ols_hedge(y, x)
    s = qa.spread(y, x, beta=h.beta, alpha=h.alpha)
    ref_s = y.to_numpy() - h.beta * x.to_numpy() - h.alpha
    assert_allclose(s, ref_s, rtol=0, atol=1e-9 * np.abs(y.to_numpy()).max())
    for w in (20, 60):
        z = qa.rolling_zscore(s, window=w)
        ps = pd.Series(ref_s)
        ref_z = ((ps - ps.rolling(w).mean()) / ps.rolling(w).std()).to_numpy(copy=True)
        flat = (ps.rolling(w).max() == ps.rolling(w).min()).to_numpy()
        ref_z[flat] = np.nan
        assert np.array_equal(np.isnan(z), np.isnan(ref_z))
        assert np.isnan(z[: w - 1]).all()
        ok = ~np.isnan(z)
        assert_allclose(z[ok], ref_z[ok], rtol=1e-7, atol=1e-9)


def test_rolling_correlation_equals_pandas(pair):
    y, x = pair
    for w in (30, 60):
        c = qa.rolling_correlation(y, x, window=w)
        ra = np.log(y).diff()
        rb = np.log(x).diff()
        ref = ra.rolling(w).corr(rb).to_numpy()
        assert np.isnan(c[:w]).all()
        ok = ~np.isnan(c)
        assert ok.sum() > 100
        assert_allclose(c[ok], ref[ok], rtol=1e-9, atol=1e-9)
        assert np.isnan(ref[~ok][w:]).all() or np.allclose(np.nan_to_num(ref[~ok][w:]), 0, atol=1e-6)


def test_adf_and_coint_are_exactly_statsmodels(pair):
    y, x = pair
    h = qa.ols_hedge(y, x)
    s = qa.spread(y, x, beta=h.beta, alpha=h.alpha)
    maxlag = 20
    r = qa.adf(s, maxlag=maxlag)
    stat, p, lag, nobs, crit, _ = adfuller(s, maxlag=maxlag, regression="c", autolag="AIC",
                                           result_object=False)
    assert (r.stat, r.pvalue, r.used_lag, r.nobs) == (stat, p, lag, nobs)
    assert (r.crit_1, r.crit_5, r.crit_10) == (crit["1%"], crit["5%"], crit["10%"])
    assert r.stationary_at_5pct == (p < 0.05)
    c = qa.engle_granger(y, x)
    ref = coint(y.to_numpy(), x.to_numpy())
    assert (c.stat, c.pvalue) == (ref[0], ref[1])
    assert (c.crit_1, c.crit_5, c.crit_10) == tuple(ref[2])


def test_half_life_equals_statsmodels_ols(pair):
    y, x = pair
    h = qa.ols_hedge(y, x)
    s = qa.spread(y, x, beta=h.beta, alpha=h.alpha)
    fit = sm.OLS(np.diff(s), sm.add_constant(s[:-1])).fit()
    lam = fit.params[1]
    expected = math.inf if lam >= 0 else -math.log(2) / lam
    assert_allclose(qa.half_life(s), expected, rtol=RTOL)


def test_hurst_equals_independent_computation(pair):
    y, x = pair
    h = qa.ols_hedge(y, x)
    s = qa.spread(y, x, beta=h.beta, alpha=h.alpha)
    lags = range(2, 101)
    logv = [math.log(pd.Series(s[k:] - s[:-k]).var(ddof=0)) for k in lags]
    slope = np.polyfit([math.log(k) for k in lags], logv, 1)[0]
    assert_allclose(qa.hurst(s, max_lag=100), slope / 2, rtol=RTOL)


def test_hurst_of_known_processes():
    rng = np.random.default_rng(7)
    walk = np.cumsum(rng.normal(size=20_000))
    noise = rng.normal(size=20_000)
    assert 0.45 < qa.hurst(walk) < 0.55  # a random walk: H = 1/2
    assert qa.hurst(noise) < 0.1  # white noise is strongly mean-reverting in this measure


def test_price_stats_equal_pandas(usdm_ticks):
    bars, _ = build_bars(usdm_ticks, ["1s"])
    df = pd.DataFrame([{f: getattr(b, f) for f in ("time", "open", "high", "low", "close",
                                                  "volume", "vwap")}
                       for b in bars if b.symbol == "BTCUSDT"]).set_index("time")
    st = qa.price_stats(df, timeframe_s=1, window=120)
    w = df.iloc[-120:]
    r = np.log(w.close).diff().dropna()
    ticks = [t for t in usdm_ticks if t.symbol == "BTCUSDT" and t.time >= w.index[0]]
    vwap = sum(t.price * t.qty for t in ticks) / sum(t.qty for t in ticks)
    assert st.n == 120
    assert st.last == w.close.iloc[-1] and st.high == w.high.max() and st.low == w.low.min()
    assert_allclose([st.change, st.change_pct, st.mean, st.std_log_return, st.volume, st.vwap],
                    [w.close.iloc[-1] - w.open.iloc[0], (w.close.iloc[-1] / w.open.iloc[0] - 1) * 100,
                     w.close.mean(), r.std(), w.volume.sum(), vwap], rtol=1e-9)
    assert_allclose(st.realised_vol, r.std() * math.sqrt(365 * 86_400), rtol=1e-12)

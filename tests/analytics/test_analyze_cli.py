"""`quantpanel analyze --json`: the key contract, and numbers equal to an independent computation."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.tsa.stattools import adfuller, coint

from quantpanel.pipeline.bars import build_bars

from tests.conftest import ROOT, USDM_TRADES

KEYS = ["n", "beta", "alpha", "r2", "beta_se", "adf_stat", "adf_pvalue", "adf_lag", "coint_stat",
        "coint_pvalue", "half_life", "hurst", "zscore_last", "corr_last"]


def qp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quantpanel", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_analyze_json_matches_statsmodels(tmp_path, usdm_ticks):
    db = tmp_path / "q.db"
    assert qp("import", "--db", str(db), str(USDM_TRADES)).returncode == 0
    proc = qp("analyze", "--db", str(db), "--pair", "ethusdt", "BTCUSDT", "--timeframe", "1s",
              "--window", "30", "--adf-maxlag", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert list(got) == KEYS
    # independent: every 1 s bar of each leg, inner-joined; the last bar counts too: in stored
    # history it is closed, since its end is long before the wall clock (ANALYTICS.md)
    bars, _ = build_bars(usdm_ticks, ["1s"])
    closes = {s: pd.Series({b.time: b.close for b in bars if b.symbol == s}) for s in ("ETHUSDT", "BTCUSDT")}
    df = pd.concat(closes, axis=1, join="inner").sort_index()
    y, x = df["ETHUSDT"].to_numpy(), df["BTCUSDT"].to_numpy()
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    s = y - fit.params[1] * x - fit.params[0]
    adf = adfuller(s, maxlag=5, regression="c", autolag="AIC", result_object=False)
    eg = coint(y, x)
    hl_fit = sm.OLS(np.diff(s), sm.add_constant(s[:-1])).fit()
    ss = pd.Series(s)
    z = (ss - ss.rolling(30).mean()) / ss.rolling(30).std()
    corr = np.log(df["ETHUSDT"]).diff().rolling(30).corr(np.log(df["BTCUSDT"]).diff())
    lags = range(2, 101)
    hurst = np.polyfit(np.log(list(lags)), [math.log(np.var(s[k:] - s[:-k])) for k in lags], 1)[0] / 2
    expected = {
        "n": len(y), "beta": fit.params[1], "alpha": fit.params[0], "r2": fit.rsquared,
        "beta_se": fit.bse[1], "adf_stat": adf[0], "adf_pvalue": adf[1], "adf_lag": adf[2],
        "coint_stat": eg[0], "coint_pvalue": eg[1], "half_life": -math.log(2) / hl_fit.params[1],
        "hurst": hurst, "zscore_last": z.iloc[-1], "corr_last": corr.iloc[-1],
    }
    assert got["n"] == expected["n"] == 344 and got["adf_lag"] == expected["adf_lag"]
    assert (got["coint_stat"], got["coint_pvalue"]) == (expected["coint_stat"], expected["coint_pvalue"])
    # ADF: exactly statsmodels on the reported spread; within 1e-9 of the all-statsmodels chain
    # (whose OLS differs from ours in the last bits, and so the spread)
    exact = adfuller(y - got["beta"] * x - got["alpha"], maxlag=5, regression="c", autolag="AIC",
                     result_object=False)
    assert (got["adf_stat"], got["adf_pvalue"]) == (exact[0], exact[1])
    assert math.isclose(got["adf_stat"], expected["adf_stat"], rel_tol=1e-9)
    assert math.isclose(got["adf_pvalue"], expected["adf_pvalue"], rel_tol=1e-9)
    for k in ("beta", "alpha", "r2", "beta_se", "half_life", "hurst", "zscore_last", "corr_last"):
        assert math.isclose(got[k], expected[k], rel_tol=1e-7), k


def test_analyze_reports_nulls_and_reasons_for_short_data(tmp_path, usdm_ticks):
    db = tmp_path / "q.db"
    assert qp("import", "--db", str(db), str(USDM_TRADES)).returncode == 0
    proc = qp("analyze", "--db", str(db), "--pair", "ETHUSDT", "BTCUSDT", "--timeframe", "1m", "--json")
    got = json.loads(proc.stdout)
    assert got["n"] == 6 and got["hurst"] is None and got["adf_stat"] is None
    assert got["zscore_last"] is None  # fewer bars than the window: NaN -> null
    assert "Hurst exponent (max_lag=100) needs at least 102 observations, got 6" in proc.stderr
    assert "ADF test needs at least 10 observations, got 6" in proc.stderr

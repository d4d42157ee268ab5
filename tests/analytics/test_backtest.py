"""The backtest equals an independent bar-by-bar loop written here from ANALYTICS.md."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import quantpanel.analytics as qa
from quantpanel.analytics.backtest import backtest, sweep
from quantpanel.errors import AnalyticsInputError

from tests.analytics.test_pair_reference import OHLC


def reference(a, b, z, beta, entry, exit, stop, fee_bps, slip_bps, bars_per_year):
    """A literal reading of the spec, one bar at a time, with Python objects."""
    rate = (fee_bps + slip_bps) / 1e4
    n = len(a)
    pos, be, open_trade = 0, None, None
    pnl = [0.0] * n
    trades = []
    for t in range(n):
        if t > 0 and pos != 0:  # held from the close of t-1 to the close of t
            pnl[t] += pos * ((a[t] - a[t - 1]) - be * (b[t] - b[t - 1]))
            open_trade["pnl"] += pos * ((a[t] - a[t - 1]) - be * (b[t] - b[t - 1]))
        zt = z[t]
        if math.isnan(zt):
            continue
        exited = False
        if pos != 0:
            if (pos == -1 and zt <= exit) or (pos == 1 and zt >= -exit) or (stop is not None and abs(zt) > stop):
                cost = rate * (abs(a[t]) + abs(be * b[t]))
                pnl[t] -= cost
                open_trade.update(exit=t, pnl=open_trade["pnl"] - cost)
                trades.append(open_trade)
                pos, open_trade, exited = 0, None, True
        if pos == 0 and not exited and not math.isnan(beta[t]):
            if zt > entry or zt < -entry:
                pos = -1 if zt > entry else 1
                be = beta[t]
                cost = rate * (abs(a[t]) + abs(be * b[t]))
                pnl[t] -= cost
                open_trade = {"entry": t, "exit": None, "side": pos, "beta": be, "pnl": -cost}
    if open_trade is not None:
        trades.append(open_trade)
    equity = np.cumsum(pnl)
    closed = [tr for tr in trades if tr["exit"] is not None]
    dd, peak = 0.0, 0.0
    for e in equity:
        peak = max(peak, e)
        dd = max(dd, peak - e)
    sd = float(np.std(pnl, ddof=1))
    return {
        "pnl": pnl, "trades": trades, "total": float(equity[-1]), "n": len(trades),
        "win": sum(tr["pnl"] > 0 for tr in closed) / len(closed) if closed else math.nan,
        "dd": dd, "sharpe": float(np.mean(pnl)) / sd * math.sqrt(bars_per_year) if sd > 0 else math.nan,
        "fees": None,
    }


def assert_same(r, ref):
    assert [(t.entry_index, t.exit_index, t.side) for t in r.trades] == [
        (t["entry"], t["exit"], t["side"]) for t in ref["trades"]]
    np.testing.assert_allclose([t.pnl for t in r.trades], [t["pnl"] for t in ref["trades"]], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(r.pnl, ref["pnl"], rtol=1e-9, atol=1e-9)
    assert r.n_trades == ref["n"]
    np.testing.assert_allclose([r.total_pnl, r.max_drawdown], [ref["total"], ref["dd"]], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose([r.win_rate, r.sharpe], [ref["win"], ref["sharpe"]], rtol=1e-9, equal_nan=True)


@pytest.fixture(scope="module")
def depeg():
    def closes(sym):
        df = pd.read_csv(OHLC / f"binanceus-{sym}-1m-2023-03-01_2023-03-21.csv.gz", parse_dates=["open_time"])
        return df.set_index("open_time")["close"]
    y, x = qa.align(closes("BTCUSDT"), closes("BTCUSD"))
    return y.to_numpy()[:8000], x.to_numpy()[:8000]


@pytest.mark.parametrize(("entry", "exit", "stop", "fee", "slip"),
                         [(2.0, 0.0, None, 4.0, 0.0), (1.5, 0.5, 3.0, 4.0, 2.0), (1.0, 0.0, None, 0.0, 0.0)])
def test_static_ols_backtest_on_real_data_equals_the_reference_loop(depeg, entry, exit, stop, fee, slip):
    y, x = depeg
    h = qa.ols_hedge(y, x)
    z = qa.rolling_zscore(qa.spread(y, x, beta=h.beta, alpha=h.alpha), window=60)
    beta = np.full(len(y), h.beta)
    r = backtest(y, x, z, h.beta, entry=entry, exit=exit, stop=stop, fee_bps=fee, slippage_bps=slip)
    ref = reference(list(y), list(x), list(z), list(beta), entry, exit, stop, fee, slip, 365 * 1440)
    assert r.n_trades > 10
    assert_same(r, ref)
    assert r.fees == pytest.approx(sum(t.costs for t in r.trades))


def test_kalman_style_beta_is_fixed_at_entry(depeg):
    y, x = depeg
    rng = np.random.default_rng(3)
    beta = 1 + np.cumsum(rng.normal(scale=1e-3, size=len(y)))  # a moving beta_t
    beta[:50] = np.nan  # no entries before the filter has a value
    h = qa.ols_hedge(y, x)
    z = qa.rolling_zscore(qa.spread(y, x, beta=h.beta, alpha=h.alpha), window=30)
    r = backtest(y, x, z, beta, entry=1.5, exit=0.25)
    assert_same(r, reference(list(y), list(x), list(z), list(beta), 1.5, 0.25, None, 4.0, 0.0, 365 * 1440))
    assert all(t.beta == beta[t.entry_index] for t in r.trades)
    assert all(t.entry_index >= 50 for t in r.trades)


@settings(max_examples=200, deadline=None)
@given(z=st.lists(st.one_of(st.floats(-4, 4), st.just(float("nan"))), min_size=2, max_size=60),
       entry=st.sampled_from([0.5, 1.0, 2.0]), exit=st.sampled_from([0.0, 0.3]),
       stop=st.sampled_from([None, 2.5, 3.5]), seed=st.integers(0, 1000))
def test_hypothesis_z_series_match_the_reference(z, entry, exit, stop, seed):
    if stop is not None and stop <= entry:
        stop = None
    rng = np.random.default_rng(seed)
    n = len(z)
    a = 100 + np.cumsum(rng.normal(size=n))
    b = 50 + np.cumsum(rng.normal(size=n))
    beta = np.full(n, 1.7)
    r = backtest(a, b, z, 1.7, entry=entry, exit=exit, stop=stop, fee_bps=4, slippage_bps=1)
    assert_same(r, reference(list(a), list(b), z, list(beta), entry, exit, stop, 4, 1, 365 * 1440))
    # no re-entry on an exit bar
    exits = {t.exit_index for t in r.trades}
    assert not exits & {t.entry_index for t in r.trades}


def test_sweep_cells_equal_single_backtests(depeg):
    y, x = depeg[0][:3000], depeg[1][:3000]
    h = qa.ols_hedge(y, x)
    z = qa.rolling_zscore(qa.spread(y, x, beta=h.beta, alpha=h.alpha), window=60)
    entries, exits = [1.0, 1.5, 2.0, 2.5], [0.0, 0.5, 1.0]
    sw = sweep(y, x, z, h.beta, entries=entries, exits=exits, stop=3.5, fee_bps=4)
    for i, e in enumerate(entries):
        for j, x_ in enumerate(exits):
            r = backtest(y, x, z, h.beta, entry=e, exit=x_, stop=3.5, fee_bps=4)
            assert sw.n_trades[i, j] == r.n_trades
            np.testing.assert_allclose([sw.total_pnl[i, j], sw.max_drawdown[i, j]],
                                       [r.total_pnl, r.max_drawdown], rtol=1e-9, atol=1e-8)
            np.testing.assert_allclose(sw.sharpe[i, j], r.sharpe, rtol=1e-6, equal_nan=True)


def test_bad_parameters_are_named():
    with pytest.raises(AnalyticsInputError, match="entry must be > 0"):
        backtest([1, 2], [1, 2], [0, 0], 1.0, entry=0)
    with pytest.raises(AnalyticsInputError, match=r"stop must be > entry \(2.0\), got 1.5"):
        backtest([1, 2], [1, 2], [0, 0], 1.0, stop=1.5)
    with pytest.raises(AnalyticsInputError, match="differ in length: 2, 2, 3, 2"):
        backtest([1, 2], [1, 2], [0, 0, 0], 1.0)

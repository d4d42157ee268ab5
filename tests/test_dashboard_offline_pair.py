"""Imported OHLC series in the dashboard (issue 13, items 4 and 10), no browser: the Offline tab
loads a bundled real pair in one click, the Pair tab draws a stored pair from every stored bar,
and the Backtest tab backtests it with the annualisation of its timeframe."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from quantpanel.analytics import align, ols_hedge, pair_series
from quantpanel.analytics.backtest import backtest, pair_signal
from quantpanel.config import Config
from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.offline_view import OfflineView
from quantpanel.dashboard.pair_view import PairView
from quantpanel.dashboard.strategy_view import StrategyView
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.store import Store

from tests.conftest import ROOT

OHLC = ROOT / "data" / "ohlc"


@pytest.fixture
def hub(tmp_path) -> Hub:
    db = tmp_path / "q.db"
    Store(db).close()
    cfg = Config.model_validate({"storage": {"db_path": str(db), "bundled_ohlc_dir": str(OHLC)}})
    runtime = Runtime(cfg, source="replay")
    runtime.open(db)  # as start() does: the database this run stores into
    return Hub(runtime, buffer_bars=600)


def _daily(sym: str) -> pd.Series:
    df = pd.read_csv(OHLC / f"{sym}-bybit-1d.csv", parse_dates=["time"])
    return df.set_index(df["time"].astype("datetime64[ns]"))["close"]


async def test_one_click_loads_a_bundled_pair_and_shows_its_analytics(hub):
    opened = []
    offline = OfflineView(hub, open_pair=lambda *p: opened.append(p))
    assert list(offline.bundled)[0].startswith("Bybit daily data")
    await offline.load_bundled()
    assert not offline.error.visible and "Bybit daily data" in offline.ok.object
    assert (offline.leg_a, offline.leg_b) == ("BTCUSDT 1d", "BNBUSDT 1d")
    y, x = align(_daily("BTCUSDT"), _daily("BNBUSDT"))
    assert f"{len(y):,} aligned bars" in offline.pair_summary.object
    assert f"OLS β {ols_hedge(y, x).beta:.4g}" in offline.pair_summary.object
    offline._on_open_pair()
    assert opened == [("BTCUSDT", "BNBUSDT", "1d")]


async def test_a_stored_pair_is_drawn_and_backtested_from_every_stored_bar(hub):
    offline = OfflineView(hub)
    await offline.load_bundled()
    pair = PairView(hub, window=20)
    pair.offer_series(*hub.stored_series())
    assert {"BNBUSDT", "BTCUSDT"} <= set(pair.param.a.objects) and "1d" in pair.param.timeframe.objects
    strategy = StrategyView(hub, pair)
    assert "No backtest yet" in strategy._results_slot.objects[0].object  # a placeholder, not empty axes
    pair.param.update(a="BTCUSDT", b="BNBUSDT", timeframe="1d")
    assert pair.stored
    await pair.load_stored()
    y, x = align(_daily("BTCUSDT"), _daily("BNBUSDT"))
    want = pair_series(y, x, window=20)
    got = pair.buffer.data
    assert len(got) == len(y) > 150 and not pair.error.visible
    np.testing.assert_allclose(got["zscore"].to_numpy(), want["zscore"].to_numpy(), equal_nan=True)
    assert math.isclose(pair.beta_card.value, ols_hedge(y, x).beta, rel_tol=1e-12)
    assert pair.pull() == 0  # nothing live to pull for a stored pair
    await strategy.run_backtest()
    assert not strategy.error.visible, strategy.error.object
    sig = pair_signal(y, x, mode="ols", window=20)
    ref = backtest(y.to_numpy(), x.to_numpy(), sig.z, sig.beta, entry=2.0, exit=0.0, stop=None, fee_bps=4.0,
                   slippage_bps=0.0, bars_per_year=365.0)
    assert strategy.result.n_trades == ref.n_trades and math.isclose(strategy.result.sharpe, ref.sharpe)
    assert strategy._equity_pane in strategy._results_slot.objects


async def test_a_pair_the_database_lacks_says_what_it_holds(hub):
    offline = OfflineView(hub)
    await offline.load_bundled()
    pair = PairView(hub)
    pair.offer_series(*hub.stored_series())
    pair.param.update(a="BTCUSDT", b="BNBUSDT", timeframe="1m")
    await pair.load_stored()
    assert pair.error.visible and "no 1m bars of BTCUSDT" in pair.error.object and "BNBUSDT 1d" in pair.error.object

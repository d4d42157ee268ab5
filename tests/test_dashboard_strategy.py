"""Backtest, sweep, correlation heatmap and scanner panels on a real stored history (no browser).

The views must show exactly what the pure analytics compute over the stored bars: the same
numbers the CLI prints.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import quantpanel.analytics as qa
from quantpanel.analytics.backtest import TRADE_COLUMNS, backtest, pair_signal, sweep
from quantpanel.analytics.correlation import correlation_matrix
from quantpanel.config import Config
from quantpanel.dashboard.correlation_view import CorrelationView
from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.pair_view import PairView
from quantpanel.dashboard.strategy_view import StrategyView
from quantpanel.models import Bar
from quantpanel.pipeline.bars import BarUpdate
from quantpanel.pipeline.history import pair_closes
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.store import Store

from tests.analytics.test_analyze_cli import qp
from tests.conftest import USDM_TRADES


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("dash") / "q.db"
    assert qp("import", "--db", str(path), str(USDM_TRADES)).returncode == 0
    return path


@pytest.fixture
def hub(db) -> Hub:
    cfg = Config.model_validate({"storage": {"db_path": str(db)}, "windows": {"zscore": 30}})
    runtime = Runtime(cfg, source="replay")
    runtime.open(db)  # as start() does: the database this run stores into
    return Hub(runtime, buffer_bars=50)


@pytest.fixture
def views(hub):
    pair = PairView(hub, a="ETHUSDT", b="BTCUSDT", window=30, entry=1.0, exit=0.0)
    return pair, StrategyView(hub, pair)


def reference(db, *, entry: float, exit: float, mode: str = "ols", window: int = 30):
    with Store(db, readonly=True) as store:
        y, x = pair_closes(store, "ETHUSDT", "BTCUSDT", "1s", None, None)
    sig = pair_signal(y, x, mode=mode, window=window)
    return y, x, sig


async def test_backtest_panel_shows_the_stored_history_backtest_and_exports_its_trades(db, views):
    pair, view = views
    await view.run_backtest()
    assert not view.error.visible, view.error.object
    y, x, sig = reference(db, entry=1.0, exit=0.0)
    ref = backtest(y, x, sig.z, sig.beta, entry=1.0, exit=0.0, fee_bps=4.0, bars_per_year=365 * 86_400)
    r = view.result
    assert len(y) > 300  # every stored bar, not the 50 buffered ones
    assert r.n_trades == ref.n_trades > 0 and r.total_pnl == pytest.approx(ref.total_pnl, abs=1e-12)
    assert view.cards["n_trades"].value == ref.n_trades
    assert view.cards["total_pnl"].value == pytest.approx(ref.total_pnl, abs=1e-12)
    assert view.cards["sharpe"].value == pytest.approx(ref.sharpe)
    eq = view.equity.data
    assert len(eq) == len(y) and eq["equity"].iloc[-1] == pytest.approx(ref.total_pnl, abs=1e-12)
    assert (eq["drawdown"] <= 0).all() and -eq["drawdown"].min() == pytest.approx(ref.max_drawdown)
    assert len(view.trades_table.value) == ref.n_trades
    assert [(b.disabled, b.filename) for b in view.downloads] == [
        (False, "trades-ETHUSDT-BTCUSDT-1s-ols.csv"), (False, "trades-ETHUSDT-BTCUSDT-1s-ols.parquet")]
    csv = pd.read_csv(view.downloads[0].callback())
    assert pd.read_parquet(view.downloads[1].callback()).equals(view._trades.reset_index(drop=True))
    assert tuple(csv.columns) == TRADE_COLUMNS and len(csv) == ref.n_trades
    assert csv["pnl"].to_numpy() == pytest.approx([t.pnl for t in ref.trades], abs=1e-12)
    assert csv["entry_time"].iloc[0] == y.index[ref.trades[0].entry_index].strftime("%Y-%m-%dT%H:%M:%SZ")

    # the Kalman signal is a different strategy on the same bars
    view.beta_mode = "kalman"
    await view.run_backtest()
    assert view.run.beta_mode == "kalman" and view.downloads[0].filename.endswith("-kalman.csv")
    _, _, ks = reference(db, entry=1.0, exit=0.0, mode="kalman")
    kref = backtest(y, x, ks.z, ks.beta, entry=1.0, exit=0.0, fee_bps=4.0, bars_per_year=365 * 86_400)
    assert view.result.n_trades == kref.n_trades and view.result.total_pnl == pytest.approx(kref.total_pnl)


async def test_sweep_heatmap_and_clicking_a_cell_loads_its_thresholds(db, views):
    pair, view = views
    view.entry_grid, view.exit_grid = "0.5:2:0.5", "0:0.5:0.25"
    await view.run_sweep()
    assert not view.error.visible, view.error.object
    grid = view.grid.data
    assert len(grid) == 4 * 3 and set(grid["entry"]) == {0.5, 1.0, 1.5, 2.0}
    y, x, sig = reference(db, entry=1.0, exit=0.0)
    ref = sweep(y, x, sig.z, sig.beta, entries=[0.5, 1, 1.5, 2], exits=[0, 0.25, 0.5],
                bars_per_year=365 * 86_400)
    cell = grid[(grid.entry == 1.5) & (grid.exit == 0.25)].iloc[0]
    assert cell.total_pnl == pytest.approx(ref.total_pnl[2, 1]) and cell.n_trades == ref.n_trades[2, 1]

    view.tap.event(x=0.3, y=1.4)  # a click near the (exit 0.25, entry 1.5) cell
    assert (pair.entry, pair.exit) == (1.5, 0.25)
    await view.run_backtest()  # what the click scheduled
    assert view.result.total_pnl == pytest.approx(ref.total_pnl[2, 1])


async def test_bad_grid_and_same_legs_are_reported_not_raised(views):
    pair, view = views
    view.entry_grid = "3:1:0.5"
    await view.run_sweep()
    assert view.error.visible and "stop >= start" in view.error.object
    pair.b = "ETHUSDT"
    await view.run_backtest()
    assert "two different symbols" in view.error.object
    assert not view.run_button.disabled and not view.progress.visible


def bars(sym: str, closes: list[float], t0: int = 0) -> tuple[Bar, ...]:
    return tuple(Bar(sym, "1s", (t0 + i) * 1000, c, c, c, c, 1.0, 1, c, 0.5, True) for i, c in enumerate(closes))


def test_correlation_heatmap_recomputes_only_when_a_bar_closes(hub):
    selected = []
    view = CorrelationView(hub, lambda a, b: selected.append((a, b)), window=10)
    rng = np.random.default_rng(7)
    a = list(100 * np.exp(np.cumsum(rng.normal(0, 1e-3, 30))))
    b = list(50 * np.exp(np.cumsum(rng.normal(0, 1e-3, 30))))
    assert not view.pull() and "waiting for bars" in view.heat_note.object
    hub.apply(BarUpdate(bars("BTCUSDT", a) + bars("ETHUSDT", b), ()))
    assert view.pull()
    closes = pd.DataFrame({"BTCUSDT": a, "ETHUSDT": b}, index=pd.to_datetime(np.arange(30) * 1000, unit="ms"))
    expected = correlation_matrix(closes, window=10)
    pd.testing.assert_frame_equal(view.matrix, expected)
    heat = view.heat.data
    assert len(heat) == 4 and heat.loc[(heat.a == "BTCUSDT") & (heat.b == "ETHUSDT"), "corr"].item() == \
        pytest.approx(expected.loc["BTCUSDT", "ETHUSDT"])
    assert not view.pull()  # nothing closed: no recompute, no push
    hub.apply(BarUpdate(bars("BTCUSDT", [a[-1] * 1.01], 30) + bars("ETHUSDT", [b[-1] * 0.99], 30), ()))
    assert view.pull()
    assert view.matrix.loc["BTCUSDT", "ETHUSDT"] != expected.loc["BTCUSDT", "ETHUSDT"]


async def test_scanner_lists_pairs_with_progress_and_a_row_click_selects_the_pair(db, hub):
    selected = []
    view = CorrelationView(hub, lambda a, b: selected.append((a, b)), lookback=200)
    await view.run_scan()
    table = view.table.value
    assert len(table) == 1 and (table.iloc[0]["leg A"], table.iloc[0]["leg B"]) == ("BTCUSDT", "ETHUSDT")
    with Store(db, readonly=True) as store:
        y, x = pair_closes(store, "BTCUSDT", "ETHUSDT", "1s", None, None)
    assert table.iloc[0]["Engle–Granger p"] == pytest.approx(qa.engle_granger(y[-200:], x[-200:]).pvalue)
    assert view._done == (1, 1) and not view.progress.visible
    view._on_row(SimpleNamespace(row=0, column="leg A", value="BTCUSDT"))
    assert selected == [("BTCUSDT", "ETHUSDT")]
    assert math.isfinite(table.iloc[0]["corr (log ret)"])

"""`quantpanel backtest` and `quantpanel sweep`: the JSON contract and the numbers behind it."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import quantpanel.analytics as qa
from quantpanel.analytics.backtest import backtest
from quantpanel.pipeline.history import pair_closes
from quantpanel.storage.store import Store

from tests.analytics.test_analyze_cli import qp
from tests.conftest import USDM_TRADES

KEYS = ["total_pnl", "n_trades", "win_rate", "avg_trade", "max_drawdown", "sharpe", "fees"]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("bt") / "q.db"
    assert qp("import", "--db", str(path), str(USDM_TRADES)).returncode == 0
    return path


def test_backtest_json_and_trades_csv(db, tmp_path):
    trades = tmp_path / "trades.csv"
    proc = qp("backtest", "--db", str(db), "--pair", "ETHUSDT", "BTCUSDT", "--timeframe", "1s",
              "--window", "30", "--entry", "1.5", "--exit", "0.25", "--stop", "4", "--fee-bps", "2",
              "--slippage-bps", "1", "--json", "--trades-csv", str(trades))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert list(got)[:7] == KEYS
    assert (got["entry"], got["exit"], got["stop"], got["fee_bps"], got["slippage_bps"], got["beta_mode"]) == (
        1.5, 0.25, 4.0, 2.0, 1.0, "ols")
    with Store(db) as store:
        y, x = pair_closes(store, "ETHUSDT", "BTCUSDT", "1s", None, None)
    h = qa.ols_hedge(y, x)
    z = qa.rolling_zscore(qa.spread(y, x, beta=h.beta, alpha=h.alpha), window=30)
    r = backtest(y, x, z, h.beta, entry=1.5, exit=0.25, stop=4, fee_bps=2, slippage_bps=1,
                 bars_per_year=365 * 86_400)
    assert got["n_trades"] == r.n_trades > 0
    for k in ("total_pnl", "max_drawdown", "sharpe", "fees", "avg_trade"):
        assert math.isclose(got[k], getattr(r, k), rel_tol=1e-12), k
    rows = list(csv.DictReader(trades.open()))
    assert len(rows) == r.n_trades
    assert [float(x["pnl"]) for x in rows] == [t.pnl for t in r.trades]
    assert {x["side"] for x in rows} <= {"long", "short"}
    assert rows[0]["entry_time"].startswith("2024-08-08T23:5")


def test_sweep_json_grid(db):
    proc = qp("sweep", "--db", str(db), "--pair", "ETHUSDT", "BTCUSDT", "--timeframe", "1s",
              "--window", "30", "--entry-grid", "1:2:0.5", "--exit-grid", "0:0.5:0.25", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["entries"] == [1.0, 1.5, 2.0] and got["exits"] == [0.0, 0.25, 0.5]
    pnl = np.array(got["total_pnl"])
    assert pnl.shape == (3, 3)
    i, j = np.unravel_index(pnl.argmax(), pnl.shape)
    assert got["best"] == {"entry": got["entries"][i], "exit": got["exits"][j], "total_pnl": pnl[i, j]}
    single = json.loads(qp("backtest", "--db", str(db), "--pair", "ETHUSDT", "BTCUSDT", "--timeframe", "1s",
                           "--window", "30", "--entry", "1.5", "--exit", "0.25", "--json").stdout)
    assert math.isclose(pnl[1, 1], single["total_pnl"], rel_tol=1e-9)
    assert got["n_trades"][1][1] == single["n_trades"]


def test_bad_grid_is_named(db):
    proc = qp("sweep", "--db", str(db), "--pair", "ETHUSDT", "BTCUSDT", "--entry-grid", "3:1:0.5")
    assert proc.returncode == 2 and "need step > 0 and stop >= start" in proc.stderr


def test_backtest_with_kalman_beta_and_z(db, tmp_path):
    # On raw BTC-scale prices the spec's default delta (1e-4) makes Q >= x^2 * Vw ~ 4e5, so the
    # Kalman z never leaves +-0.05 here: a small delta gives a z-score that trades.
    cfg = tmp_path / "config.yaml"
    cfg.write_text("kalman:\n  delta: 1.0e-12\n  ve: 0.1\n")
    proc = qp("--config", str(cfg), "backtest", "--db", str(db), "--pair", "ETHUSDT", "BTCUSDT",
              "--timeframe", "1s", "--beta", "kalman", "--entry", "1.5", "--exit", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    with Store(db) as store:
        y, x = pair_closes(store, "ETHUSDT", "BTCUSDT", "1s", None, None)
    k = qa.kalman_hedge(y, x, delta=1e-12, ve=0.1)
    r = backtest(y, x, k.zscore, k.beta, entry=1.5, exit=0.0, bars_per_year=365 * 86_400)
    assert got["beta_mode"] == "kalman" and got["n_trades"] == r.n_trades > 0
    assert math.isclose(got["total_pnl"], r.total_pnl, rel_tol=1e-12)

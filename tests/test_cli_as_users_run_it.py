"""The CLI as a new user runs it: in a copy of the repository with its shipped ``config.yaml``,
flags overriding it, options before or after the command (issue 13, items 1-5)."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quantpanel.analytics import align
from quantpanel.analytics.backtest import backtest, pair_signal

from tests.conftest import ROOT, USDM_TRADES

pytestmark = pytest.mark.timeout(240)
OHLC = ROOT / "data" / "ohlc"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the repository as a user has it: the shipped config.yaml and data/ (no DB yet)."""
    dst = tmp_path_factory.mktemp("repo")
    shutil.copy(ROOT / "config.yaml", dst / "config.yaml")
    shutil.copytree(ROOT / "data", dst / "data", ignore=shutil.ignore_patterns("*.db", "*.db-*"))
    return dst


def qp(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quantpanel", *args], capture_output=True, text=True,
                          cwd=repo, timeout=timeout)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def bar_times(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [row["time"] for row in csv.DictReader(io.StringIO(proc.stdout))]


@pytest.fixture(scope="module")
def imported(repo: Path) -> Path:
    """The shipped config's database after importing the bundled trades and two Bybit daily files."""
    ok(qp(repo, "import", str(USDM_TRADES)))
    ok(qp(repo, "import", str(OHLC / "BTCUSDT-bybit-1d.csv"), str(OHLC / "BNBUSDT-bybit-1d.csv")))
    return repo


# -- item 1: a flag override never turns a valid config into a failure ----------------------------
def test_record_other_symbols_with_the_shipped_config_marks_its_rule_inactive(repo):
    ex = subprocess.Popen([sys.executable, "-m", "quantpanel", "exchange", "--data", str(USDM_TRADES),
                           "--speed", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=repo)
    try:
        url = ex.stdout.readline().split("listening on ")[1].split()[0]
        proc = qp(repo, "record", "--symbols", "SOLUSDT,BNBUSDT", "--ws-url", url,
                  "--rest-url", url.replace("ws://", "http://").split("/stream")[0],
                  "--public-ws-url", url.replace("/stream", "/public/stream"), "--spot-symbols", "",
                  "--db", str(repo / "data" / "sol.db"), "--duration", "2")
    finally:
        ex.terminate()
        ex.wait(10)
    ok(proc)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    [rule] = summary["alert_rules_inactive"]
    assert rule["name"] == "z-score BTCUSDT/ETHUSDT outside ±2"
    assert "BTCUSDT, ETHUSDT not ingested" in rule["reason"]
    assert "is inactive" in proc.stderr and "BTCUSDT, ETHUSDT not ingested" in proc.stderr


def test_a_config_error_is_one_line_per_problem_never_a_dump(repo, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((repo / "config.yaml").read_text()
                   + "\ndashboard:\n  default_timeframe: 2h\n".replace("dashboard:", "dashboard_:"))
    proc = qp(repo, "bars", "--symbol", "BTCUSDT", "--config", str(bad))
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("quantpanel bars: error: invalid configuration: ") and "dashboard_: unknown key" in line
    assert "(got a mapping)" in line and "BTCUSDT" not in line  # the section is not printed
    two = tmp_path / "two.yaml"
    two.write_text("server:\n  port: 70000\nfeed:\n  batch_max_ticks: 0\n")
    lines = qp(repo, "bars", "--symbol", "BTCUSDT", "--config", str(two)).stderr.strip().splitlines()
    assert len(lines) == 3 and lines[0].endswith("invalid configuration:")  # then one line per problem
    assert "feed.batch_max_ticks" in lines[1] and "(got 0)" in lines[1] and "server.port" in lines[2]
    bad_tf = tmp_path / "tf.yaml"
    bad_tf.write_text("timeframes: [1s]\ndashboard:\n  default_timeframe: 5m\n")
    [line] = qp(repo, "bars", "--symbol", "BTCUSDT", "--config", str(bad_tf)).stderr.strip().splitlines()
    assert line.endswith("dashboard.default_timeframe: '5m' is not in timeframes ['1s']")


# -- item 2: --config and -v before or after the command --------------------------------------------
def test_global_options_are_accepted_after_the_command_too(imported, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(f"storage:\n  db_path: {tmp_path / 'empty.db'}\n")
    before = qp(imported, "--config", str(other), "bars", "--symbol", "BTCUSDT")
    after = qp(imported, "bars", "--symbol", "BTCUSDT", "--config", str(other))
    # the same meaning both ways: the other config's (missing) database, named in one line
    assert before.returncode == after.returncode == 2
    assert before.stderr == after.stderr and "empty.db: no such database" in after.stderr
    verbose = ok(qp(imported, "bars", "--symbol", "BTCUSDT", "--timeframe", "1m", "-v"))
    assert len(bar_times(verbose)) == 6
    assert ok(qp(imported, "-v", "bars", "--symbol", "BTCUSDT", "--timeframe", "1m")).stdout == verbose.stdout


# -- item 3: the last bar of stored history is closed --------------------------------------------
@pytest.mark.parametrize("tf", ["1s", "1m", "5m"])
def test_analyze_backtest_sweep_count_the_bars_that_bars_prints(imported, tf):
    eth = bar_times(ok(qp(imported, "bars", "--symbol", "ETHUSDT", "--timeframe", tf)))
    btc = bar_times(ok(qp(imported, "bars", "--symbol", "BTCUSDT", "--timeframe", tf)))
    both = len(set(eth) & set(btc))
    assert both == min(len(eth), len(btc)) > 0
    pair = ("--pair", "ETHUSDT", "BTCUSDT", "--timeframe", tf, "--window", "2", "--json")
    assert json.loads(ok(qp(imported, "analyze", *pair, "--adf-maxlag", "1")).stdout)["n"] == both
    for cmd in ("backtest", "sweep"):
        proc = qp(imported, cmd, *pair)
        if both >= 3:
            assert json.loads(ok(proc).stdout)["bars"] == both
        else:  # 5m: the recording has two bars, too few for an OLS fit; the message counts them
            assert proc.returncode == 2 and f"needs at least 3 observations, got {both}" in proc.stderr


# -- item 4: imported OHLC series are bars like any other ------------------------------------------
def _daily(sym: str) -> pd.Series:
    df = pd.read_csv(OHLC / f"{sym}-bybit-1d.csv", parse_dates=["time"])
    return df.set_index(df["time"].astype("datetime64[ns]"))["close"]


def test_imported_daily_series_are_analysed_and_backtested_by_the_cli(imported):
    pair = ("--pair", "BTCUSDT", "BNBUSDT", "--timeframe", "1d", "--json")
    y, x = align(_daily("BTCUSDT"), _daily("BNBUSDT"))
    assert len(y) > 150
    got = json.loads(ok(qp(imported, "analyze", *pair, "--window", "20")).stdout)
    assert got["n"] == len(y) and got["adf_stat"] is not None and got["beta"] is not None
    bt = json.loads(ok(qp(imported, "backtest", *pair, "--window", "20", "--entry", "1.5")).stdout)
    sig = pair_signal(y, x, mode="ols", window=20, lookback=None, delta=1e-4, ve=1e-3)
    ref = backtest(y.to_numpy(), x.to_numpy(), sig.z, sig.beta, entry=1.5, exit=0.0, stop=None,
                   fee_bps=4.0, slippage_bps=0.0, bars_per_year=365.0)  # daily bars: 365 a year
    assert bt["bars"] == len(y) and bt["n_trades"] == ref.n_trades > 0
    assert math.isclose(bt["sharpe"], ref.sharpe, rel_tol=1e-12)
    assert math.isclose(bt["total_pnl"], ref.total_pnl, rel_tol=1e-12)
    sw = json.loads(ok(qp(imported, "sweep", *pair)).stdout)
    assert sw["bars"] == len(y) and len(sw["total_pnl"]) == len(sw["entries"])


def test_bars_of_an_imported_series_leave_what_the_file_lacks_empty(imported):
    rows = list(csv.DictReader(io.StringIO(ok(qp(imported, "bars", "--symbol", "BNBUSDT",
                                                  "--timeframe", "1d")).stdout)))
    src = pd.read_csv(OHLC / "BNBUSDT-bybit-1d.csv")
    assert len(rows) == len(src) and rows[0]["time"] == "2023-03-15T00:00:00Z"
    assert float(rows[0]["close"]) == src["close"][0] and float(rows[0]["volume"]) == src["volume"][0]
    assert rows[0]["trades"] == rows[0]["vwap"] == rows[0]["buy_volume"] == ""  # NaN, not invented


# -- item 5: an unknown symbol or timeframe is an error naming it ------------------------------------
def test_an_unknown_symbol_or_timeframe_is_an_error_listing_what_is_stored(imported):
    proc = qp(imported, "analyze", "--pair", "BTCUSDT", "NOPEUSDT", "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.strip().splitlines()
    assert "no stored bars of NOPEUSDT" in line
    assert "BTCUSDT (trades: 1s" in line and "ETHUSDT (trades:" in line and "BNBUSDT 1d" in line
    for cmd in ("backtest", "sweep"):
        assert qp(imported, cmd, "--pair", "NOPEUSDT", "ETHUSDT").returncode == 2
    proc = qp(imported, "bars", "--symbol", "BNBUSDT", "--timeframe", "1m")
    assert proc.returncode == 2 and "no 1m bars of BNBUSDT" in proc.stderr
    proc = qp(imported, "analyze", "--pair", "ETHUSDT", "ethusdt")
    assert proc.returncode == 2 and "two different symbols" in proc.stderr
    proc = qp(imported, "analyze", "--pair", "ETHUSDT", "BTCUSDT", "--timeframe", "2h")
    assert proc.returncode == 2 and "'2h' is not a timeframe" in proc.stderr


def test_longer_timeframes_of_the_trades_are_served_too(imported):
    """15m/1h/4h/1d are built from the trades (the recording crosses midnight: two bars each)."""
    for tf in ("15m", "1h", "4h", "1d"):
        rows = list(csv.DictReader(io.StringIO(ok(qp(imported, "bars", "--symbol", "ETHUSDT", "--timeframe", tf)).stdout)))
        assert [r["time"][:10] for r in rows] == ["2024-08-08", "2024-08-09"], tf
        assert np.isclose(sum(float(r["volume"]) for r in rows),
                          sum(float(r["volume"]) for r in csv.DictReader(io.StringIO(
                              qp(imported, "bars", "--symbol", "ETHUSDT", "--timeframe", "1m").stdout))))

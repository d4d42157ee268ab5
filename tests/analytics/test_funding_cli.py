"""`quantpanel backtest --funding / --slippage-model` on a stored pair: real trades and real quotes
of the bundled recording, with funding events that are SIMULATED (no real funding history of
these minutes is in reach): every 60 s of the recording, rates of both signs, some with a mark.

The expected figures are recomputed here event by event from the stored rows and the backtest's
own position path, not through the per-bar helper the CLI uses."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pandas as pd
import pytest

import quantpanel.analytics as qa
from quantpanel.analytics.backtest import backtest
from quantpanel.feeds.binance_market import to_quote
from quantpanel.feeds.recording import load_quotes
from quantpanel.models import FundingEvent
from quantpanel.pipeline.history import pair_closes
from quantpanel.pipeline.quote_bars import QuoteBarBuilder
from quantpanel.storage.store import Store

from tests.analytics.test_analyze_cli import qp
from tests.conftest import DATA, USDM_TRADES

QUOTES = DATA / "binance-usdm-btcusdt-ethusdt-2024-08-08.bookticker.gz"
ARGS = ["--pair", "ETHUSDT", "BTCUSDT", "--timeframe", "1s", "--window", "30", "--entry", "1.0",
        "--exit", "0.0", "--json"]


def _simulated_funding(store: Store, symbol: str, sign: float, with_mark: bool) -> list[FundingEvent]:
    first, last = store.tick_spans()[0][1], store.max_time(symbol)
    minute = 60_000
    events = []
    for k, f in enumerate(range((first // minute + 1) * minute, last, minute)):
        rate = sign * (1e-4 + 2e-5 * k) * (-1 if k % 3 == 2 else 1)  # simulated
        mark = float(store.read_ticks(symbol, f - 5_000, f)[-1].price) * 1.0001 if with_mark and k % 2 else math.nan
        events.append(FundingEvent(symbol, f + (7 if k == 1 else 0), rate, mark))  # one off the bar boundary
    return events


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("funding") / "q.db"
    assert qp("import", "--db", str(path), str(USDM_TRADES)).returncode == 0
    builder = QuoteBarBuilder(["1s", "1m"])
    bars = builder.add(to_quote(q) for q in load_quotes(QUOTES)) + builder.close_until(2**62)
    with Store(path) as store:
        store.upsert_quote_bars(bars)
        for sym, sign, with_mark in (("ETHUSDT", 1.0, True), ("BTCUSDT", -1.0, False)):
            assert store.insert_funding(_simulated_funding(store, sym, sign, with_mark)) >= 4
    return path


def _run(db, *extra: str) -> dict:
    proc = qp("backtest", "--db", str(db), *ARGS, *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _reference(db):
    with Store(db) as store:
        y, x = pair_closes(store, "ETHUSDT", "BTCUSDT", "1s", None, None)
        events = {s: store.read_funding(s) for s in ("ETHUSDT", "BTCUSDT")}
        quotes = {s: store.read_quote_bars(s, "1s") for s in ("ETHUSDT", "BTCUSDT")}
    h = qa.ols_hedge(y, x)
    z = qa.rolling_zscore(qa.spread(y, x, beta=h.beta, alpha=h.alpha), window=30)
    plain = backtest(y, x, z, h.beta, entry=1.0, exit=0.0, bars_per_year=365 * 86_400)
    return y, x, h.beta, plain, events, quotes


def test_funding_is_charged_event_by_event_to_the_position_held(db):
    got = _run(db)
    y, x, beta, plain, events, _ = _reference(db)
    assert got["funding_included"] is True and got["n_trades"] == plain.n_trades > 0
    times = y.index.as_unit("ms").asi8
    expected, charged = 0.0, 0
    for leg, closes, units in (("ETHUSDT", y, 1.0), ("BTCUSDT", x, -beta)):
        for e in events[leg]:
            t = int(np.searchsorted(times, e.time, side="right")) - 1
            if t < 1 or e.time >= times[t] + 1000:
                continue  # before the second bar: no position held yet; or in no bar
            held = plain.position[t - 1]  # decided at the close of the bar before
            if not held:
                continue
            price = e.mark if math.isfinite(e.mark) else float(closes.iloc[t - 1])  # P(F)
            expected += -held * units * price * e.rate
            charged += 1
    assert charged >= 2, "the simulated events must fall inside held positions"
    assert math.isclose(got["funding"], expected, rel_tol=1e-9, abs_tol=1e-12)
    assert got["total_pnl"] == pytest.approx(plain.total_pnl + expected, rel=1e-9, abs=1e-9)
    assert math.isclose(sum(got["trades_funding"]), expected, rel_tol=1e-9, abs_tol=1e-12)


def test_funding_off_and_a_leg_without_events_leave_it_out_and_say_why(db, tmp_path):
    off = _run(db, "--funding", "off")
    assert off["funding"] == 0 and off["funding_included"] is False
    assert off["funding_off_because"] == "--funding off"
    one_leg = tmp_path / "one.db"
    one_leg.write_bytes(db.read_bytes())
    with sqlite3.connect(one_leg) as conn:
        conn.execute("DELETE FROM funding WHERE symbol = 'BTCUSDT'")
    got = _run(one_leg)
    assert got["funding_included"] is False and "BTCUSDT" in got["funding_off_because"]
    assert got["total_pnl"] == pytest.approx(off["total_pnl"], rel=1e-12)


def test_half_spread_charges_half_the_quoted_spread_of_each_fill_bar(db):
    got = _run(db, "--funding", "off", "--slippage-model", "half_spread", "--slippage-bps", "1")
    y, x, beta, plain, _, quotes = _reference(db)
    assert got["slippage_model"] == "half_spread" and got["n_trades"] == plain.n_trades
    times = y.index.as_unit("ms").asi8

    def spread_at(leg: str, t: int) -> float:
        before = [q for q in quotes[leg] if q.time <= times[t]]  # the last quote at or before its close
        return before[-1].ask - before[-1].bid if before else math.nan

    expected, fallbacks = 0.0, 0
    for tr in plain.trades:
        for t in (tr.entry_index, tr.exit_index):
            if t is None:
                continue
            for leg, closes, qty in (("ETHUSDT", y, 1.0), ("BTCUSDT", x, abs(tr.beta))):
                s = spread_at(leg, t)
                if math.isfinite(s):
                    expected += qty * s / 2
                else:
                    fallbacks += 1
                    expected += 1e-4 * qty * abs(float(closes.iloc[t]))
    assert got["quote_fallbacks"] == fallbacks
    assert math.isclose(got["slippage"], expected, rel_tol=1e-9)
    assert got["quoted_bars"]["ETHUSDT"] > 0.9 * len(y)


def test_sweep_reports_funding_per_cell(db):
    proc = qp("sweep", "--db", str(db), "--pair", "ETHUSDT", "BTCUSDT", "--timeframe", "1s", "--window", "30",
              "--entry-grid", "1:1.5:0.5", "--exit-grid", "0:0:1", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    cell = _run(db)
    assert got["funding_included"] is True
    assert math.isclose(got["funding"][0][0], cell["funding"], rel_tol=1e-9, abs_tol=1e-12)
    assert pd.notna(got["total_pnl"][0][0])

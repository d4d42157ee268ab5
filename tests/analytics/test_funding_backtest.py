"""Funding and quoted-spread costs in the backtest equal a plain bar-by-bar loop written here from
docs/ANALYTICS.md ("Mean-reversion backtest", "Perpetual-futures funding", "Quoted spread").

The prices, funding events and quotes are SIMULATED with a seeded numpy RNG (a BTC-like leg A
hedged with an ETH-like leg B, 1m bars with inner-join gaps, funding every 30 minutes so that many
events fall inside held positions), not recorded data.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import quantpanel.analytics as qa
from quantpanel.analytics.backtest import TRADE_COLUMNS, backtest, sweep, trades_frame
from quantpanel.analytics.funding import basis_bps, funding_per_bar, pair_carry, quoted_spread_bps
from quantpanel.errors import AnalyticsInputError

TF = 60_000
NAN = float("nan")


# -- the reference: a literal reading of the spec, one bar at a time, Python floats only ----------
def price_at(F, mark, times, closes, tf):
    """P(F): the mark when known, else the close of the last bar ending at or before F (None: none)."""
    if not math.isnan(mark):
        return mark
    for j in range(len(times) - 1, -1, -1):
        if times[j] + tf <= F:
            return closes[j]
    return None


def count_events(times, closes, tf, events):
    charged = skipped = unmatched = 0
    for F, _r, mark in events:
        if not any(T <= F < T + tf for T in times):
            unmatched += 1
        elif price_at(F, mark, times, closes, tf) is None:
            skipped += 1
        else:
            charged += 1
    return charged, skipped, unmatched


def reference(times, a, b, z, beta, *, tf, events_a, events_b, entry, exit, stop=None, fee_bps=4.0,
              slip_bps=0.0, model="fixed", spread_a=None, spread_b=None, bars_per_year=365 * 1440):
    n = len(a)
    state = {"fallbacks": 0}

    def leg_cost(qty, price, sp):
        fee = fee_bps / 1e4 * abs(qty * price)
        if model == "fixed":
            return fee + slip_bps / 1e4 * abs(qty * price), slip_bps / 1e4 * abs(qty * price)
        if math.isnan(sp):
            state["fallbacks"] += 1
            return fee + slip_bps / 1e4 * abs(qty * price), slip_bps / 1e4 * abs(qty * price)
        return fee + abs(qty) * sp / 2, abs(qty) * sp / 2

    def trade_cost(t, be):
        ca, sa = leg_cost(1.0, a[t], spread_a[t] if spread_a is not None else NAN)
        cb, sb = leg_cost(be, b[t], spread_b[t] if spread_b is not None else NAN)
        return ca + cb, sa + sb

    pos, be, tr = 0, None, None
    pnl, fund = [0.0] * n, [0.0] * n
    trades, charged_log = [], []
    slippage = 0.0
    for t in range(n):
        if pos != 0:  # the position decided at the close of t-1 is held during bar t
            q_a, q_b = pos * 1.0, -pos * be
            move = q_a * (a[t] - a[t - 1]) + q_b * (b[t] - b[t - 1])
            pnl[t] += move
            tr["pnl"] += move
            for q, events, closes in ((q_a, events_a, a), (q_b, events_b, b)):
                for F, r, mark in events:
                    if times[t] <= F < times[t] + tf:
                        P = price_at(F, mark, times, closes, tf)
                        if P is None:
                            continue
                        received = -q * P * r
                        pnl[t] += received
                        fund[t] += received
                        tr["pnl"] += received
                        tr["funding"] += received
                        charged_log.append({"F": F, "r": r, "mark": mark, "side": pos, "boundary": times[t] == F})
        zt = z[t]
        if math.isnan(zt):
            continue
        exited = False
        if pos != 0:
            if (pos == -1 and zt <= exit) or (pos == 1 and zt >= -exit) or (stop is not None and abs(zt) > stop):
                cost, slip = trade_cost(t, be)
                pnl[t] -= cost
                slippage += slip
                tr["pnl"] -= cost
                tr["exit"] = t
                trades.append(tr)
                pos, tr, exited = 0, None, True
        if pos == 0 and not exited and not math.isnan(beta[t]) and (zt > entry or zt < -entry):
            pos = -1 if zt > entry else 1
            be = beta[t]
            cost, slip = trade_cost(t, be)
            pnl[t] -= cost
            slippage += slip
            tr = {"entry": t, "exit": None, "side": pos, "beta": be, "pnl": -cost, "funding": 0.0}
    if tr is not None:
        trades.append(tr)
    equity = list(np.cumsum(pnl))
    sd = float(np.std(pnl, ddof=1))
    return {"pnl": pnl, "funding": fund, "equity": equity, "trades": trades, "charged": charged_log,
            "slippage": slippage, "fallbacks": state["fallbacks"],
            "sharpe": float(np.mean(pnl)) / sd * math.sqrt(bars_per_year) if sd > 0 else math.nan}


def assert_same(r, ref):
    assert [(t.entry_index, t.exit_index, t.side) for t in r.trades] == [
        (t["entry"], t["exit"], t["side"]) for t in ref["trades"]]
    close = {"rtol": 1e-9, "atol": 1e-9}
    np.testing.assert_allclose([t.pnl for t in r.trades], [t["pnl"] for t in ref["trades"]], **close)
    np.testing.assert_allclose([t.funding for t in r.trades], [t["funding"] for t in ref["trades"]], **close)
    np.testing.assert_allclose(r.funding, sum(ref["funding"]), **close)
    np.testing.assert_allclose(r.funding_pnl, ref["funding"], **close)
    np.testing.assert_allclose(r.equity, ref["equity"], **close)
    np.testing.assert_allclose(r.pnl, ref["pnl"], **close)
    np.testing.assert_allclose(r.total_pnl, ref["equity"][-1], **close)
    np.testing.assert_allclose(r.sharpe, ref["sharpe"], rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(r.slippage, ref["slippage"], **close)
    assert r.quote_fallbacks == ref["fallbacks"]
    assert r.total_pnl == pytest.approx(sum(t.pnl for t in r.trades), rel=1e-9, abs=1e-9)


# -- simulated market -------------------------------------------------------------------------
def simulated_pair(seed=11, n=4000):
    """Simulated 1m closes of a BTC-like A = 20·B + 500 + OU noise and an ETH-like B, with gaps."""
    rng = np.random.default_rng(seed)
    start = 1_709_251_200_000  # 2024-03-01 00:00 UTC
    times = start + TF * np.arange(n + 30)
    keep = np.ones(n + 30, dtype=bool)
    for g in (895, 1795, 2995):  # three 10-bar holes (as an inner join leaves them) over funding times
        keep[g:g + 10] = False
    times = times[keep][:n]
    x = 3000 * np.exp(np.cumsum(rng.normal(scale=5e-4, size=n)))
    ou = np.zeros(n)
    for t in range(1, n):
        ou[t] = 0.97 * ou[t - 1] + rng.normal(scale=15.0)
    y = 20 * x + 500 + ou
    return times, np.round(y, 1), np.round(x, 2), rng


def funding_events(rng, times, closes, *, offset_ms):
    """Events every 30 min: on bar boundaries (offset 0) or inside a bar; some without a mark;
    one before the first bar, one inside the first bar without a mark, one after the last bar."""
    t0, t1 = int(times[0]), int(times[-1]) + TF
    grid = np.arange(t0 - t0 % 1_800_000 + 1_800_000, t1, 1_800_000) + offset_ms
    ev = []
    for k, F in enumerate(grid.tolist()):
        r = float(rng.normal(1e-4, 3e-4))
        j = int(np.searchsorted(times, F, side="right")) - 1
        mark = NAN if k % 3 == 1 else float(closes[max(j, 0)] * (1 + rng.normal(scale=2e-4)))
        ev.append((F, r, mark))
    ev += [(t0 - 5 * TF, 2e-4, NAN), (t0 + 1234, -1e-4, NAN), (t1 + 3 * TF, 1e-4, 100.0)]
    rng.shuffle(ev)  # funding_per_bar does not need sorted events
    return ev


def columns(events):
    return ([F for F, _, _ in events], [r for _, r, _ in events], [m for _, _, m in events])


@pytest.fixture(scope="module")
def market():
    times, y, x, rng = simulated_pair()
    ev_a = funding_events(rng, times, y, offset_ms=0)  # on bar boundaries
    ev_b = funding_events(rng, times, x, offset_ms=17_000)  # inside bars
    ev_b.append((int(times[900]), -3e-4, NAN))  # B also on a boundary, without a mark
    h = qa.ols_hedge(y, x)
    z = np.asarray(qa.rolling_zscore(qa.spread(y, x, beta=h.beta, alpha=h.alpha), window=60), dtype=float)
    kalman_beta = h.beta + np.cumsum(rng.normal(scale=2e-3, size=len(y)))
    kalman_beta[:80] = np.nan
    spread_a = rng.integers(1, 6, size=len(y)) * 0.1
    spread_b = rng.integers(1, 4, size=len(y)) * 0.01
    spread_a[rng.random(len(y)) < 0.15] = np.nan
    spread_b[rng.random(len(y)) < 0.15] = np.nan
    return {"times": times, "a": y, "b": x, "z": z, "ols_beta": np.full(len(y), h.beta), "kalman_beta": kalman_beta,
            "ev_a": ev_a, "ev_b": ev_b, "spread_a": spread_a, "spread_b": spread_b}


def run_both(m, beta, **kw):
    fa = funding_per_bar(m["times"], TF, m["a"], *columns(m["ev_a"]))
    fb = funding_per_bar(m["times"], TF, m["b"], *columns(m["ev_b"]))
    opts = {k: v for k, v in kw.items() if k in ("entry", "exit", "stop")}
    r = backtest(m["a"], m["b"], m["z"], beta, funding_a=fa.per_bar, funding_b=fb.per_bar,
                 fee_bps=kw.get("fee_bps", 4.0), slippage_bps=kw.get("slip_bps", 0.0),
                 slippage_model=kw.get("model", "fixed"), spread_a=kw.get("spread_a"), spread_b=kw.get("spread_b"),
                 **opts)
    ref = reference(list(m["times"]), list(m["a"]), list(m["b"]), list(m["z"]), list(beta), tf=TF,
                    events_a=m["ev_a"], events_b=m["ev_b"], **kw)
    return r, ref, fa, fb


def assert_exercised(r, ref):
    """The data really has what the test claims: funding inside long and short trades, events
    without a mark, on a bar boundary, and of both signs."""
    log = ref["charged"]
    assert sum(abs(t.funding) > 0 for t in r.trades) >= 5
    assert {t.side for t in r.trades if t.funding != 0} == {-1, 1}
    assert any(math.isnan(e["mark"]) for e in log) and any(not math.isnan(e["mark"]) for e in log)
    assert any(e["boundary"] for e in log) and any(not e["boundary"] for e in log)
    assert any(e["r"] > 0 for e in log) and any(e["r"] < 0 for e in log)


@pytest.mark.parametrize("beta_kind", ["ols_beta", "kalman_beta"])
@pytest.mark.parametrize(("entry", "exit", "stop", "fee", "slip"), [(1.5, 0.25, None, 4.0, 0.0), (1.0, 0.0, 3.0, 2.0, 1.5)])
def test_funding_backtest_equals_the_reference_loop(market, beta_kind, entry, exit, stop, fee, slip):
    r, ref, fa, fb = run_both(market, market[beta_kind], entry=entry, exit=exit, stop=stop, fee_bps=fee, slip_bps=slip)
    assert_same(r, ref)
    assert_exercised(r, ref)
    assert r.funding_included and r.slippage_model == "fixed" and r.quote_fallbacks == 0
    # the counts of funding_per_bar: the event before the first bar and the one after the last
    # (and any in a gap) are unmatched; the one inside the first bar without a mark has no price
    for f, ev, closes in ((fa, market["ev_a"], market["a"]), (fb, market["ev_b"], market["b"])):
        assert (f.charged, f.skipped, f.unmatched) == count_events(list(market["times"]), list(closes), TF, ev)
        assert f.skipped == 1 and f.unmatched == 2 + 3  # before, after, and one in each gap


@pytest.mark.parametrize("beta_kind", ["ols_beta", "kalman_beta"])
def test_half_spread_backtest_equals_the_reference_loop(market, beta_kind):
    kw = {"entry": 1.5, "exit": 0.25, "fee_bps": 4.0, "slip_bps": 3.0, "model": "half_spread",
          "spread_a": market["spread_a"], "spread_b": market["spread_b"]}
    r, ref, _, _ = run_both(market, market[beta_kind], **kw)
    assert_same(r, ref)
    assert_exercised(r, ref)
    assert r.slippage_model == "half_spread" and r.quote_fallbacks > 0
    fixed = backtest(market["a"], market["b"], market["z"], market[beta_kind], entry=1.5, exit=0.25,
                     fee_bps=4.0, slippage_bps=3.0)
    # fees are unchanged: fees - slippage is the same in both modes
    assert r.fees - r.slippage == pytest.approx(fixed.fees - fixed.slippage, rel=1e-12)
    assert r.fees == pytest.approx(sum(t.costs for t in r.trades), rel=1e-12)


def test_half_spread_without_funding_equals_the_reference(market):
    m = dict(market, ev_a=[], ev_b=[])
    kw = {"entry": 2.0, "exit": 0.0, "slip_bps": 1.0, "model": "half_spread",
          "spread_a": market["spread_a"], "spread_b": market["spread_b"]}
    ref = reference(list(m["times"]), list(m["a"]), list(m["b"]), list(m["z"]), list(m["ols_beta"]), tf=TF,
                    events_a=[], events_b=[], **kw)
    r = backtest(m["a"], m["b"], m["z"], m["ols_beta"], entry=2.0, exit=0.0, slippage_bps=1.0,
                 slippage_model="half_spread", spread_a=m["spread_a"], spread_b=m["spread_b"])
    assert_same(r, ref)
    assert not r.funding_included and r.funding == 0.0


@pytest.mark.parametrize("model", ["fixed", "half_spread"])
def test_sweep_cells_equal_backtest_with_funding(market, model):
    m = market
    fa = funding_per_bar(m["times"], TF, m["a"], *columns(m["ev_a"])).per_bar
    fb = funding_per_bar(m["times"], TF, m["b"], *columns(m["ev_b"])).per_bar
    spreads = {"spread_a": m["spread_a"], "spread_b": m["spread_b"]} if model == "half_spread" else {}
    entries, exits = [1.0, 1.5, 2.0], [0.0, 0.5]
    kw = {"stop": 3.5, "fee_bps": 4.0, "slippage_bps": 2.0, "funding_a": fa, "funding_b": fb,
          "slippage_model": model, **spreads}
    sw = sweep(m["a"], m["b"], m["z"], m["kalman_beta"], entries=entries, exits=exits, **kw)
    for i, e in enumerate(entries):
        for j, x_ in enumerate(exits):
            r = backtest(m["a"], m["b"], m["z"], m["kalman_beta"], entry=e, exit=x_, **kw)
            assert sw.n_trades[i, j] == r.n_trades and sw.quote_fallbacks[i, j] == r.quote_fallbacks
            np.testing.assert_allclose([sw.total_pnl[i, j], sw.max_drawdown[i, j], sw.funding[i, j]],
                                       [r.total_pnl, r.max_drawdown, r.funding], rtol=1e-9, atol=1e-8)
            np.testing.assert_allclose(sw.sharpe[i, j], r.sharpe, rtol=1e-6, equal_nan=True)
    assert (sw.funding != 0).all()
    if model == "half_spread":
        assert (sw.quote_fallbacks > 0).all()


@settings(max_examples=100, deadline=None)
@given(z=st.lists(st.one_of(st.floats(-4, 4), st.just(NAN)), min_size=2, max_size=40),
       entry=st.sampled_from([0.5, 1.0]), seed=st.integers(0, 10_000),
       half=st.booleans())
def test_random_events_match_the_reference(z, entry, seed, half):
    rng = np.random.default_rng(seed)
    n = len(z)
    times = np.cumsum(rng.integers(1, 3, size=n)) * TF  # gaps of one bar here and there
    a = np.round(100 + np.cumsum(rng.normal(size=n)), 2) + 20
    b = np.round(50 + np.cumsum(rng.normal(size=n)), 2) + 20
    beta = rng.normal(1.5, 0.3, size=n)
    span = int(times[-1]) + 2 * TF

    def events():
        k = int(rng.integers(0, 12))
        Fs = rng.integers(0, span // 1000, size=k) * 1000
        Fs[: k // 3] = Fs[: k // 3] // TF * TF  # some exactly on a bar boundary
        marks = np.where(rng.random(k) < 0.5, NAN, rng.uniform(10, 200, size=k))
        return list(zip(Fs.tolist(), rng.normal(0, 1e-3, size=k).tolist(), marks.tolist(), strict=True))

    ev_a, ev_b = events(), events()
    sa = np.where(rng.random(n) < 0.3, NAN, rng.uniform(0, 0.5, size=n))
    sb = np.where(rng.random(n) < 0.3, NAN, rng.uniform(0, 0.5, size=n))
    spreads = {"spread_a": sa, "spread_b": sb} if half else {}
    model = "half_spread" if half else "fixed"
    r = backtest(a, b, z, beta, entry=entry, exit=0.0, fee_bps=4, slippage_bps=1, slippage_model=model,
                 funding_a=funding_per_bar(times, TF, a, *columns(ev_a)).per_bar,
                 funding_b=funding_per_bar(times, TF, b, *columns(ev_b)).per_bar, **spreads)
    ref = reference(list(times), list(a), list(b), z, list(beta), tf=TF, events_a=ev_a, events_b=ev_b,
                    entry=entry, exit=0.0, fee_bps=4, slip_bps=1, model=model, **spreads)
    assert_same(r, ref)


# -- the pieces, pinned by hand ---------------------------------------------------------------
def test_funding_per_bar_windows_prices_and_counts():
    times = [0, 60_000, 180_000]  # a gap: [120_000, 180_000) is in no bar
    closes = [100.0, 101.0, 103.0]
    ev = [(-1, 1e-4, NAN),  # before the first bar: unmatched
          (30_000, 1e-4, NAN),  # in bar 0 with no bar ending before it: skipped
          (59_999, 1e-4, 99.0),  # in bar 0, with its mark
          (60_000, 2e-4, NAN),  # on bar 1's open: bar 1, priced at bar 0's close
          (150_000, 1e-4, NAN),  # in the gap: unmatched
          (200_000, -1e-4, NAN),  # bar 2, priced at bar 1's close (the last bar ending before it)
          (240_000, 1e-4, 1.0)]  # the end of bar 2: unmatched
    f = funding_per_bar(times, 60_000, closes, *columns(ev))
    np.testing.assert_allclose(f.per_bar, [99.0 * 1e-4, 100.0 * 2e-4, -101.0 * 1e-4], rtol=1e-15)
    assert (f.charged, f.skipped, f.unmatched) == (3, 1, 3)
    idx = pd.to_datetime(times, unit="ms")  # bar times as the aligned Series' index
    for t in (idx, idx.tz_localize("UTC").tz_convert("Asia/Tokyo")):
        assert funding_per_bar(t, 60_000, closes, *columns(ev)).per_bar.tolist() == f.per_bar.tolist()
    empty = funding_per_bar(times, 60_000, closes, [], [], [])
    assert empty.per_bar.tolist() == [0.0, 0.0, 0.0] and empty.unmatched == 0


def test_funding_is_received_by_the_position_held_during_the_bar():
    # long spread from the close of bar 1 to the close of bar 3; A pays 1 at bar 2, B pays 0.5 at bar 3
    a, b = [10.0, 9.0, 9.0, 9.0, 9.0], [5.0] * 5
    z = [0.0, -2.5, -1.0, 0.1, 0.0]
    fa, fb = [7.0, 0.0, 1.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.5, 0.0]  # bar 0 and bar 4: flat
    r = backtest(a, b, z, 2.0, fee_bps=0, funding_a=fa, funding_b=fb)
    # bar 2: q_A = +1 receives -1; bar 3: q_B = -2 receives -(-2)(0.5) = +1
    assert r.funding_pnl.tolist() == [0.0, 0.0, -1.0, 1.0, 0.0]
    assert r.trades[0].funding == 0.0 and r.funding == 0.0 and r.total_pnl == 0.0
    r = backtest(a, b, z, 2.0, fee_bps=0, funding_a=fa)  # a leg without events
    assert r.funding == -1.0 and r.trades[0].funding == -1.0 and r.equity[-1] == -1.0


def test_trades_frame_has_funding(market):
    r, _, _, _ = run_both(market, market["ols_beta"], entry=1.5, exit=0.25)
    df = trades_frame(r, pd.to_datetime(market["times"], unit="ms"))
    assert tuple(df.columns) == TRADE_COLUMNS and TRADE_COLUMNS[-1] == "funding"
    np.testing.assert_array_equal(df["funding"].to_numpy(), [t.funding for t in r.trades])


def test_carry_basis_and_quoted_spread_pinned():
    # long 1 BTC-like A at 60,000 (r = 1e-4 pays 6), short 20 ETH-like B at 3,000 (r = -5e-5 pays 3)
    assert pair_carry(1.0, 60_000.0, 1e-4, -20.0, 3_000.0, -5e-5) == pytest.approx(-9.0, rel=1e-12)
    assert pair_carry(-1.0, 60_000.0, 1e-4, 20.0, 3_000.0, 1e-4) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(pair_carry(1.0, 60_000.0, NAN, 0.0, 3_000.0, 1e-4))
    assert basis_bps(60_060.0, 60_000.0) == pytest.approx(10.0)
    np.testing.assert_allclose(basis_bps(np.array([100.5, NAN]), np.array([100.0, 100.0])), [50.0, NAN])
    assert quoted_spread_bps(100.0, 100.1) == pytest.approx(0.1 / 100.05 * 1e4)
    np.testing.assert_allclose(quoted_spread_bps([3000.0, NAN], [3000.6, 1.0]), [0.6 / 3000.3 * 1e4, NAN])
    assert math.isnan(basis_bps(1.0, 0.0)) and math.isnan(quoted_spread_bps(0.0, 0.0))  # undefined: NaN
    assert qa.pair_carry is pair_carry and qa.funding_per_bar is funding_per_bar


def test_bad_inputs_are_named():
    a, b, z = [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]
    with pytest.raises(AnalyticsInputError, match="half_spread' needs spread_a"):
        backtest(a, b, z, 1.0, slippage_model="half_spread", spread_b=[0.1] * 3)
    with pytest.raises(AnalyticsInputError, match="only with slippage_model='half_spread'"):
        backtest(a, b, z, 1.0, spread_a=[0.1] * 3)
    with pytest.raises(AnalyticsInputError, match=r"spread_b must be ask - bid >= 0 or NaN, got -0.1 at position 2"):
        backtest(a, b, z, 1.0, slippage_model="half_spread", spread_a=[0.1] * 3, spread_b=[0.1, NAN, -0.1])
    with pytest.raises(AnalyticsInputError, match="slippage_model must be one of fixed, half_spread"):
        sweep(a, b, z, 1.0, entries=[1.0], exits=[0.0], slippage_model="mid")
    with pytest.raises(AnalyticsInputError, match=r"funding_b must have one value per bar \(3\)"):
        backtest(a, b, z, 1.0, funding_b=[0.0, 0.0])
    with pytest.raises(AnalyticsInputError, match="funding_a has a non-finite value nan at position 1"):
        backtest(a, b, z, 1.0, funding_a=[0.0, NAN, 0.0])
    with pytest.raises(AnalyticsInputError, match="increase by at least timeframe_ms"):
        funding_per_bar([0, 30_000], 60_000, [1.0, 1.0], [], [], [])
    with pytest.raises(AnalyticsInputError, match="rates and marks differ in length: 1, 1, 2"):
        funding_per_bar([0], 60_000, [1.0], [5], [1e-4], [NAN, NAN])

"""The incremental live pair path equals the batch analytics, replayed through the real pipeline."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

import quantpanel.analytics as qa
from quantpanel.models import Bar
from quantpanel.pipeline.bars import build_bars
from quantpanel.pipeline.history import load_bars
from quantpanel.pipeline.pairs import PairSpec, PairState, pair_step
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.store import Store

from tests.test_pipeline import _config, wait_for

pytestmark = pytest.mark.timeout(60)


def closes(bars: list[Bar], sym: str, tf: str) -> dict[int, float]:
    return {b.time: b.close for b in bars if b.symbol == sym and b.timeframe == tf and b.closed}


async def test_live_pair_points_equal_batch_functions_over_a_replay(tmp_path):
    cfg = _config(tmp_path, source="replay")
    rt = Runtime(cfg)
    fixed = PairSpec("ETHUSDT", "BTCUSDT", "1s", window=30, refit_every=10**9)  # one fit only
    refit = PairSpec("BTCUSDT", "ETHUSDT", "1s", window=20, refit_every=25)
    got: dict[PairSpec, list] = {fixed: [], refit: []}

    def attach(r: Runtime) -> None:
        r.ingestion.pipeline.pairs.watch(fixed)
        r.ingestion.pipeline.pairs.watch(refit)
        r.ingestion.pipeline.pair_points.sink(lambda d: [got[k].extend(v) for k, v in d.items() if k in got])

    rt.on_ready(attach)
    await rt.start()
    try:
        await wait_for(lambda: rt.status().ticks == 35_389)
        await asyncio.to_thread(rt.ingestion.writer.flush, 30)
    finally:
        await rt.stop()
    with Store(tmp_path / "replay.db") as store:
        eth = {b.time: b.close for b in load_bars(store, "ETHUSDT", "1s", include_forming=False)}
        btc = {b.time: b.close for b in load_bars(store, "BTCUSDT", "1s", include_forming=False)}
    times = sorted(set(eth) & set(btc))

    # fixed hedge: from the first fit on, z and the spread are the batch functions' values
    pts = got[fixed]
    assert [p.time for p in pts] == times[: len(pts)] and len(pts) >= len(times) - 2
    y = np.array([eth[t] for t in times[: len(pts)]])
    x = np.array([btc[t] for t in times[: len(pts)]])
    h = qa.ols_hedge(y[:30], x[:30])  # fitted once, as soon as `window` aligned bars existed
    assert all(p.beta == h.beta for p in pts[29:]) and all(math.isnan(p.beta) for p in pts[:29])
    z = qa.rolling_zscore(qa.spread(y, x, beta=h.beta, alpha=h.alpha), window=30)
    live_z = np.array([p.zscore for p in pts])
    assert np.array_equal(np.isnan(live_z[29:]), np.isnan(z[29:]))
    np.testing.assert_allclose(live_z[29:], z[29:], rtol=1e-9, equal_nan=True)
    corr = qa.rolling_correlation(y, x, window=30)
    np.testing.assert_allclose([p.corr for p in pts], corr, rtol=1e-9, atol=1e-12, equal_nan=True)

    # scheduled refits: each point's z is the batch z of its own window, with its reported hedge
    pts = got[refit]
    assert len({p.beta for p in pts if not math.isnan(p.beta)}) > 5  # it really refit
    yb = np.array([btc[t] for t in times[: len(pts)]])
    xe = np.array([eth[t] for t in times[: len(pts)]])
    for i, p in enumerate(pts):
        if math.isnan(p.beta) or i < 19:
            assert math.isnan(p.zscore)
            continue
        s = qa.spread(yb[i - 19:i + 1], xe[i - 19:i + 1], beta=p.beta, alpha=p.alpha)
        assert p.zscore == pytest.approx(qa.rolling_zscore(s, window=20)[-1], rel=1e-9)


def test_step_is_o_window_and_tolerates_one_leg_running_ahead(usdm_ticks):
    bars, _ = build_bars(usdm_ticks, ["1s", "1m"], include_forming=False)
    spec = PairSpec("ETHUSDT", "BTCUSDT", "1m", window=2, refit_every=1)
    # all of ETH's bars first, then all of BTC's: alignment waits, then catches up
    st, pts = pair_step(PairState(spec), [b for b in bars if b.symbol == "ETHUSDT"])
    assert pts == [] and len(st.pending["ETHUSDT"]) == 6
    st, pts = pair_step(st, [b for b in bars if b.symbol == "BTCUSDT"])
    assert [p.time for p in pts] == sorted(set(closes(bars, "ETHUSDT", "1m")) & set(closes(bars, "BTCUSDT", "1m")))
    # ETH's newest closed minute waits for BTC's, which is still forming
    newest_btc = max(closes(bars, "BTCUSDT", "1m"))
    assert st.pending == {"ETHUSDT": {t: c for t, c in closes(bars, "ETHUSDT", "1m").items() if t > newest_btc},
                          "BTCUSDT": {}}
    assert len(st.pending["ETHUSDT"]) == 1


def test_old_states_stay_valid_when_the_tape_is_shared(usdm_ticks):
    bars, _ = build_bars(usdm_ticks, ["1s"], include_forming=False)
    spec = PairSpec("ETHUSDT", "BTCUSDT", "1s", window=5, lookback=8, refit_every=3)
    st = PairState(spec)
    states = []
    for i in range(0, 200, 2):
        st, _ = pair_step(st, bars[i:i + 2] + [b for b in bars if b.time == bars[i].time and b.symbol != bars[i].symbol])
        states.append(st)
    snapshot, newest = states[40].ys.copy(), states[-1].ys.copy()
    # fork from an old state: it must not see, nor change, what later states appended
    nxt = states[-1].times[-1] + 1000
    forked, pts = pair_step(states[40], [b for b in bars if b.time == nxt])
    assert len(pts) == 1 and forked.times[-1] == nxt and forked.tape is not states[40].tape
    assert np.array_equal(states[40].ys, snapshot) and np.array_equal(states[-1].ys, newest)
    assert len(states[-1].ys) == 8  # max(lookback, window + 1) kept


def test_live_kalman_equals_the_batch_filter(usdm_ticks):
    bars, _ = build_bars(usdm_ticks, ["1s"], include_forming=False)
    spec = PairSpec("ETHUSDT", "BTCUSDT", "1s", window=20, kalman_delta=1e-3, kalman_ve=1e-2)
    st, pts = PairState(spec), []
    for i in range(0, len(bars), 7):  # arbitrary batches of closed bars
        st, p = pair_step(st, bars[i:i + 7])
        pts.extend(p)
    y = np.array([p.y for p in pts])
    x = np.array([p.x for p in pts])
    k = qa.kalman_hedge(y, x, delta=1e-3, ve=1e-2)
    np.testing.assert_array_equal([p.kalman_beta for p in pts], k.beta)
    np.testing.assert_array_equal([p.kalman_z for p in pts], k.zscore)

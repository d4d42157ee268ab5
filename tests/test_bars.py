"""Bars equal an independent pandas computation of the ANALYTICS.md definition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantpanel.models import Bar, Tick, TickBatch
from quantpanel.pipeline.bars import Clock, build_bars, initial_state, step

TFS = {"1s": "1s", "1m": "1min", "5m": "5min"}
FIELDS = ["open", "high", "low", "close", "volume", "trades", "vwap", "buy_volume"]


def pandas_bars(ticks: list[Tick], symbol: str, rule: str) -> pd.DataFrame:
    """ANALYTICS.md "Bars", written independently with pandas resample."""
    d = pd.DataFrame(ticks)
    d = d[d.symbol == symbol].sort_values(["time", "agg_id"])
    d.index = pd.to_datetime(d.time.to_numpy(), unit="ms")
    g = d.resample(rule, origin="epoch")
    out = pd.DataFrame({
        "open": g.price.first(), "high": g.price.max(), "low": g.price.min(),
        "close": g.price.last(), "volume": g.qty.sum(), "trades": g.price.count(),
    })
    out["vwap"] = (d.price * d.qty).resample(rule, origin="epoch").sum() / out.volume
    out["buy_volume"] = d.qty.where(~d.buyer_maker, 0.0).resample(rule, origin="epoch").sum()
    empty = out.trades == 0
    out["close"] = out.close.ffill()
    for c in ("open", "high", "low", "vwap"):
        out.loc[empty, c] = out.close[empty]
    out.index = out.index.as_unit("ms").astype("int64")
    return out


def frame(bars: list[Bar], symbol: str, tf: str) -> pd.DataFrame:
    rows = [b for b in bars if b.symbol == symbol and b.timeframe == tf]
    df = pd.DataFrame({f: [getattr(b, f) for b in rows] for f in ["time", *FIELDS]})
    return df.set_index("time").sort_index()


def assert_same(ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(ours.index) == list(ref.index)
    for c in FIELDS:
        np.testing.assert_allclose(ours[c].to_numpy(float), ref[c].to_numpy(float), rtol=1e-12, err_msg=c)


@pytest.mark.parametrize("tf", list(TFS))
def test_bars_of_the_real_usdm_recording_equal_pandas(usdm_ticks, tf):
    bars, _ = build_bars(usdm_ticks, ["1s", "1m", "5m"])
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert_same(frame(bars, symbol, tf), pandas_bars(usdm_ticks, symbol, TFS[tf]))
    # the last bar of each series is the forming one; all others are closed
    for symbol in ("BTCUSDT", "ETHUSDT"):
        series = [b for b in bars if b.symbol == symbol and b.timeframe == tf]
        assert [b.closed for b in series] == [True] * (len(series) - 1) + [False]


@pytest.mark.parametrize("tf", list(TFS))
def test_bars_with_many_empty_intervals_equal_pandas(cryptofeed_ticks, tf):
    bars, _ = build_bars(cryptofeed_ticks, list(TFS))
    symbols = sorted({t.symbol for t in cryptofeed_ticks})
    n_empty = 0
    for symbol in symbols:
        ref = pandas_bars(cryptofeed_ticks, symbol, TFS[tf])
        n_empty += int((ref.trades == 0).sum())
        assert_same(frame(bars, symbol, tf), ref)
    if tf == "1s":
        assert n_empty == 40  # the thin symbols really do exercise the carry rule


def test_empty_interval_carries_previous_close():
    ticks = [Tick("X", 1_000, 1, 10.0, 1.0, False), Tick("X", 1_500, 2, 12.0, 1.0, True),
             Tick("X", 4_200, 3, 11.0, 2.0, False)]
    bars, _ = build_bars(ticks, ["1s"])
    assert [(b.time, b.open, b.close, b.volume, b.trades, b.vwap, b.closed) for b in bars] == [
        (1_000, 10.0, 12.0, 2.0, 2, 11.0, True),
        (2_000, 12.0, 12.0, 0.0, 0, 12.0, True),
        (3_000, 12.0, 12.0, 0.0, 0, 12.0, True),
        (4_000, 11.0, 11.0, 2.0, 1, 11.0, False),
    ]
    assert bars[0].buy_volume == 1.0  # only the taker-buy (m false) tick


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=35_389), max_size=30))
def test_any_split_into_batches_gives_the_same_bars(usdm_ticks, cuts):
    ref, _ = build_bars(usdm_ticks, ["1s", "1m"])
    state = initial_state(["1s", "1m"])
    closed: list[Bar] = []
    edges = sorted({0, len(usdm_ticks), *cuts})
    for a, b in zip(edges, edges[1:]):
        state, upd = step(state, TickBatch(tuple(usdm_ticks[a:b]), 0, 0))
        closed.extend(upd.closed)
    assert sorted(closed, key=lambda x: (x.symbol, x.timeframe, x.time)) == sorted(
        [b for b in ref if b.closed], key=lambda x: (x.symbol, x.timeframe, x.time))


def test_duplicates_and_late_ticks_are_counted_and_skipped():
    t = [Tick("X", 1_000, 1, 10.0, 1.0, False), Tick("X", 2_100, 2, 11.0, 1.0, False)]
    state, _ = step(initial_state(["1s"]), TickBatch(tuple(t), 0, 0))
    # the same ticks again (a reconnect overlap) and a late tick for the closed 1 s bar
    state, upd = step(state, TickBatch((t[0], t[1], Tick("X", 1_900, 3, 99.0, 5.0, False)), 0, 0))
    assert state.duplicates == 2
    assert state.late == 1
    assert upd.closed == ()
    assert upd.forming[0].close == 11.0 and upd.forming[0].trades == 1


def test_clock_closes_bars_after_grace_and_emits_empty_intervals():
    state = initial_state(["1s"], grace_ms=250)
    state, upd = step(state, TickBatch((Tick("X", 1_100, 1, 10.0, 1.0, False),), 0, 0))
    assert upd.closed == () and upd.forming[0].time == 1_000
    state, upd = step(state, Clock(2_249))  # bar [1000, 2000) + grace not yet passed
    assert upd.closed == ()
    state, upd = step(state, Clock(2_250))
    assert [(b.time, b.close, b.trades) for b in upd.closed] == [(1_000, 10.0, 1)]
    state, upd = step(state, Clock(4_300))  # two empty seconds have fully elapsed
    assert [(b.time, b.close, b.trades) for b in upd.closed] == [(2_000, 10.0, 0), (3_000, 10.0, 0)]
    # a tick in the already-closed second 3 is late; one in second 4 opens a bar
    state, upd = step(state, TickBatch((Tick("X", 3_900, 2, 9.0, 1.0, False),
                                        Tick("X", 4_100, 3, 12.0, 1.0, False)), 0, 0))
    assert state.late == 1
    assert upd.closed == () and upd.forming[0].time == 4_000 and upd.forming[0].open == 12.0



def test_a_spot_twin_closes_by_the_spot_feeds_clock_only():
    """The spot trades come on their own connection: a futures feed far ahead must not close a
    spot twin's bar before its last trades arrive (and the spot clock closes no futures bar)."""
    state = initial_state(["1s"], grace_ms=250)
    state, _ = step(state, TickBatch((Tick("X", 1_100, 1, 10.0, 1.0, False),
                                      Tick("X.SPOT", 1_200, 1, 9.0, 1.0, False)), 0, 0))
    state, upd = step(state, Clock(60_000))
    assert [(b.symbol, b.time) for b in upd.closed][:1] == [("X", 1_000)]
    assert {b.symbol for b in upd.closed} == {"X"}
    state, upd = step(state, TickBatch((Tick("X.SPOT", 1_900, 2, 9.5, 2.0, False),), 0, 0))
    assert state.late == 0 and upd.forming[0].volume == 3.0
    state, upd = step(state, Clock(2_250, spot=True))
    assert [(b.symbol, b.time, b.close, b.volume) for b in upd.closed] == [("X.SPOT", 1_000, 9.5, 3.0)]

def test_state_is_never_mutated():
    s0 = initial_state(["1s"])
    s1, _ = step(s0, TickBatch((Tick("X", 1_100, 1, 10.0, 1.0, False),), 0, 0))
    s2, _ = step(s1, TickBatch((Tick("X", 1_200, 2, 11.0, 1.0, False),), 0, 0))
    assert dict(s0.series) == {} and s0.last_agg_id == {}
    assert s1.series[("X", "1s")].forming[4] == 10.0  # close unchanged by the later step
    assert s2.series[("X", "1s")].forming[4] == 11.0


def test_continuing_from_last_closed_bars_carries_into_empty_intervals():
    last = Bar("X", "1s", 5_000, 1, 2, 1, 2, 3, 4, 1.5, 1)
    bars, _ = build_bars([Tick("X", 8_500, 10, 3.0, 1.0, True)], ["1s"],
                         state=initial_state(["1s"], last_bars=[last]))
    assert [(b.time, b.close, b.trades) for b in bars] == [(6_000, 2, 0), (7_000, 2, 0), (8_000, 3.0, 1)]


def test_a_silence_longer_than_the_cap_is_a_hole_not_millions_of_empty_bars():
    from quantpanel.pipeline.bars import MAX_EMPTY_BARS

    gap = (MAX_EMPTY_BARS + 1) * 1_000
    state = initial_state(["1s"], grace_ms=250)
    state, _ = step(state, TickBatch((Tick("X", 1_100, 1, 10.0, 1.0, False),), 0, 0))
    state, upd = step(state, TickBatch((Tick("X", 2_000 + gap, 2, 11.0, 1.0, False),), 0, 0))
    assert [(b.time, b.close) for b in upd.closed] == [(1_000, 10.0)]
    state, upd = step(state, TickBatch((Tick("X", 4_100 + gap, 3, 12.0, 1.0, False),), 0, 0))
    assert [(b.time, b.trades) for b in upd.closed] == [(2_000 + gap, 1), (3_000 + gap, 0)]  # a short one is bars
    state, upd = step(state, Clock(4_100 + 3 * gap))  # the clock jumps past the cap: the forming bar closes, no more
    assert [b.time for b in upd.closed] == [4_000 + gap]
    state, upd = step(state, Clock(4_100 + 3 * gap + 2_000))
    assert len(upd.closed) == 2  # and empty bars follow the clock again from there

"""The pure futures-native builders: ``QuoteBarBuilder`` against an independent pandas groupby of
700 real bookTicker frames (tests/data/README.md), and ``FundingTracker`` on markPrice updates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from numpy.testing import assert_allclose

from quantpanel.models import FundingEvent, MarkPrice, Quote, QuoteBar, timeframe_ms
from quantpanel.pipeline.funding_events import FundingTracker
from quantpanel.pipeline.quote_bars import QuoteBarBuilder, spread_bps

SLICE = Path(__file__).parent / "data" / "bookticker-btcusdt-slice.txt"
END = 2**62


def read_slice(path: Path = SLICE) -> list[Quote]:
    """A local parser of ``<recv ns> {"stream":..,"data":{bookTicker}}`` lines (independent of the
    production one on purpose)."""
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line.split(" ", 1)[1])["data"]
        assert d["e"] == "bookTicker"
        out.append(Quote(d["s"], d["T"], d["u"], float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"])))
    return out


@pytest.fixture(scope="module")
def quotes() -> list[Quote]:
    qs = read_slice()
    assert len(qs) == 700 and {q.symbol for q in qs} == {"BTCUSDT"}
    return qs


def oracle(quotes: list[Quote], timeframe: str) -> pd.DataFrame:
    """The bars by pandas: group by bar open, last bid/ask in update-id order, spread mean/max."""
    df = pd.DataFrame(quotes).sort_values("update_id", kind="stable")
    ms = timeframe_ms(timeframe)
    df["bar"] = df["time"] // ms * ms
    df["bps"] = (df["ask"] - df["bid"]) / ((df["ask"] + df["bid"]) / 2) * 1e4
    return df.groupby("bar").agg(bid=("bid", "last"), ask=("ask", "last"), mean=("bps", "mean"),
                                 max=("bps", "max"), updates=("bps", "size")).reset_index()


def frame(bars: list[QuoteBar]) -> pd.DataFrame:
    return pd.DataFrame({"bar": [b.time for b in bars], "bid": [b.bid for b in bars], "ask": [b.ask for b in bars],
                         "mean": [b.mean_spread_bps for b in bars], "max": [b.max_spread_bps for b in bars],
                         "updates": [b.updates for b in bars]})


def build(quotes: list[Quote], timeframes: tuple[str, ...], chunk: int) -> list[QuoteBar]:
    b = QuoteBarBuilder(timeframes)
    out: list[QuoteBar] = []
    for i in range(0, len(quotes), chunk):
        out += b.add(quotes[i:i + chunk])
    return out + b.close_until(END)


@pytest.mark.parametrize("chunk", [1, 7, 700])
def test_bars_of_real_quotes_equal_a_pandas_groupby_however_they_are_batched(quotes, chunk):
    bars = build(quotes, ("1s", "1m", "5m"), chunk)
    for tf, n in (("1s", 4), ("1m", 2), ("5m", 2)):  # the slice spans 23:54:57.731 .. 23:55:00.021
        got = frame(sorted((b for b in bars if b.timeframe == tf), key=lambda b: b.time))
        want = oracle(quotes, tf)
        assert len(got) == n and got["bar"].tolist() == want["bar"].tolist()
        assert got["updates"].tolist() == want["updates"].tolist() and got["updates"].sum() == 700
        assert_allclose(got[["bid", "ask"]].to_numpy(), want[["bid", "ask"]].to_numpy(), rtol=0, atol=0)
        assert_allclose(got[["mean", "max"]].to_numpy(), want[["mean", "max"]].to_numpy(), rtol=1e-12)
    widest = max(b.max_spread_bps for b in bars)
    assert widest > 10 * min(b.mean_spread_bps for b in bars)  # the slice has real wide quotes


def test_a_bar_closes_when_a_quote_of_a_later_bar_arrives_and_only_then(quotes):
    b = QuoteBarBuilder(["1s"])
    first_second = [q for q in quotes if q.time // 1000 == quotes[0].time // 1000]
    assert b.add(first_second) == []
    forming = b.forming("BTCUSDT", "1s")
    assert forming is not None and forming.updates == len(first_second)
    assert b.latest("BTCUSDT") == first_second[-1]
    (closed,) = b.add([quotes[len(first_second)]])
    assert closed == forming
    assert b.forming("BTCUSDT", "1s").updates == 1 and b.forming("ETHUSDT", "1s") is None
    assert b.latest("ETHUSDT") is None


def test_close_until_closes_bars_ending_at_or_before_the_clock_and_later_older_quotes_are_ignored(quotes):
    t0 = quotes[0].time // 1000 * 1000
    n = sum(q.time < t0 + 1000 for q in quotes)  # the slice's first second
    b = QuoteBarBuilder(["1s", "1m"])
    assert b.add(quotes[:n]) == [] and b.close_until(t0 + 999) == []
    (one,) = b.close_until(t0 + 1000)  # the 1 s bar ends here; the minute goes on
    assert (one.timeframe, one.time, one.updates) == ("1s", t0, n)
    assert b.forming("BTCUSDT", "1s") is None and b.forming("BTCUSDT", "1m").updates == n
    late = quotes[n]._replace(time=t0 + 500)  # simulated: a quote of the bar just closed
    assert b.add([late]) == [] and b.out_of_order == 1
    assert b.forming("BTCUSDT", "1m").updates == n and b.latest("BTCUSDT") == quotes[n - 1]
    assert b.add(quotes[n:n + 3]) == [] and b.forming("BTCUSDT", "1s").updates == 3


def test_a_quote_older_than_the_forming_bar_is_counted_and_ignored(quotes):
    b = QuoteBarBuilder(["1s"])
    b.add(quotes[:400])
    forming = b.forming("BTCUSDT", "1s")
    old = quotes[0]._replace(update_id=quotes[399].update_id + 1)  # simulated: an earlier second
    assert forming is not None and forming.time > old.time
    assert b.add([old]) == [] and b.out_of_order == 1 and b.forming("BTCUSDT", "1s") == forming


def test_symbols_are_independent_and_bad_quotes_are_counted():
    # simulated quotes
    b = QuoteBarBuilder(["1s"])
    qs = [Quote("AAAUSDT", 1_000, 1, 99.0, 1.0, 101.0, 1.0), Quote("BBBUSDT", 5_000, 1, 10.0, 1.0, 10.1, 1.0),
          Quote("AAAUSDT", 1_500, 2, 100.0, 1.0, 100.5, 1.0), Quote("AAAUSDT", 1_600, 3, 0.0, 1.0, 0.0, 1.0),
          Quote("AAAUSDT", 2_000, 4, 100.0, 1.0, 100.1, 1.0)]
    (bar,) = b.add(qs)
    assert bar == QuoteBar("AAAUSDT", "1s", 1_000, 100.0, 100.5, (200.0 + spread_bps(100.0, 100.5)) / 2, 200.0, 2)
    assert b.invalid == 1 and b.out_of_order == 0
    assert [x.symbol for x in b.close_until(END)] == ["AAAUSDT", "BBBUSDT"]


def test_bad_timeframes_are_named():
    with pytest.raises(ValueError, match="unknown timeframe '7s'"):
        QuoteBarBuilder(["1s", "7s"])
    with pytest.raises(ValueError, match="at least one"):
        QuoteBarBuilder([])
    with pytest.raises(ValueError, match="'1m' is not built here"):
        QuoteBarBuilder(["1s"]).forming("BTCUSDT", "1m")


# -- FundingTracker --------------------------------------------------------------------------------
H8 = 8 * 3_600_000
F1, F2, F3 = 1_723_161_600_000, 1_723_161_600_000 + H8, 1_723_161_600_000 + 2 * H8  # 2024-08-09 00:00, 08:00, 16:00 UTC


def mark(t: int, next_funding: int, rate: float, price: float, symbol: str = "BTCUSDT") -> MarkPrice:
    """A simulated markPriceUpdate."""
    return MarkPrice(symbol, t, price, price - 1, 0.0, rate, next_funding)


def test_funding_is_emitted_when_next_funding_advances_with_the_rate_and_mark_in_force_at_f():
    tr = FundingTracker()
    ups = [mark(F1 - 2_000, F1, 0.00010, 61_000.0), mark(F1 - 1_000, F1, 0.00012, 61_010.0),
           mark(F1, F1, 0.00013, 61_020.0),  # at F: still the rate of F, and the mark at F
           mark(F1 + 1_000, F1, 0.00014, 61_030.0),  # after F, still carrying F: its rate counts, its mark not
           mark(F1 + 2_000, F2, 0.00002, 61_040.0)]
    assert tr.add(ups[:4]) == [] and tr.pending("BTCUSDT") == FundingEvent("BTCUSDT", F1, 0.00014, 61_020.0)
    assert tr.add(ups[4:]) == [FundingEvent("BTCUSDT", F1, 0.00014, 61_020.0)]
    assert tr.pending("BTCUSDT") == FundingEvent("BTCUSDT", F2, 0.00002, 61_040.0)
    assert FundingTracker().add(ups) == [FundingEvent("BTCUSDT", F1, 0.00014, 61_020.0)]  # one batch: the same


def test_funding_without_a_mark_at_or_before_f_has_a_nan_mark_and_symbols_are_apart():
    tr = FundingTracker()
    events = tr.add([mark(F1 + 500, F1, 0.0001, 61_000.0),  # the tracker started after F
                     mark(F1 - 3_000, F1, 0.0003, 3_000.0, "ETHUSDT"),
                     mark(F1 + 1_000, F2, 0.0002, 61_100.0),
                     mark(F1 + 900, F1, 0.0005, 61_050.0),  # stale: F is already past
                     mark(F1 + 1_000, F2, -0.0001, 3_010.0, "ETHUSDT")])
    assert [(e.symbol, e.time, e.rate) for e in events] == [("BTCUSDT", F1, 0.0001), ("ETHUSDT", F1, 0.0003)]
    assert math.isnan(events[0].mark) and events[1].mark == 3_000.0
    assert tr.stale == 1 and tr.add([mark(F1 + 2_000, F2, 0.0002, 61_100.0)]) == []
    assert tr.pending("BTCUSDT") == FundingEvent("BTCUSDT", F2, 0.0002, 61_100.0)
    assert tr.pending("SOLUSDT") is None


def test_a_funding_whose_rate_was_last_seen_long_before_f_is_left_to_the_rest_history():
    """The connection was down across F: the last rate heard is an old prediction, not the one
    settled. No event from the stream (the REST fetch after the reconnect brings it)."""
    tr = FundingTracker()
    got = tr.add([mark(F1 - 20_000, F1, 0.0001, 61_000.0),  # then nothing until after F
                  mark(F1 + 5_000, F2, 0.0004, 61_100.0),
                  mark(F2 - 1_000, F2, 0.0003, 61_200.0), mark(F2, F3, 0.0002, 61_300.0)])
    assert tr.unsure == 1
    assert got == [FundingEvent("BTCUSDT", F2, 0.0003, 61_300.0)]  # fresh; the mark of the update at F2

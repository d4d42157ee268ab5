"""One aggTrade validator for every path: the live stream (parse_frame), REST backfill
(parse_agg_trades) and recorded captures (read_capture) accept and refuse exactly the same rows."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from quantpanel.errors import FrameError
from quantpanel.feeds.binance_futures import agg_trade_tick, parse_agg_trades, parse_frame
from quantpanel.feeds.trade_files import read_capture
from quantpanel.models import Tick

# A REST row as Binance sends it (no "s", no "e", no "E"), with the RPI-era "nq".
ROW = {"a": 26129, "p": "0.01633102", "q": "4.70443515", "nq": "4.70443515", "f": 27781, "l": 27781,
       "T": 1498793709153, "m": True}


def frame_of(row: dict[str, object]) -> bytes:
    return orjson.dumps({"stream": "btcusdt@aggTrade",
                         "data": {"e": "aggTrade", "E": 1498793709200, "s": "BTCUSDT", **row}})


def via_stream(row: dict[str, object]) -> Tick:
    out = parse_frame(frame_of(row))
    assert isinstance(out, tuple)
    return out[0]


def via_rest(row: dict[str, object]) -> Tick:
    (tick,) = parse_agg_trades("BTCUSDT", orjson.dumps([row]))
    return tick


def via_capture(row: dict[str, object], tmp_path) -> tuple[list[Tick], Counter[str]]:
    path = tmp_path / "capture.jsonl"
    path.write_bytes(b"1498793709.2: " + frame_of(row) + b"\n")
    counts: Counter[str] = Counter()
    trades = [Tick(t.symbol, t.time, t.agg_id, float(t.price), float(t.qty), t.buyer_maker)
              for t in read_capture(path, counts)]
    return trades, counts


def without(key: str) -> dict[str, object]:
    return {k: v for k, v in ROW.items() if k != key}


def test_a_good_row_is_the_same_tick_on_every_path(tmp_path):
    want = Tick("BTCUSDT", 1498793709153, 26129, 0.01633102, 4.70443515, True)
    assert agg_trade_tick(ROW, "BTCUSDT") == want
    assert via_stream(ROW) == via_rest(ROW) == want
    assert via_capture(ROW, tmp_path) == ([want], Counter(aggTrade=1))


def test_unknown_extra_fields_are_tolerated_and_the_passed_symbol_wins():
    assert agg_trade_tick({**ROW, "X": "MARKET", "zz": [1, {}], "s": "ETHUSDT"}, "BTCUSDT").symbol == "BTCUSDT"
    assert agg_trade_tick({**ROW, "s": "ETHUSDT"}).symbol == "ETHUSDT"


def test_absent_m_means_side_unknown_on_every_path(tmp_path):
    row = without("m")
    assert via_stream(row).buyer_maker is None
    assert via_rest(row).buyer_maker is None
    trades, _ = via_capture(row, tmp_path)
    assert [t.buyer_maker for t in trades] == [None]


def test_nq_is_optional_and_does_not_change_the_quantity():
    for row in (without("nq"), {**ROW, "nq": "0"}, {**ROW, "nq": 1.5}, {**ROW, "nq": "4.70443515"}):
        assert via_stream(row).qty == via_rest(row).qty == 4.70443515  # bars use q, RPI fills included


# (field, bad value, words of the message): refused by every path
BAD = [
    ("m", "false", "not a boolean"),  # bool("false") was True on the REST and capture paths
    ("m", "true", "not a boolean"),
    ("m", 0, "not a boolean"),
    ("m", 1, "not a boolean"),
    ("m", None, "not a boolean"),
    ("p", "0", "bad price/qty"),
    ("p", "nan", "bad price/qty"),
    ("p", "inf", "bad price/qty"),
    ("p", "-1", "bad price/qty"),
    ("p", True, "bad price/qty"),
    ("p", "abc", "bad value"),
    ("p", None, "bad value"),
    ("q", "0", "bad price/qty"),
    ("q", "1e999", "bad price/qty"),
    ("nq", "-0.1", "'nq'"),
    ("nq", "5", "'nq'"),  # more than q
    ("nq", "nan", "'nq'"),
    ("nq", "abc", "'nq'"),
    ("nq", None, "'nq'"),
    ("nq", True, "'nq'"),
    ("nq", [], "'nq'"),
    ("a", -1, "must be integers"),
    ("a", "26129", "must be integers"),
    ("a", 26129.0, "must be integers"),
    ("a", True, "must be integers"),
    ("T", "1498793709153", "must be integers"),
    ("T", None, "must be integers"),
]


@pytest.mark.parametrize(("key", "value", "words"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_a_bad_value_is_refused_by_every_path(tmp_path, key, value, words):
    row = {**ROW, key: value}
    with pytest.raises(FrameError, match=words):
        agg_trade_tick(row, "BTCUSDT")
    with pytest.raises(FrameError, match=words):
        parse_frame(frame_of(row))
    with pytest.raises(FrameError, match=rf"aggTrades response for BTCUSDT, row 0: .*{words}"):
        parse_agg_trades("BTCUSDT", orjson.dumps([row]))
    trades, counts = via_capture(row, tmp_path)
    assert trades == [] and counts == {"malformed": 1}


@pytest.mark.parametrize("key", ["a", "p", "q", "T"])
def test_a_missing_field_is_named_on_every_path(tmp_path, key):
    row = without(key)
    with pytest.raises(FrameError, match=f"without field '{key}'"):
        parse_frame(frame_of(row))
    with pytest.raises(FrameError, match=f"row 0: aggTrade without field '{key}'"):
        parse_agg_trades("BTCUSDT", orjson.dumps([row]))
    assert via_capture(row, tmp_path) == ([], Counter(malformed=1))


def test_rest_names_the_row_and_refuses_a_row_that_is_not_an_object():
    rows = [ROW, {**ROW, "a": 26130}, {**ROW, "a": 26131, "m": "false"}]
    with pytest.raises(FrameError, match=r"for BTCUSDT, row 2: aggTrade BTCUSDT a=26131: 'm' is 'false'"):
        parse_agg_trades("BTCUSDT", orjson.dumps(rows))
    with pytest.raises(FrameError, match="row 1 is list, not an object"):
        parse_agg_trades("BTCUSDT", orjson.dumps([ROW, [1, 2]]))
    assert [t.agg_id for t in parse_agg_trades("BTCUSDT", orjson.dumps(rows[:2]))] == [26129, 26130]


def test_a_capture_line_with_a_string_m_is_counted_malformed_and_the_rest_kept(tmp_path):
    path = tmp_path / "capture.jsonl"
    good, bad = frame_of(ROW), frame_of({**ROW, "a": 26130, "m": "false"})
    nq_bad = frame_of({**ROW, "a": 26131, "nq": "9"})
    trade = orjson.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "E": 1, "T": 1498793709300,
                          "s": "BTCUSDT", "t": 9, "p": "1.5", "q": "2", "X": "MARKET", "m": "true"}})
    path.write_bytes(b"\n".join([good, bad, nq_bad, trade]) + b"\n")
    counts: Counter[str] = Counter()
    assert [t.agg_id for t in read_capture(path, counts)] == [26129]
    assert counts == {"aggTrade": 1, "malformed": 3}  # a trade frame goes through the same checks

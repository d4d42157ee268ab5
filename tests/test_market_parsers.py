"""bookTicker, markPriceUpdate and forceOrder validators and renderers, and the fundingRate /
openInterest REST facts: against every real bookTicker frame bundled, Binance's documented
examples and garbage."""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from dataclasses import replace

import orjson
import pytest

from quantpanel.errors import FrameError
from quantpanel.feeds.binance_market import (
    RecordedLiquidation,
    RecordedMark,
    book_ticker_quote,
    force_order,
    funding_rate_url,
    kind_of_stream,
    mark_price,
    open_interest_url,
    parse_funding_rates,
    parse_open_interest,
    recorded_quote,
    render_book_ticker,
    render_force_order,
    render_mark_price,
    route_of,
    route_of_path,
    stream_name,
)
from quantpanel.feeds.trade_files import read_book_tickers
from quantpanel.models import FundingEvent, Liquidation, MarkPrice, OpenInterest, Quote

from tests.conftest import CRYPTOFEED, DATA

BOOKTICKER = DATA / "binance-usdm-btcusdt-ethusdt-2024-08-08.bookticker.gz"

# developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Mark-Price-Stream
DOC_MARK = ('{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000",'
            '"i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}')
# developers.binance.com/docs/derivatives/coin-margined-futures/websocket-market-streams/Mark-Price-Stream
# (a delivery contract: no funding rate, "r":"" and "T":0)
DOC_MARK_DELIVERY = ('{"e":"markPriceUpdate","E":1596095725000,"s":"BTCUSD_201225","p":"10934.62615417",'
                     '"P":"10962.17178236","i":"10933.62615417","r":"","T":0}')
# developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Liquidation-Order-Streams
DOC_FORCE = ('{"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC",'
             '"q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014","T":1568014460893}}')
# developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Get-Funding-Rate-History
DOC_FUNDING = (b'[{"symbol":"BTCUSDT","fundingRate":"-0.03750000","fundingTime":1570608000000,'
               b'"markPrice":"34287.54619963"},{"symbol":"BTCUSDT","fundingRate":"0.00010000",'
               b'"fundingTime":1570636800000,"markPrice":"34287.54619963"}]')
# developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Open-Interest
DOC_OPEN_INTEREST = b'{"openInterest":"10659.509","symbol":"BTCUSDT","time":1589437530011}'


def _book_ticker_frames(lines):
    for line in lines:
        if '"bookTicker"' in line:
            yield line[line.index("{"):].rstrip("\n")


@pytest.mark.parametrize(("path", "count"), [(BOOKTICKER, 120_081), (CRYPTOFEED, 613)], ids=["hftbacktest", "cryptofeed"])
def test_every_real_book_ticker_frame_parses_exactly_and_renders_back_byte_for_byte(path, count):
    opened = gzip.open(path, "rt") if path.suffix == ".gz" else open(path)
    with opened as fh:
        frames = list(_book_ticker_frames(fh))
    assert len(frames) == count
    symbols: Counter[str] = Counter()
    for raw in frames:
        d = json.loads(raw)["data"]  # independent decoding with the stdlib
        assert book_ticker_quote(d) == Quote(d["s"], d["T"], d["u"], float(d["b"]), float(d["B"]),
                                             float(d["a"]), float(d["A"]))
        assert render_book_ticker(recorded_quote(d), 0, 0) == raw
        symbols[d["s"]] += 1
    assert [q.update_id for q in read_book_tickers(path)] == [json.loads(r)["data"]["u"] for r in frames]
    if path == BOOKTICKER:
        assert symbols == {"BTCUSDT": 66_089, "ETHUSDT": 53_992}


def test_a_shifted_book_ticker_moves_times_and_update_id_only():
    raw = next(_book_ticker_frames(gzip.open(BOOKTICKER, "rt")))
    q = recorded_quote(json.loads(raw)["data"])
    shifted = orjson.loads(render_book_ticker(q, 1_000, 7))
    assert shifted["stream"] == f"{q.symbol.lower()}@bookTicker"
    got = book_ticker_quote(shifted["data"])
    assert (got.time, got.update_id) == (q.time + 1_000, q.update_id + 7)
    assert shifted["data"]["E"] == q.event_time + 1_000 and shifted["data"]["b"] == q.bid


def test_a_crossed_book_is_accepted_as_sent():
    d = {"e": "bookTicker", "u": 1, "s": "X", "b": "2.0", "B": "1", "a": "1.5", "A": "1", "T": 5, "E": 6}
    assert book_ticker_quote(d).bid > book_ticker_quote(d).ask


def test_binance_documented_mark_price_example():
    assert mark_price(json.loads(DOC_MARK)) == MarkPrice(
        "BTCUSDT", 1562305380000, 11794.15, 11784.62659091, 11784.25641265, 0.00038167, 1562306400000)
    delivery = mark_price(json.loads(DOC_MARK_DELIVERY))
    assert math.isnan(delivery.funding_rate) and delivery.next_funding == 0


def test_mark_price_render_parse_round_trip_exactly():
    m = RecordedMark("ETHUSDT", 1723161257000, "2681.62500000", "2680.75910988", "2680.75910988",
                     "-0.00047217", 1723161300000)
    for kind in ("markPrice@1s", "markPrice"):
        frame = render_mark_price(m, 60_000, kind=kind)
        msg = json.loads(frame)
        assert msg["stream"] == f"ethusdt@{kind}"
        assert mark_price(msg["data"]) == MarkPrice("ETHUSDT", m.event_time + 60_000, 2681.625, 2680.75910988,
                                                    2680.75910988, -0.00047217, m.next_funding + 60_000)
    assert render_mark_price(m, 0).endswith(
        '"data":{"e":"markPriceUpdate","E":1723161257000,"s":"ETHUSDT","p":"2681.62500000","P":"2680.75910988",'
        '"i":"2680.75910988","r":"-0.00047217","T":1723161300000}}')


def test_binance_documented_force_order_example_and_round_trip():
    liq = force_order(json.loads(DOC_FORCE))
    assert liq == Liquidation("BTCUSDT", 1568014460893, "SELL", 0.014, 9910.0, 9910.0, "FILLED", 0.014, 0.014)
    assert liq.notional == pytest.approx(9910 * 0.014)
    x = RecordedLiquidation("BTCUSDT", 1568014460893, "SELL", "0.014", "9910", "9910", "FILLED",
                            "0.014", "0.014", 1568014460893)
    assert json.loads(render_force_order(x, 0)) == {"stream": "btcusdt@forceOrder", "data": json.loads(DOC_FORCE)}
    assert force_order(json.loads(render_force_order(replace(x, side="BUY"), 5))["data"]).time == 1568014460898


_QUOTE = {"e": "bookTicker", "u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21000000",
          "a": "25.36520000", "A": "40.66000000", "T": 1568014460891, "E": 1568014460893}


@pytest.mark.parametrize(("field", "value"), [
    ("u", None), ("T", None), ("E", None), ("b", None), ("B", None), ("a", None), ("A", None), ("s", None),
    ("T", 1.5), ("T", "1568014460891"), ("E", True), ("u", -1),
    ("b", "-1"), ("b", "NaN"), ("b", "abc"), ("b", "0"), ("a", "inf"), ("a", "1e5"), ("A", 2.0), ("B", " 1"),
    ("s", ""), ("s", 7),
])
def test_bad_book_ticker_names_the_field(field, value):
    d = dict(_QUOTE)
    if value is None:
        del d[field]
    else:
        d[field] = value
    with pytest.raises(FrameError, match=f"'{field}'"):
        book_ticker_quote(d)


@pytest.mark.parametrize(("field", "value"), [
    ("p", None), ("i", None), ("P", None), ("r", None), ("T", None), ("E", None),
    ("p", "0"), ("i", "0"), ("p", "NaN"), ("i", "abc"), ("P", "-1"), ("r", "x"), ("r", 0.0001), ("r", []),
    ("T", "1562306400000"), ("E", 1.0), ("p", 11794.15),
])
def test_bad_mark_price_names_the_field(field, value):
    d = json.loads(DOC_MARK)
    if value is None:
        del d[field]
    else:
        d[field] = value
    with pytest.raises(FrameError, match=f"'{field}'"):
        mark_price(d)


def test_mark_price_allows_a_zero_settle_price():
    assert mark_price({**json.loads(DOC_MARK), "P": "0"}).settle == 0.0


@pytest.mark.parametrize(("field", "value"), [
    ("S", "LONG"), ("S", None), ("q", "0"), ("p", "-9910"), ("ap", "NaN"), ("l", "abc"), ("z", None),
    ("T", "1568014460893"), ("X", ""), ("X", None), ("s", None),
])
def test_bad_force_order_names_the_field(field, value):
    d = json.loads(DOC_FORCE)
    if value is None:
        del d["o"][field]
    else:
        d["o"][field] = value
    with pytest.raises(FrameError, match=f"'{field}'"):
        force_order(d)


def test_force_order_needs_an_order_object_and_an_event_time():
    with pytest.raises(FrameError, match="'o'"):
        force_order({"e": "forceOrder", "E": 1, "o": [1]})
    with pytest.raises(FrameError, match="'E'"):
        force_order({**json.loads(DOC_FORCE), "E": "1"})


def test_funding_rate_rest_facts():
    assert parse_funding_rates(DOC_FUNDING) == [FundingEvent("BTCUSDT", 1570608000000, -0.0375, 34287.54619963),
                                                FundingEvent("BTCUSDT", 1570636800000, 0.0001, 34287.54619963)]
    old = parse_funding_rates(b'[{"symbol":"BTCUSDT","fundingTime":1,"fundingRate":"0.0001","markPrice":""}]')
    assert math.isnan(old[0].mark)
    assert funding_rate_url("http://x/", "BTCUSDT", 1, 2) == (
        "http://x/fapi/v1/fundingRate?symbol=BTCUSDT&startTime=1&endTime=2&limit=1000")
    assert funding_rate_url("http://x", None, limit=5000) == "http://x/fapi/v1/fundingRate?limit=1000"
    for body, field in ((b'[{"symbol":"BTCUSDT","fundingTime":"1","fundingRate":"0.1"}]', "fundingTime"),
                        (b'[{"symbol":"BTCUSDT","fundingTime":1,"fundingRate":"abc"}]', "fundingRate"),
                        (b'[{"symbol":"BTCUSDT","fundingTime":1}]', "fundingRate"),
                        (b'[{"symbol":"BTCUSDT","fundingTime":1,"fundingRate":"0","markPrice":"-1"}]', "markPrice")):
        with pytest.raises(FrameError, match=f"'{field}'"):
            parse_funding_rates(body)
    with pytest.raises(FrameError, match="not a list"):
        parse_funding_rates(b'{"code":-1121,"msg":"Invalid symbol."}')


def test_open_interest_rest_facts():
    assert parse_open_interest(DOC_OPEN_INTEREST) == OpenInterest("BTCUSDT", 1589437530011, 10659.509)
    assert open_interest_url("http://x", "ETHUSDT") == "http://x/fapi/v1/openInterest?symbol=ETHUSDT"
    with pytest.raises(FrameError, match="'openInterest'"):
        parse_open_interest(b'{"openInterest":"NaN","symbol":"BTCUSDT","time":1}')
    with pytest.raises(FrameError, match="'time'"):
        parse_open_interest(b'{"openInterest":"1","symbol":"BTCUSDT"}')


def test_stream_names_and_routes():
    assert stream_name("BTCUSDT", "bookTicker") == "btcusdt@bookTicker"
    assert stream_name("ETHUSDT", "markPrice@1s") == "ethusdt@markPrice@1s"
    assert [route_of(k) for k in ("aggTrade", "markPrice@1s", "markPrice", "forceOrder", "bookTicker")] == [
        "market", "market", "market", "market", "public"]
    with pytest.raises(ValueError, match="depth"):
        stream_name("BTCUSDT", "depth")
    assert kind_of_stream("btcusdt@markPrice@1s") == "markPrice@1s" and kind_of_stream("btcusdt@depth") is None
    assert [route_of_path(p) for p in ("/public/stream?streams=a", "/market/ws/a", "/stream?streams=a", "/ws/a")] == [
        "public", "market", "", ""]


def test_capture_reader_counts_and_skips_bad_book_ticker_lines(tmp_path):
    good = next(_book_ticker_frames(gzip.open(BOOKTICKER, "rt")))
    bad_price = good.replace('"b":"', '"b":"x', 1)
    trade = ('1 {"stream":"btcusdt@trade","data":{"e":"trade","E":1,"T":1,"s":"BTCUSDT","t":5,"p":"1.0",'
             '"q":"1","X":"MARKET","m":false}}')
    path = tmp_path / "capture.txt"
    path.write_text("\n".join([f"7 {good}", f"8 {bad_price}", f"9 {good[:40]}", trade, "no frame here"]) + "\n")
    counts: Counter[str] = Counter()
    got = list(read_book_tickers(path, counts))
    assert [render_book_ticker(q, 0, 0) for q in got] == [good]
    assert counts == {"bookTicker": 1, "malformed": 2, "trade": 1, "no_frame": 1}

"""The parser against every frame of a real Binance USD-M capture, and against garbage."""

import json
from collections import Counter

import pytest

from quantpanel.errors import FrameError
from quantpanel.feeds.binance_futures import combined_stream_url, control_message, parse_frame
from quantpanel.models import Quote, Tick

from tests.conftest import CRYPTOFEED


def test_every_frame_of_the_real_capture_parses_with_exact_values():
    kinds: Counter[str] = Counter()
    n_frames = 0
    for line in CRYPTOFEED.read_text().splitlines():
        if "{" not in line:
            continue  # the capture's header line (the URL it connected to)
        raw = line[line.index("{"):]
        n_frames += 1
        expected = json.loads(raw)["data"]  # independent decoding with the stdlib
        parsed = parse_frame(raw)
        if expected["e"] == "aggTrade":
            tick, event_ms = parsed
            assert tick == Tick(expected["s"], expected["T"], expected["a"], float(expected["p"]),
                                float(expected["q"]), expected["m"])
            assert event_ms == expected["E"]
            kinds["aggTrade"] += 1
        elif expected["e"] == "bookTicker":  # a Quote, through parse_frame as the feed reads it
            assert parsed == Quote(expected["s"], expected["T"], expected["u"], float(expected["b"]),
                                   float(expected["B"]), float(expected["a"]), float(expected["A"]))
            kinds["bookTicker"] += 1
        else:
            assert parsed == expected["e"]
            kinds[parsed] += 1
    assert n_frames == 1535
    assert kinds == {"aggTrade": 91, "bookTicker": 613, "depthUpdate": 764, "kline": 67}


def test_raw_ws_form_and_control_replies():
    raw = b'{"e":"aggTrade","E":2,"s":"BTCUSDT","a":7,"p":"1.5","q":"2","f":1,"l":1,"T":1,"m":true}'
    assert parse_frame(raw) == (Tick("BTCUSDT", 1, 7, 1.5, 2.0, True), 2)
    assert parse_frame('{"result":null,"id":1}') == "response"
    assert parse_frame('{"error":{"code":2,"msg":"x"},"id":1}') == "error"


def test_rpi_era_frame_with_nq_and_a_frame_without_side():
    raw = (b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":2,"s":"BTCUSDT","a":7,"p":"1.5",'
           b'"q":"2.000","nq":"1.250","f":1,"l":3,"T":1,"m":false,"new_field":{"x":1}}}')
    assert parse_frame(raw) == (Tick("BTCUSDT", 1, 7, 1.5, 2.0, False), 2)  # q, RPI fills included
    no_side = b'{"e":"aggTrade","E":2,"s":"BTCUSDT","a":7,"p":"1.5","q":"2","f":1,"l":1,"T":1}'
    assert parse_frame(no_side) == (Tick("BTCUSDT", 1, 7, 1.5, 2.0, None), 2)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        ("not json at all", "not JSON"),
        ("", "not JSON"),
        ("[1,2]", "expected a JSON object"),
        ('{"stream":"x","data":[1]}', "'data' is list"),
        ('{"foo":1}', "no event type"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":1,"q":"1","T":1,"m":false}}', "without field 'p'"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"abc","q":"1","T":1,"m":false}}', "bad value"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"-1","q":"1","T":1,"m":false}}', "bad price/qty"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"1","q":"0","T":1,"m":false}}', "bad price/qty"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"nan","q":"1","T":1,"m":false}}', "bad price/qty"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"1","q":"1","T":1,"m":"no"}}', "not a boolean"),
        ('{"data":{"e":"aggTrade","s":"","a":1,"p":"1","q":"1","T":1,"m":false}}', "bad symbol"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"1","q":"1","T":1,"m":null}}', "not a boolean"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"1","q":"1","T":1,"m":"false"}}', "not a boolean"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":-1,"p":"1","q":"1","T":1,"m":false}}', "integers >= 0"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"1","q":"1","T":"1","m":false}}', "integers >= 0"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"1","q":"1","nq":"1.1","T":1,"m":false}}',
         "'nq' is '1.1', not a number within 0..q"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"1","q":"1","nq":"x","T":1,"m":false}}', "'nq'"),
        ('{"data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"1","q":"1","T":1,"m":false,"E":"x"}}', "bad E"),
    ],
)
def test_malformed_frames_raise_frame_error(frame, match):
    with pytest.raises(FrameError, match=match):
        parse_frame(frame)


def test_urls_and_control_messages():
    url = combined_stream_url("wss://fstream.binance.com/market/stream",
                              ["btcusdt@aggTrade", "ethusdt@aggTrade", "btcusdt@markPrice@1s"])
    assert url == ("wss://fstream.binance.com/market/stream"
                   "?streams=btcusdt@aggTrade/ethusdt@aggTrade/btcusdt@markPrice@1s")
    assert json.loads(control_message("SUBSCRIBE", ["btcusdt@aggTrade"], 3)) == {
        "method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 3}
    assert json.loads(control_message("LIST_SUBSCRIPTIONS", [], 4)) == {
        "method": "LIST_SUBSCRIPTIONS", "id": 4}

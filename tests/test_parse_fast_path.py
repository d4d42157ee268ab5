"""parse_frame's typed fast path for aggTrade frames answers exactly as the general path does.

A bytes frame never takes the fast path, so ``parse_frame(raw.encode())`` is the reference: every
frame below, well-formed or not, must give the same tick (or the same FrameError) either way.
"""

from __future__ import annotations

import pytest

from quantpanel.errors import FrameError
from quantpanel.feeds.binance_futures import parse_frame, parse_trade_frames

_DATA = ('"e":"aggTrade","E":1723161256322,"s":"BTCUSDT","a":5266583935,"p":"61800.30","q":"0.006",'
         '"nq":"0.006","f":100,"l":101,"T":1723161256321,"m":false')
_REAL = '{"stream":"btcusdt@aggTrade","data":{' + _DATA + '}}'

FRAMES = [
    _REAL,
    _REAL.replace('"m":false', '"m":true'),
    _REAL.replace(',"m":false', ''),  # side unknown
    _REAL.replace(',"nq":"0.006"', ''),
    _REAL.replace('"nq":"0.006"', '"nq":"0.004"'),  # RPI fills: nq < q
    _REAL.replace('"nq":"0.006"', '"nq":"0.007"'),  # nq > q: refused
    _REAL.replace('"nq":"0.006"', '"nq":"x"'),
    _REAL.replace('"nq":"0.006"', '"nq":0.004'),  # a number, not a string
    _REAL.replace('"nq":"0.006"', '"nq":null'),
    _REAL.replace('"m":false', '"m":null'),
    _REAL.replace('"m":false', '"m":"false"'),
    _REAL.replace('"m":false', '"m":0'),
    _REAL.replace('"p":"61800.30"', '"p":61800.3'),  # numbers for p/q are taken
    _REAL.replace('"q":"0.006"', '"q":0.006'),
    _REAL.replace('"p":"61800.30"', '"p":"0"'),
    _REAL.replace('"p":"61800.30"', '"p":"-1"'),
    _REAL.replace('"p":"61800.30"', '"p":"inf"'),
    _REAL.replace('"p":"61800.30"', '"p":"nan"'),
    _REAL.replace('"p":"61800.30"', '"p":"abc"'),
    _REAL.replace('"p":"61800.30"', '"p":true'),
    _REAL.replace('"q":"0.006"', '"q":""'),
    _REAL.replace('"a":5266583935', '"a":-1'),
    _REAL.replace('"a":5266583935', '"a":5266583935.0'),
    _REAL.replace('"a":5266583935', '"a":"5266583935"'),
    _REAL.replace('"a":5266583935', '"a":true'),
    _REAL.replace('"a":5266583935', '"a":18446744073709551615'),
    _REAL.replace('"a":5266583935', '"a":18446744073709551616'),  # orjson: a float
    _REAL.replace('"T":1723161256321', '"T":-5'),
    _REAL.replace('"T":1723161256321', '"T":99999999999999999999999'),
    _REAL.replace('"E":1723161256322', '"E":1.5'),  # int() of a float, as before
    _REAL.replace('"E":1723161256322', '"E":"17"'),
    _REAL.replace('"E":1723161256322', '"E":"x"'),
    _REAL.replace('"E":1723161256322', '"E":-9223372036854775809'),
    _REAL.replace('"E":1723161256322,', ''),
    _REAL.replace('"s":"BTCUSDT"', '"s":""'),
    _REAL.replace('"s":"BTCUSDT"', '"s":7'),
    _REAL.replace('"s":"BTCUSDT",', ''),
    _REAL.replace('"T":1723161256321,', ''),
    _REAL.replace('"f":100', '"f":"100"'),  # ignored by the validator either way
    _REAL.replace('"l":101', '"l":1e3'),
    _REAL.replace('"m":false', '"m":false,"X":"NEW"'),  # an unknown field is ignored
    _REAL.replace('"stream":"btcusdt@aggTrade"', '"stream":"btcusdt@aggTrade","id":1'),
    _REAL.replace('"stream":"btcusdt@aggTrade"', '"stream":null'),
    _REAL.replace('"a":5266583935', '"a":1,"a":2'),  # a repeated key: the last one
    _REAL.replace('"e":"aggTrade"', '"e":"bookTicker"'),
    _REAL.replace('"e":"aggTrade"', '"e":"kline"'),
    _REAL.replace('"BTCUSDT"', '"\\u0042TCUSDT"'),
    _REAL.replace('"BTCUSDT"', '"BTC\\ud800"'),
    '{"stream":"btcusdt@aggTrade","data":[1]}',
    '{"stream":"btcusdt@aggTrade","data":null}',
    '{"stream":"btcusdt@aggTrade","data":{}}',
    '{"stream":"btcusdt@aggTrade"}',
    '{"e":"aggTrade","stream":"btcusdt@aggTrade"}',
    '{"stream":"btcusdt@aggTrade","data":{' + _DATA + '}}trailing',
    ' {"stream":"btcusdt@aggTrade","data":{' + _DATA + '}} ',
    '{"stream":"btcusdt@aggTrade","data":{' + _DATA,
]


def _answer(raw: str | bytes) -> object:
    try:
        return parse_frame(raw)
    except FrameError as exc:
        msg = str(exc)
        return ("FrameError", "not JSON" if msg.startswith("not JSON") else msg)


@pytest.mark.parametrize("raw", FRAMES)
def test_fast_path_answers_as_the_general_path(raw: str) -> None:
    got, want = _answer(raw), _answer(raw.encode("utf-8", "surrogatepass"))
    assert got == want
    if got.__class__ is tuple and got[0] != "FrameError":  # same values, same types
        assert [type(v) for v in got[0]] == [type(v) for v in want[0]]  # type: ignore[index]


def _reference(raw: str):
    try:
        return parse_frame(raw.encode())
    except FrameError:
        return None


def test_a_batch_parses_as_its_frames_do_or_not_at_all() -> None:
    """``parse_trade_frames`` (the feed's batch path) gives every frame's tick in order when each
    frame is a good aggTrade; a batch with any frame the general path refuses or words otherwise,
    two frames run together or one frame split in two is handed back (None) for frame-by-frame."""
    good = [f for f in FRAMES if parse_trade_frames([f]) is not None]
    assert len(good) >= 5
    for f in good:  # what the batch path takes, the general path takes alike
        assert parse_trade_frames([f]) == ([_reference(f)[0]], _reference(f)[1]), f
    ticks, newest = parse_trade_frames(good)
    assert ticks == [_reference(f)[0] for f in good] and newest == max(_reference(f)[1] for f in good)
    for bad in FRAMES:
        if bad not in good:
            assert parse_trade_frames([*good, bad]) is None, bad
    half = len(_REAL) // 2
    assert parse_trade_frames([_REAL[:half], _REAL[half:], _REAL]) is None
    assert parse_trade_frames([_REAL + "," + _REAL, _REAL]) is None
    assert parse_trade_frames([_REAL[:half], _REAL[half:], _REAL + " " + _REAL]) is None
    assert parse_trade_frames([_REAL[:half] + "}", "{" + _REAL[half:], _REAL + _REAL]) is None
    two_lines = _REAL.replace(",", ",\n", 1)  # one frame, pretty-printed: still one frame
    assert parse_trade_frames([two_lines, _REAL]) == ([_reference(_REAL)[0]] * 2, _reference(_REAL)[1])

"""The broker's versioned messages: exact round trips (NaN included), named refusals."""

from __future__ import annotations

import math

import orjson
import pytest

from quantpanel.alerts.engine import Alert
from quantpanel.errors import FrameError
from quantpanel.models import Bar, FundingEvent, Liquidation, MarkPrice, OpenInterest, Quote
from quantpanel.pipeline.codec import (
    ALERTS,
    BARS,
    MESSAGE_VERSION,
    VIEW_FUNDING_KEPT,
    decode_message,
    decode_view,
    encode_message,
    encode_view,
)
from quantpanel.pipeline.market import MarketView


def test_bars_and_alerts_round_trip_exactly_with_nan_restored():
    bars = [Bar("BTCUSDT", "1s", 1_723_161_240_000, 61_000.5, 61_001.0, 60_999.9, 61_000.1, 1.25, 7.0,
                61_000.3, math.nan, True),
            Bar("ETHUSDT.SPOT", "1m", 1_723_161_240_000, 2_600.0, 2_601.0, 2_599.0, 2_600.5, 3.0, math.nan,
                math.nan, 1.5, False)]
    back = BARS.load(decode_message(encode_message("bars", BARS.dump(bars)), "bars"))
    assert [(b.symbol, b.time, b.close, b.closed) for b in back] == [(b.symbol, b.time, b.close, b.closed) for b in bars]
    assert math.isnan(back[0].buy_volume) and math.isnan(back[1].trades) and back[1].buy_volume == 1.5
    alert = Alert(1_723_161_240_000, 3, "z", "zscore", "BTCUSDT/ETHUSDT", "1s", math.nan, 2.0, "outside ±2")
    (a,) = ALERTS.load(decode_message(encode_message("alerts", ALERTS.dump([alert])), "alerts"))
    assert a.rule_id == 3 and a.subject == "BTCUSDT/ETHUSDT" and math.isnan(a.value)


def test_a_market_view_round_trips_with_the_newest_funding_only():
    v = MarketView("BTCUSDT", quote=Quote("BTCUSDT", 5, 9, 100.0, 1.0, 100.5, 2.0),
                   mark=MarkPrice("BTCUSDT", 6, 100.2, 100.1, math.nan, 1e-4, 28_800_000),
                   open_interest=OpenInterest("BTCUSDT", 7, 1e6),
                   funding=[FundingEvent("BTCUSDT", i, 1e-4 * i, math.nan) for i in range(20)])
    v.liquidations.append(Liquidation("BTCUSDT", 8, "SELL", 0.5, 99.0, 99.1, "FILLED", 0.5, 0.5))
    back = decode_view(decode_message(encode_message("view", encode_view(v)), "view"))
    assert back.quote == v.quote and back.open_interest == v.open_interest and back.open_interest_before is None
    assert back.mark.mark == 100.2 and math.isnan(back.mark.settle)
    assert [e.time for e in back.funding] == list(range(20 - VIEW_FUNDING_KEPT, 20))
    assert list(back.liquidations) == list(v.liquidations) and back.quoted_spread_bps == v.quoted_spread_bps
    assert math.isnan(back.spot_price)


@pytest.mark.parametrize(("data", "kind", "error"), [
    (orjson.dumps({"v": MESSAGE_VERSION + 1, "k": "bars", "d": []}), "bars",
     f"broker message version {MESSAGE_VERSION + 1}, this build reads version {MESSAGE_VERSION}"),
    (encode_message("alerts", []), "bars", "broker message of kind 'alerts' where 'bars' was expected"),
    (b"\xff garbage", "bars", "not a quantpanel broker message"),
    (orjson.dumps({"v": 1, "k": "bars"}), "bars", "not a quantpanel broker message"),
])
def test_a_message_of_another_version_or_kind_is_refused_by_name(data, kind, error):
    with pytest.raises(FrameError, match=error):
        decode_message(data, kind)


def test_a_row_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="Bar row of 3 fields, expected 12"):
        BARS.load([["BTCUSDT", "1s", 5]])

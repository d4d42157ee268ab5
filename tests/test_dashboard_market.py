"""The futures-native cards and the Backtest view's funding, without a browser: the cards show a
MarketView's values, the Pair tab's carry is ``pair_carry`` of both legs' marks and rates, and the
Backtest view charges exactly what ``backtest(..., **pair_costs(...).kwargs)`` does on a stored
history with (SIMULATED) funding events and real quotes."""

from __future__ import annotations

import math

import pytest

from quantpanel.analytics import pair_carry
from quantpanel.analytics.backtest import backtest, pair_signal
from quantpanel.config import Config
from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.market_cards import CarryCard, MarketCards
from quantpanel.dashboard.pair_view import PairView
from quantpanel.dashboard.strategy_view import StrategyView
from quantpanel.models import FundingEvent, Liquidation, MarkPrice, OpenInterest, Quote
from quantpanel.pipeline.history import pair_closes
from quantpanel.pipeline.market import MarketView
from quantpanel.pipeline.pair_costs import pair_costs
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.store import Store

from tests.analytics.test_funding_cli import db  # noqa: F401 (the fixture: real trades and quotes, simulated funding)

T = 1_723_161_300_000


def _view() -> MarketView:
    v = MarketView("BTCUSDT")
    v.quote = Quote("BTCUSDT", T, 1, 61_800.2, 2.5, 61_800.3, 1.25)
    v.mark = MarkPrice("BTCUSDT", T, 61_801.0, 61_790.0, 61_790.0, 0.000125, T + 125_000)
    v.open_interest_before = OpenInterest("BTCUSDT", T - 60_000, 80_000.0)
    v.open_interest = OpenInterest("BTCUSDT", T, 80_800.0)
    v.funding.append(FundingEvent("BTCUSDT", T - 60_000, -0.0002, math.nan))
    v.liquidations.append(Liquidation("BTCUSDT", T, "SELL", 0.5, 61_000.0, 61_100.0, "FILLED", 0.5, 0.5))
    return v


def test_market_cards_show_the_views_values_and_say_what_is_simulated():
    cards = MarketCards("BTCUSDT")
    none = cards.texts(None, simulated=False)
    assert all("—" in t for t in none.values())
    got = cards.texts(_view(), simulated=True)
    assert "61,801" in got["mark"] and "SIMULATED" in got["mark"]
    assert "+0.0125 %" in got["funding"] and "2m 05s" in got["funding"] and "-0.0200 %" in got["funding"]
    bps = (61_800.3 - 61_800.2) / 61_800.25 * 1e4
    assert f"{bps:.3f} bps" in got["spread"] and "real bookTicker" in got["spread"]
    assert "61,800.2 / 61,800.3" in got["bidask"]
    assert "80,800" in got["oi"] and "+1.000 %" in got["oi"]
    cards.refresh(_view(), simulated=False)
    assert "SIMULATED" not in cards.panes["funding"].object


def test_carry_card_is_pair_carry_of_both_legs():
    a, b = _view(), MarketView("ETHUSDT")
    b.mark = MarkPrice("ETHUSDT", T, 2_680.0, 2_679.0, 2_679.0, -0.0003, T + 125_000)
    card = CarryCard()
    card.refresh("BTCUSDT", "ETHUSDT", a, b, 23.0, simulated=False)
    want = pair_carry(1.0, 61_801.0, 0.000125, -23.0, 2_680.0, -0.0003)
    assert card.carry == pytest.approx(want, rel=1e-12) and want < 0
    assert f"{want:+,.6g}" in card.pane.object and f"{-want:+,.6g}" in card.pane.object
    card.refresh("BTCUSDT", "ETHUSDT", a, None, 23.0, simulated=False)
    assert math.isnan(card.carry)


@pytest.fixture
def views(db):  # noqa: F811
    cfg = Config.model_validate({"storage": {"db_path": str(db)}, "windows": {"zscore": 30}})
    runtime = Runtime(cfg, source="replay")
    runtime.open(db)
    hub = Hub(runtime, buffer_bars=50)
    pair = PairView(hub, a="ETHUSDT", b="BTCUSDT", window=30, entry=1.0, exit=0.0)
    return pair, StrategyView(hub, pair)


async def test_backtest_view_charges_the_stored_funding_and_half_spread(db, views):  # noqa: F811
    _, view = views
    with Store(db, readonly=True) as store:
        y, x = pair_closes(store, "ETHUSDT", "BTCUSDT", "1s", None, None)
        costs = pair_costs(store, "ETHUSDT", "BTCUSDT", "1s", y, x, funding="auto", slippage_model="half_spread")
    sig = pair_signal(y, x, mode="ols", window=30)
    ref = backtest(y, x, sig.z, sig.beta, entry=1.0, exit=0.0, fee_bps=4.0, bars_per_year=365 * 86_400,
                   **costs.kwargs)
    view.slippage_model = "half_spread"
    await view.run_backtest()
    assert not view.error.visible, view.error.object
    r = view.result
    assert r.funding_included and r.funding == pytest.approx(ref.funding, abs=1e-12) and r.funding != 0
    assert r.slippage == pytest.approx(ref.slippage, rel=1e-12) and r.slippage_model == "half_spread"
    assert view.cards["funding"].value == pytest.approx(ref.funding, abs=1e-12)
    assert "Funding included" in view.costs_note.object
    assert list(view.trades_table.value["funding"]) == pytest.approx([t.funding for t in ref.trades], abs=1e-12)
    view.funding = "off"
    await view.run_backtest()
    assert view.result.funding == 0 and "Funding off" in view.costs_note.object

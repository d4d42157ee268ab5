"""The futures-native market data in the dashboard (no browser): the Market tab's cards, mark line
and liquidation markers show what the pipeline was fed; the Pair tab's carry; adding and removing a
symbol at runtime reaches every session; the Backtest tab charges the stored funding events
exactly as ``backtest(..., **pair_costs(...).kwargs)`` does."""

from __future__ import annotations

import asyncio
import math

import holoviews as hv
import numpy as np
import pandas as pd
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent, ColumnsStreamedEvent
from bokeh.models import ColumnDataSource

from quantpanel.analytics import pair_carry, quoted_spread_bps
from quantpanel.analytics.backtest import backtest, pair_signal, trades_frame
from quantpanel.config import Config
from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.market_cards import LIQUIDATION_NOTE, CarryCard, countdown
from quantpanel.dashboard.pair_view import PairView
from quantpanel.dashboard.strategy_view import StrategyView
from quantpanel.dashboard.symbol_view import SymbolView
from quantpanel.dashboard.views import Dashboard, StatusStrip
from quantpanel.models import FundingEvent, Liquidation, MarketBatch, MarkPrice, OpenInterest, Quote
from quantpanel.pipeline.history import pair_closes
from quantpanel.pipeline.market import MarketData
from quantpanel.pipeline.pair_costs import pair_costs
from quantpanel.pipeline.runtime import Runtime, Status
from quantpanel.storage.store import Store

from tests.analytics.test_analyze_cli import qp
from tests.conftest import USDM_TRADES
from tests.test_pipeline import _config, wait_for

pytestmark = pytest.mark.timeout(120)

T0 = 1_900_000_000_000  # far after the recording's (unrebased) times: nothing of the replay overlaps


def text(pane) -> str:
    return pane.object


# -- a started runtime: what is pushed into the pipeline shows --------------------------------------
@pytest.fixture
async def hub(tmp_path):
    rt = Runtime(_config(tmp_path, source="replay", **{"alerts.rules": [], "feed.open_interest_s": 0}))
    hub = Hub(rt, buffer_bars=50)
    await rt.start()
    await wait_for(lambda: rt.status().ticks == 35_389)  # the recording (speed 0, no loop) is over
    yield hub
    await rt.stop()


async def test_market_cards_mark_line_and_markers_show_the_batches_pushed_into_the_pipeline(hub):
    # SOLUSDT is in no recording: only what this test pushes reaches its view
    view = SymbolView(hub, symbol="SOLUSDT", timeframe="1s")
    assert "no mark price yet" in text(view.market.panes["mark"]) and "no quote yet" in text(view.market.panes["spread"])
    emit = hub.runtime.ingestion.pipeline.emit
    emit(MarketBatch(quotes=(Quote("SOLUSDT", T0, 1, 150.10, 3.0, 150.13, 2.5),),
                     marks=(MarkPrice("SOLUSDT", T0, 150.12, 150.11, 150.0, 1.25e-4, T0 + 185_000),),
                     liquidations=(Liquidation("SOLUSDT", T0 + 300, "SELL", 40.0, 149.9, 150.0, "FILLED", 40.0, 40.0),)))
    hub.runtime.ingestion.market.on_open_interest([OpenInterest("SOLUSDT", T0, 1_000.0)])
    hub.runtime.ingestion.market.on_open_interest([OpenInterest("SOLUSDT", T0 + 60_000, 1_012.5)])
    view.pull()
    cards = {k: text(p) for k, p in view.market.panes.items()}
    assert "150.12" in cards["mark"] and "SIMULATED" in cards["mark"]  # the replay's marks are simulated
    assert "+0.0125 %" in cards["funding"] and "next funding in <span class='qp-countdown'>3m 05s</span>" in cards["funding"]
    assert f"{quoted_spread_bps(150.10, 150.13):.3f} bps" in cards["spread"] and "SIMULATED" not in cards["spread"]
    assert "150.1 / 150.13" in cards["bidask"]
    assert "1,012.5" in cards["oi"] and "+1.250 %" in cards["oi"] and "SIMULATED" in cards["oi"]
    assert LIQUIDATION_NOTE in text(view.note) and "SIMULATED liquidations" in text(view.note)
    liq = view.liquidations.data
    assert list(liq["liq_price"]) == [150.0] and list(liq["liq_notional"]) == [6_000.0] and list(liq["liq_side"]) == [0.0]

    # a second mark a bar later closes the first bar's mark point; the countdown follows the marks' clock
    emit(MarketBatch(marks=(MarkPrice("SOLUSDT", T0 + 1_000, 150.20, 150.2, 150.0, -2e-5, T0 + 185_000),)))
    view.pull()
    assert "-0.0020 %" in text(view.market.panes["funding"]) and "3m 04s" in text(view.market.panes["funding"])
    assert list(view.marks.data["mark"]) == [150.12]
    assert list(view.marks.data["time"]) == [pd.Timestamp(T0, unit="ms")]
    # a funding time passed: the event is told beside the predicted rate
    emit(MarketBatch(marks=(MarkPrice("SOLUSDT", T0 + 184_000, 150.25, 150.3, 150.0, -2e-5, T0 + 185_000),
                            MarkPrice("SOLUSDT", T0 + 186_000, 150.3, 150.3, 150.0, 1e-4, T0 + 245_000))))
    view.pull()
    assert "last -0.0020 %" in text(view.market.panes["funding"]) and "+0.0100 %" in text(view.market.panes["funding"])
    assert list(view.marks.data["mark"]) == [150.12, 150.20, 150.25]


async def test_pair_carry_is_the_long_spreads_at_the_live_beta_of_both_legs_rates(hub):
    pair = PairView(hub, a="BTCUSDT", b="ETHUSDT", window=30)
    pair.pull()
    pair.pull()
    beta = hub.pair_hedge(pair.spec).beta
    assert math.isfinite(beta)
    hub.runtime.ingestion.pipeline.emit(MarketBatch(marks=(
        MarkPrice("BTCUSDT", T0, 60_000.0, 60_000.0, 0.0, 1e-4, T0 + 60_000),
        MarkPrice("ETHUSDT", T0, 2_500.0, 2_500.0, 0.0, -5e-5, T0 + 120_000))))
    pair.pull()
    want = pair_carry(1.0, 60_000.0, 1e-4, -beta, 2_500.0, -5e-5)
    assert pair.carry.carry == pytest.approx(want)
    shown = text(pair.carry.pane)
    assert f"{want:+,.6g}" in shown and f"{-want:+,.6g}" in shown  # long, and short = the opposite
    assert "+0.0100 %" in shown and "-0.0050 %" in shown and "next in 1m 00s" in shown and "2m 00s" in shown


async def test_adding_and_removing_a_symbol_reaches_every_session(tmp_path):
    rt = Runtime(_config(tmp_path, source="replay", symbols=["BTCUSDT"],
                         **{"alerts.rules": [], "replay.speed": 4, "replay.loop": True}))
    hub = Hub(rt, buffer_bars=50)
    await rt.start()
    try:
        adder, other = Dashboard(hub), Dashboard(hub)
        assert adder.param.symbols.objects == ["BTCUSDT"] and adder.symbols == ["BTCUSDT"]
        controls = adder.symbol_controls
        controls.text.value = "FOOUSDT"
        await controls.add()
        assert controls.error.visible and "FOOUSDT is not a USD-M futures symbol" in controls.error.object
        assert "\n" not in controls.error.object
        controls.text.value = "btc usdt"
        await controls.add()
        assert "is not a Binance symbol" in controls.error.object

        controls.text.value = "ethusdt"
        await controls.add()
        assert not controls.error.visible and controls.text.value == ""
        assert rt.symbols == ["BTCUSDT", "ETHUSDT"] and hub.config.symbols == ("BTCUSDT", "ETHUSDT")
        assert adder.symbols == ["BTCUSDT", "ETHUSDT"] and "ETHUSDT" in adder._views  # shown at once
        other.pull()  # another session: offered, not forced on it
        assert other.param.symbols.objects == ["BTCUSDT", "ETHUSDT"] and other.symbols == ["BTCUSDT"]
        assert other.alerts.param.leg_a.objects == ["BTCUSDT", "ETHUSDT"]
        assert list(other.symbol_controls.followed.options) == ["BTCUSDT", "ETHUSDT"]
        eth = adder._views["ETHUSDT"]
        await wait_for(lambda: eth.pull() > 0 or len(eth.buffer.data) > 3)  # live candles of the new symbol

        controls.followed.value = "ETHUSDT"
        await controls.remove()
        assert rt.symbols == ["BTCUSDT"] and "stopped following" in controls.message.object
        adder.pull()
        other.pull()
        assert adder.symbols == ["BTCUSDT"] and other.param.symbols.objects == ["BTCUSDT"]
        controls.followed.value = "BTCUSDT"
        await controls.remove()
        assert "the last symbol cannot be removed" in controls.error.object
    finally:
        await rt.stop()


# -- without a runtime --------------------------------------------------------------------------------
def test_carry_card_and_countdown():
    data = MarketData(("1s",))
    data.on_batch(MarketBatch(marks=(MarkPrice("A", 0, 100.0, 100.0, 0.0, 2e-4, 3_723_000),
                                     MarkPrice("B", 0, 50.0, 50.0, 0.0, 1e-4, 60_000))))
    card = CarryCard()
    card.refresh("A", "B", data.views["A"], data.views["B"], 1.5, simulated=False)
    assert card.carry == pytest.approx(-(100 * 2e-4 - 1.5 * 50 * 1e-4))  # long A pays more than short B gets
    assert "paid" in card.pane.object and "1h 02m 03s" in card.pane.object
    card.refresh("A", "B", data.views["A"], None, 1.5, simulated=True)
    assert math.isnan(card.carry) and "no mark price yet" in card.pane.object and "SIMULATED" in card.pane.object
    assert (countdown(-5), countdown(59_999), countdown(61_000)) == ("0s", "59s", "1m 01s")


def test_status_strip_names_silent_streams():
    strip = StatusStrip()
    base = Status("LIVE", "x", False, "connected", 1.0, 0.1, 10, 0, 0, "db", "")
    strip.refresh(base)
    assert "silent" not in strip._html.object
    strip.refresh(Status(**{**base.__dict__, "silent_streams": ("btcusdt@bookTicker",)}))
    assert "silent streams: btcusdt@bookTicker" in strip._html.object and "wrong route?" in strip._html.object


def test_new_mark_points_and_liquidations_reach_a_drawn_chart_as_patches_not_re_renders(renders):
    hub = Hub(Runtime(Config()), buffer_bars=20)
    sym = "BTCUSDT"
    marks = [MarkPrice(sym, T0 + i * 1000, 100.0 + i, 100.0, 0.0, 1e-4, T0 + 600_000) for i in range(4)]
    hub.market.apply(MarketBatch(marks=tuple(marks[:3])))
    view = SymbolView(hub, symbol=sym, timeframe="1s")
    assert list(view.marks.data["mark"]) == [100.0, 101.0]  # closed mark points, before it is drawn
    doc = Document()
    doc.add_root(view.chart.pane.get_root(doc))
    view.pull()  # the session's first pull: the (empty) candle sources set once
    sent = view.chart.streamed
    events: list = []
    doc.on_change(events.append)
    renders.clear()
    hub.market.apply(MarketBatch(marks=(marks[3],), liquidations=(
        Liquidation(sym, T0 + 3_500, "BUY", 2.0, 104.0, 103.5, "FILLED", 2.0, 2.0),)))
    view.pull()
    assert renders == []  # no HoloViews re-render: patches of the mark line and the markers
    streamed = [e for e in events if isinstance(e, ColumnsStreamedEvent)]
    assert [list(e.data["mark"]) for e in streamed if "mark" in e.data] == [[102.0]]
    (replaced,) = [e for e in events if isinstance(e, ColumnDataChangedEvent)]
    assert isinstance(replaced.model, ColumnDataSource) and list(replaced.model.data["liq_price"]) == [103.5]
    assert view.chart.refreshed == 0 and view.chart.streamed - sent == 2
    assert isinstance(view.chart.pane.object, hv.Layout)


# -- the Backtest tab's funding on a stored history -----------------------------------------------
@pytest.fixture(scope="module")
def funded_db(tmp_path_factory):
    """The recording's ticks and bars, and funding events of both legs every 60 s (via the Store)."""
    path = tmp_path_factory.mktemp("funded") / "q.db"
    assert qp("import", "--db", str(path), str(USDM_TRADES)).returncode == 0
    with Store(path) as store:
        y, _ = pair_closes(store, "ETHUSDT", "BTCUSDT", "1s", None, None)
        first, last = (int(t.value // 1_000_000) for t in (y.index[0], y.index[-1]))
        times = range(first - first % 60_000 + 60_000, last, 60_000)
        rng = np.random.default_rng(7)
        for sym, mark in (("ETHUSDT", 2_600.0), ("BTCUSDT", float("nan"))):  # BTC: priced at bar closes
            store.insert_funding([FundingEvent(sym, t, float(r), mark)
                                  for t, r in zip(times, rng.normal(2e-4, 3e-4, len(times)), strict=False)])
    return path


@pytest.fixture
def strategy(funded_db):
    cfg = Config.model_validate({"storage": {"db_path": str(funded_db)}, "windows": {"zscore": 30}})
    runtime = Runtime(cfg, source="replay")
    runtime.open(funded_db)
    hub = Hub(runtime, buffer_bars=50)
    pair = PairView(hub, a="ETHUSDT", b="BTCUSDT", window=30, entry=1.0, exit=0.0)
    return StrategyView(hub, pair)


def reference(db, **costs):
    with Store(db, readonly=True) as store:
        y, x = pair_closes(store, "ETHUSDT", "BTCUSDT", "1s", None, None)
        pc = pair_costs(store, "ETHUSDT", "BTCUSDT", "1s", y, x, **costs)
    sig = pair_signal(y, x, mode="ols", window=30)
    return y, pc, backtest(y, x, sig.z, sig.beta, entry=1.0, exit=0.0, fee_bps=4.0, bars_per_year=365 * 86_400,
                           **pc.kwargs)


async def test_backtest_funding_card_is_the_backtests_funding_with_pair_costs(funded_db, strategy):
    view = strategy
    assert (view.funding, view.slippage_model) == ("auto", "fixed")  # the config's defaults
    await view.run_backtest()
    assert not view.error.visible, view.error.object
    y, pc, ref = reference(funded_db)
    assert pc.funding_included and ref.funding_included and ref.funding != 0
    assert view.cards["funding"].value == pytest.approx(ref.funding, abs=1e-12)
    assert view.cards["total_pnl"].value == pytest.approx(ref.total_pnl, abs=1e-12)
    assert view.cards["slippage"].value == pytest.approx(ref.slippage)
    assert view.cards["funding"].label == "funding (− = paid)"
    assert view.costs_note.object.startswith("**Funding included**")
    csv = pd.read_csv(view.downloads[0].callback())
    assert csv["funding"].to_numpy() == pytest.approx(trades_frame(ref, y.index)["funding"].to_numpy(), abs=1e-12)
    assert csv["funding"].abs().sum() > 0

    view.funding = "off"
    await view.run_backtest()
    _, _, off = reference(funded_db, funding="off")
    assert view.result.funding == 0 and not view.result.funding_included
    assert view.cards["total_pnl"].value == pytest.approx(off.total_pnl, abs=1e-12)
    assert view.cards["funding"].label == "funding (off)" and "Funding off**: funding set to off" in view.costs_note.object

    view.param.update(funding="auto", slippage_model="half_spread", slippage_bps=1.0)
    await view.run_backtest()  # no quote bars stored: every leg-trade falls back to the fixed bps
    assert view.result.slippage_model == "half_spread" and view.result.quote_fallbacks > 0
    assert f"{view.result.quote_fallbacks} leg-trades had no stored quote" in view.costs_note.object


async def test_backtest_says_why_funding_is_off(tmp_path):
    path = tmp_path / "q.db"
    proc = await asyncio.to_thread(qp, "import", "--db", str(path), str(USDM_TRADES))
    assert proc.returncode == 0
    with Store(path) as store:
        y, _ = pair_closes(store, "ETHUSDT", "BTCUSDT", "1s", None, None)
        store.insert_funding([FundingEvent("ETHUSDT", int(y.index[10].value // 1_000_000), 1e-4, 2_600.0)])
    cfg = Config.model_validate({"storage": {"db_path": str(path)}})
    runtime = Runtime(cfg, source="replay")
    runtime.open(path)
    hub = Hub(runtime, buffer_bars=50)
    view = StrategyView(hub, PairView(hub, a="ETHUSDT", b="BTCUSDT", window=30, entry=1.0))
    await view.run_backtest()
    assert view.result is not None and not view.result.funding_included
    assert "Funding off**: no funding events stored for BTCUSDT in the bars' span" in view.costs_note.object

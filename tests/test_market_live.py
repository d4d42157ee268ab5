"""The futures-native data through the server's runtime, on the local exchange: real quotes and spot
trades of the bundled minutes (SIMULATED marks, funding, liquidations and open interest), the spot
twin's bars and the live basis, market alert rules, and symbols added and removed at runtime."""

from __future__ import annotations

import pytest

from quantpanel.alerts.engine import ALERT_COLUMNS
from quantpanel.analytics import basis_bps
from quantpanel.feeds.binance_market import to_quote
from quantpanel.feeds.recording import load_quotes, load_recording, to_tick
from quantpanel.models import SPOT_SUFFIX, Tick
from quantpanel.pipeline.bars import build_bars
from quantpanel.pipeline.history import load_bars
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.store import Store

from tests.conftest import DATA
from tests.test_pipeline import _config, wait_for

pytestmark = pytest.mark.timeout(120)
QUOTES = DATA / "binance-usdm-btcusdt-ethusdt-2024-08-08.bookticker.gz"
SPOT = DATA / "binance-spot-btcusdt-ethusdt-2024-08-08.trades.gz"


def _market_config(tmp_path, **over):
    return _config(tmp_path, **{"replay.quotes": str(QUOTES), "replay.spot": str(SPOT),
                                "feed.spot_symbols": ["BTCUSDT", "ETHUSDT"], "storage.keep_quotes": True,
                                "alerts.rules": [{"name": "wide BTC quote", "metric": "quoted_spread_bps",
                                                  "symbol": "BTCUSDT", "op": ">", "threshold": 0.01},
                                                 {"name": "BTC basis", "metric": "basis_bps",
                                                  "symbol": "BTCUSDT", "op": "<", "threshold": 1e6}]},
                   **over)


async def test_replay_feeds_quotes_spot_twins_basis_and_market_alerts(tmp_path):
    rt = Runtime(_market_config(tmp_path), source="replay")
    await rt.start()
    try:
        ex = rt._exchange
        assert ex is not None
        await wait_for(ex.done.is_set, 60)
        sent = ex.stats.market_frames  # a pass ends with its last futures trade: so does what is sent
        spot_feed, quotes_feed = rt.ingestion.spot_feed, rt.ingestion.quotes_feed
        assert spot_feed is not None and quotes_feed is not None
        await wait_for(lambda: spot_feed.stats.ticks == sent["spot"] and quotes_feed.stats.quotes == sent["bookTicker"])
        await wait_for(lambda: rt.ingestion.writer.stats.quotes_written == sent["bookTicker"])
        quotes = load_quotes(QUOTES)
        spot = load_recording(SPOT)
        assert sent["spot"] > 0.99 * len(spot.trades) and sent["bookTicker"] > 0.99 * len(load_quotes(QUOTES))
        spot = type(spot)(spot.trades[:sent["spot"]], spot.source)
        views = rt.ingestion.market.views
        cut = ex.recording.trades[-1].time  # nothing after the last futures trade is sent
        for sym in ("BTCUSDT", "ETHUSDT"):
            last_quote = to_quote([q for q in quotes if q.symbol == sym and q.time <= cut][-1])
            assert views[sym].quote == last_quote
            last_spot = float([t for t in spot.trades if t.symbol == sym][-1].price)
            assert views[sym].spot_price == last_spot
            mid = (last_quote.bid + last_quote.ask) / 2
            assert views[sym].basis_bps == pytest.approx(basis_bps(mid, last_spot), rel=1e-12)
            assert views[sym].mark is not None and views[sym].open_interest is not None
        assert rt.rules.alerting.fired >= 2  # each rule fires once, then waits to re-arm
    finally:
        await rt.stop()
    with Store(tmp_path / "replay.db") as store:
        # the spot twins' bars are the spot trades' bars, under SYMBOL.SPOT
        ticks = [Tick(t.symbol + SPOT_SUFFIX, *to_tick(t)[1:]) for t in spot.trades]
        want = build_bars(ticks, ["1m"], include_forming=True)[0]  # the last closes by the clock
        for sym in ("BTCUSDT.SPOT", "ETHUSDT.SPOT"):
            mine = [b for b in want if b.symbol == sym]
            got = [b for b in load_bars(store, sym, "1m") if b.closed]
            assert len(mine) >= 5 and [(b.time, b.close, b.volume) for b in got] == [
                (b.time, b.close, b.volume) for b in mine]
        stored = store.read_quotes("BTCUSDT") + store.read_quotes("ETHUSDT")
        assert len(stored) == sent["bookTicker"] and set(stored) <= {to_quote(q) for q in quotes}
        fired = {(r[ALERT_COLUMNS.index("rule")], r[ALERT_COLUMNS.index("metric")]) for r in store.read_alerts()}
    assert {("wide BTC quote", "quoted_spread_bps"), ("BTC basis", "basis_bps")} <= fired


async def test_a_symbol_added_at_runtime_streams_is_remembered_and_removed(tmp_path):
    cfg = _config(tmp_path, symbols=["BTCUSDT"], **{"replay.speed": 3, "replay.loop": True})
    rt = Runtime(cfg, source="replay")
    seen: list[tuple[str, bool]] = []
    rt.on_symbols(lambda sym, history: seen.append((sym, history is not None)))
    await rt.start()
    try:
        with pytest.raises(ValueError, match="NOPEUSDT is not a USD-M futures symbol"):
            await rt.add_symbol("nopeusdt")
        with pytest.raises(ValueError, match="not a Binance symbol"):
            await rt.add_symbol("eth/usdt")
        assert await rt.add_symbol(" ethusdt ") == "ETHUSDT"
        assert rt.symbols == ["BTCUSDT", "ETHUSDT"] and rt.config.symbols == ("BTCUSDT", "ETHUSDT")
        before = rt.ingestion.writer.stats.ticks_written
        await wait_for(lambda: any(k[0] == "ETHUSDT" for k in rt.ingestion.pipeline.bar_state.series), 20)
        await wait_for(lambda: rt.ingestion.market.views.get("ETHUSDT") is not None
                       and rt.ingestion.market.views["ETHUSDT"].mark is not None, 20)
        assert rt.ingestion.writer.stats.ticks_written > before
        assert seen == [("ETHUSDT", True)]
    finally:
        await rt.stop()
    with Store(tmp_path / "replay.db") as store:
        assert store.watchlist() == ["ETHUSDT"]
        assert store.tick_count("ETHUSDT") > 0
    rt2 = Runtime(cfg, source="replay")  # a restart follows the watch list
    await rt2.start()
    try:
        assert rt2.symbols == ["BTCUSDT", "ETHUSDT"]
        n = rt2.ingestion.writer.stats.ticks_written
        await rt2.remove_symbol("ETHUSDT")
        assert rt2.symbols == ["BTCUSDT"] and "ethusdt@aggTrade" not in rt2.ingestion.feed.streams()
        with pytest.raises(ValueError, match="last symbol"):
            await rt2.remove_symbol("BTCUSDT")
        assert rt2.ingestion.writer.stats.ticks_written >= n
    finally:
        await rt2.stop()
    with Store(tmp_path / "replay.db") as store:
        assert store.watchlist() == []

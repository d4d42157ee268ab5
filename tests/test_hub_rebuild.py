"""Late fills rebuild stored bars; the hub's buffered copies follow, so every session sees the
rebuilt values without a reload (issue 13, item 9)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from quantpanel.dashboard.hub import Hub
from quantpanel.pipeline.backfilling import make_backfill
from quantpanel.pipeline.bars import BarUpdate, build_bars
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

from tests.test_pipeline import _config

pytestmark = pytest.mark.timeout(60)


def test_rebuilt_bars_replace_the_buffered_ones_and_reset_every_reader(tmp_path, usdm_ticks):
    bars, _ = build_bars(usdm_ticks, ["1s"], include_forming=False)
    btc = [b for b in bars if b.symbol == "BTCUSDT"]
    hub = Hub(Runtime(_config(tmp_path)), buffer_bars=100)
    woken = []
    hub.subscribe(lambda: woken.append(1) or True)
    hub.apply(BarUpdate(closed=tuple(btc[:80])))
    seen = hub.since("BTCUSDT", "1s", None)  # a session holding what the hub had
    assert not hub.since("BTCUSDT", "1s", seen.seq).reset
    fixed = [replace(b, close=b.close + 1, volume=b.volume + 2) for b in btc[70:75]]
    hub.rebuilt([*fixed, *btc[75:78]])  # a rebuild rewrites some bars with new values, some unchanged
    again = hub.since("BTCUSDT", "1s", seen.seq)
    assert again.reset and again.closed[70:75] == fixed and again.closed[:70] == btc[:70]
    assert woken == [1, 1]  # the update, then the rebuild: sessions pull at once
    assert hub.closed_bars("BTCUSDT", "1s")[72] == fixed[2]
    hub.rebuilt(btc[:3])  # same values: nothing to redraw, no reset
    assert not hub.since("BTCUSDT", "1s", again.seq).reset and woken == [1, 1]


async def test_a_late_fill_reports_its_rebuilt_bars(tmp_path, usdm_ticks):
    """The backfill's rebuild (in the writer thread) hands the rewritten bars to ``on_rebuilt``."""
    btc = [t for t in usdm_ticks if t.symbol == "BTCUSDT"]
    cfg = _config(tmp_path)
    db = tmp_path / "late.db"
    cut = btc[:5000] + btc[5100:8000]  # a hole: the live path stored these and closed its bars
    closed, _ = build_bars(cut, cfg.timeframes, include_forming=False)
    with Store(db) as store:
        store.insert_ticks(cut)
        store.upsert_bars(closed)
        store.insert_ticks(btc[5000:5100])  # the late fill arrives
    writer = StoreWriter(db)
    got: list = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_rebuilt(bars):
        got.extend(bars)
        loop.call_soon_threadsafe(done.set)

    backfill = make_backfill(cfg, lambda batch: None, writer, {"BTCUSDT": btc[7999].agg_id}, rest_url="",
                             on_rebuilt=on_rebuilt)
    backfill.on_filled("BTCUSDT", btc[5000].time)
    await asyncio.wait_for(done.wait(), 10)
    writer.close()
    truth, _ = build_bars(btc[:8000], cfg.timeframes, include_forming=False)
    truth = {(b.timeframe, b.time): b for b in truth}
    assert got and all(truth[(b.timeframe, b.time)] == b for b in got)
    assert any(b != c for b in got for c in closed if (c.timeframe, c.time) == (b.timeframe, b.time))

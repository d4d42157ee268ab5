"""The streamz pipeline and the runtime that owns it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from quantpanel.config import load_config
from quantpanel.feeds.exchange import Exchange
from quantpanel.models import TickBatch
from quantpanel.pipeline.bars import Clock, build_bars, initial_state
from quantpanel.pipeline.graph import Pipeline
from quantpanel.pipeline.history import load_bars
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

from tests.conftest import USDM_TRADES

pytestmark = pytest.mark.timeout(60)


async def test_graph_stores_ticks_and_closed_bars_and_publishes_updates(tmp_path, usdm_ticks):
    writer = StoreWriter(tmp_path / "q.db")
    p = Pipeline(initial_state(["1s", "1m"]), writer)
    closed = p.closed.sink_to_list()
    updates = p.updates.sink_to_list()
    for i in range(0, len(usdm_ticks), 333):
        p.emit(TickBatch(tuple(usdm_ticks[i:i + 333]), 0, 0))
    last_t = usdm_ticks[-1].time
    p.emit(Clock(last_t + 60_000 + 250))  # the feed's clock passes the end of every bar
    await asyncio.to_thread(writer.flush, 30)
    writer.close()
    ref, _ = build_bars(usdm_ticks, ["1s", "1m"])
    got = [b for c in closed for b in c]
    key = lambda b: (b.symbol, b.timeframe, b.time)  # noqa: E731
    by_key = {key(b): b for b in got}
    assert len(by_key) == len(got)  # no bar closed twice
    # every bar of the batch builder, identical (its forming bars closed by the clock) ...
    for b in ref:
        assert by_key.pop(key(b)) == replace(b, closed=True)
    # ... plus the empty bars the clock closes after a symbol's last tick, carrying its close
    last_close = {(b.symbol, b.timeframe): b.close for b in ref}
    assert by_key and all(b.trades == 0 and b.close == last_close[(b.symbol, b.timeframe)]
                          and b.time > usdm_ticks[-1].time - 60_000 for b in by_key.values())
    assert any(u.forming for u in updates)
    with Store(tmp_path / "q.db") as store:
        assert store.tick_count() == len(usdm_ticks)
        assert load_bars(store, "BTCUSDT", "1m") == sorted(
            [b for b in got if (b.symbol, b.timeframe) == ("BTCUSDT", "1m")], key=key)
    assert p.bar_state.duplicates == 0


def _config(tmp_path: Path, **over):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"""
symbols: [BTCUSDT, ETHUSDT]
feed:
  # nothing of Binance: in live mode a test names its exchange's URLs; these listen nowhere
  public_ws_url: ws://127.0.0.1:9/public/stream
  rest_url: http://127.0.0.1:9
  connect_timeout_s: 1
  backoff_initial_s: 0.05
  backoff_max_s: 0.2
  batch_interval_ms: 20
replay:
  data: {USDM_TRADES}
  speed: 0
  loop: false
  rebase_to_now: false
storage:
  db_path: live.db
  replay_db_path: replay.db
""")
    return load_config(cfg, over)


async def wait_for(cond, timeout=20.0):
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.05)


async def test_auto_falls_back_to_replay_when_live_is_unreachable(tmp_path):
    cfg = _config(tmp_path, **{"feed.ws_url": "ws://127.0.0.1:9/stream"})  # nothing listens
    rt = Runtime(cfg)
    t0 = time.monotonic()
    await rt.start()
    try:
        assert time.monotonic() - t0 < 5  # a few seconds, not forever
        st = rt.status()
        assert st.source == "REPLAY" and not st.simulated
        assert "real Binance USD-M trades" in st.label
        await wait_for(lambda: rt.status().ticks == 35_389)
        assert rt.status().db_path == str(tmp_path / "replay.db")
        await asyncio.to_thread(rt.ingestion.writer.flush, 30)
    finally:
        await rt.stop()
    assert not (tmp_path / "live.db").exists()  # replayed ticks never touch the live store
    with Store(tmp_path / "replay.db") as store:
        assert store.tick_count() == 35_389


async def test_live_mode_uses_any_binance_compatible_server_and_restarts_warm(tmp_path, usdm_recording):
    async with Exchange(usdm_recording, speed=0) as ex:
        cfg = _config(tmp_path, source="live", **{"feed.ws_url": ex.url})
        rt = Runtime(cfg)
        await rt.start()
        try:
            assert rt.status().source == "LIVE"
            await wait_for(lambda: rt.status().ticks == 35_389)
            await wait_for(lambda: rt.status().ticks_per_s > 0, 2)
        finally:
            await rt.stop()
    with Store(tmp_path / "live.db") as store:
        assert store.tick_count() == 35_389
        expected = load_bars(store, "ETHUSDT", "1s", last=cfg.dashboard.buffer_bars)
    # a restart shows history at once, before any new tick arrives
    rt2 = Runtime(_config(tmp_path, source="live", **{"feed.ws_url": "ws://127.0.0.1:9/stream"}))
    await rt2.start()
    try:
        hist = rt2.ingestion.history[("ETHUSDT", "1s")]
        # stored history counts the last bar closed (its end is past); the live pipeline keeps it
        # forming until its own clock closes it, so a backfill of the outage can still join it
        assert hist[:-1] == expected[:-1] and hist[-1] == replace(expected[-1], closed=False)
        assert len(hist) > 300
        assert rt2.status().state in ("connecting", "backoff")
        assert "cannot connect" in rt2.error
    finally:
        await rt2.stop()


async def test_a_restarted_replay_continues_after_what_is_stored(tmp_path):
    """Regression: a second run replayed ids already in replay.db, so nothing moved."""
    cfg = _config(tmp_path, source="replay", **{"replay.rebase_to_now": True})
    for run in (1, 2, 3):
        rt = Runtime(cfg)
        await rt.start()
        try:
            assert rt.replay.exchange.first_pass == run - 1
            await wait_for(lambda: rt.status().ticks == 35_389)
            await wait_for(lambda: not rt.ingestion.backfill.holding and rt.ingestion.writer.backlog == 0)
            await asyncio.to_thread(rt.ingestion.writer.flush, 30)
            assert rt.ingestion.pipeline.bar_state.duplicates == 0
            assert rt.ingestion.writer.stats.ticks_written == 35_389  # all new to the store
        finally:
            await rt.stop()
    with Store(tmp_path / "replay.db") as store:
        assert store.tick_count() == 3 * 35_389
        bars = load_bars(store, "BTCUSDT", "1m")
        times = [b.time for b in bars]
        assert times == sorted(set(times))
        # the runs follow each other in replayed time: no hole of empty bars between them
        assert len(bars) <= 3 * 8 and sum(b.trades == 0 for b in bars) <= 3
        assert abs(bars[0].time - time.time() * 1000) < 3_600_000  # the first run started now


def test_pass_after_stored_ids(usdm_recording):
    ex = Exchange(usdm_recording)
    lo, hi = usdm_recording.id_spans()["BTCUSDT"]
    assert ex.pass_after({}) == 0
    assert ex.pass_after({"BTCUSDT": lo - 1}) == 0
    assert ex.pass_after({"BTCUSDT": hi}) == 1
    assert ex.pass_after({"BTCUSDT": hi + 1}) == 2  # hi + 1 is the first id of pass 1
    assert ex.pass_after({"BTCUSDT": lo + 2 * (hi - lo + 1)}) == 3

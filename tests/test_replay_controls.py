"""Replay controls on the local exchange and through the runtime's shared pipeline: pause stops the
timeline, resume continues it with nothing skipped, speed changes the rate, a jump (back or forward)
and a replay of stored ticks continue with later times and higher ids, so nothing is stored twice."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from websockets.asyncio.client import connect

from quantpanel.errors import ReplayError
from quantpanel.feeds.exchange import Exchange
from quantpanel.pipeline.history import load_bars
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.store import Store

from tests.test_pipeline import _config, wait_for

pytestmark = pytest.mark.timeout(90)


class Receiver:
    """A bare client on the exchange: every trade it received, as (a, T, s)."""

    def __init__(self) -> None:
        self.trades: list[tuple[int, int, str]] = []

    async def run(self, url: str) -> None:
        async with connect(url + "?streams=btcusdt@aggTrade/ethusdt@aggTrade", compression=None) as ws:
            async for raw in ws:
                d = orjson.loads(raw)["data"]
                self.trades.append((d["a"], d["T"], d["s"]))


async def received_in(rx: Receiver, seconds: float) -> int:
    n = len(rx.trades)
    await asyncio.sleep(seconds)
    return len(rx.trades) - n


async def test_pause_resume_speed_and_jump_on_the_exchange(usdm_recording):
    trades = usdm_recording.trades
    async with Exchange(usdm_recording, speed=1, rebase_to_now=False) as ex:
        rx = Receiver()
        task = asyncio.create_task(rx.run(ex.url))
        try:
            await wait_for(lambda: len(rx.trades) > 20)
            slow = await received_in(rx, 1.5)
            ex.set_speed(20)
            await asyncio.sleep(0.2)
            fast = await received_in(rx, 1.5)
            assert fast > 8 * max(slow, 1), (slow, fast)  # the real recording runs ~100 trades/s

            ex.pause()
            await asyncio.sleep(0.2)  # what was already on the wire
            assert ex.paused and await received_in(rx, 1.0) == 0
            at_pause = len(rx.trades)
            shown = ex.replay_time_ms
            ex.resume()
            await wait_for(lambda: len(rx.trades) > at_pause + 50)
            # nothing skipped across the pause: the ids of each symbol stay contiguous
            for sym in ("BTCUSDT", "ETHUSDT"):
                ids = [a for a, _, s in rx.trades if s == sym]
                expect = [t.agg_id for t in trades if t.symbol == sym][: len(ids)]
                assert ids == expect
            assert ex.replay_time_ms > shown

            # jump back to the start: times go on after the last one sent, ids above all sent
            before = len(rx.trades)
            last_t = max(t for _, t, _ in rx.trades)
            top = {s: max(a for a, _, x in rx.trades if x == s) for s in ("BTCUSDT", "ETHUSDT")}
            ex.jump(trades[0].time)
            await wait_for(lambda: ex.replay_time_ms is not None and ex.replay_time_ms < shown)
            await wait_for(lambda: len(rx.trades) > before + 50)
            after = rx.trades[before:]
            assert min(t for _, t, _ in after) > last_t
            for sym in top:
                assert min(a for a, _, s in after if s == sym) > top[sym]
            assert [t for _, t, _ in rx.trades] == sorted(t for _, t, _ in rx.trades)

            # jump forward: the recording's clock moves on by the jump
            target = trades[len(trades) // 2].time
            ex.jump(target)
            await wait_for(lambda: ex.replay_time_ms >= target)
        finally:
            task.cancel()


async def test_the_end_of_a_recording_waits_for_a_jump(usdm_recording):
    async with Exchange(usdm_recording, speed=0, rebase_to_now=False) as ex:
        rx = Receiver()
        task = asyncio.create_task(rx.run(ex.url))
        try:
            await asyncio.wait_for(ex.done.wait(), 30)
            await wait_for(lambda: len(rx.trades) == len(usdm_recording.trades))
            ex.jump(usdm_recording.trades[-100].time)
            await wait_for(lambda: len(rx.trades) >= len(usdm_recording.trades) + 100)
            ids = [a for a, _, s in rx.trades if s == "BTCUSDT"]
            assert len(ids) == len(set(ids))
        finally:
            task.cancel()


async def test_runtime_replays_a_stored_range_through_the_shared_pipeline(tmp_path):
    cfg = _config(tmp_path, source="replay")
    rt = Runtime(cfg)
    await rt.start()
    try:
        await wait_for(lambda: rt.status().ticks == 35_389, 30)
        await asyncio.to_thread(rt.ingestion.writer.flush, 30)
        spans = await asyncio.to_thread(rt.replay.stored_spans)
        assert [s for s, *_ in spans] == ["BTCUSDT", "ETHUSDT"]
        btc_first, btc_last = spans[0][1], spans[0][2]
        start, end = btc_first + 60_000, btc_first + 120_000
        with Store(tmp_path / "replay.db") as store:
            expect = store.read_ticks("BTCUSDT", start, end + 1)
        # bad requests name what is wrong and change nothing
        for args, words in ((["DOGEUSDT"], "not followed: DOGEUSDT"), ([], "pick symbols")):
            with pytest.raises(ReplayError, match=words):
                rt.replay.replay_stored(args, start, end)
        with pytest.raises(ReplayError, match="ends .* before it starts"):
            rt.replay.replay_stored(["BTCUSDT"], end, start)
        with pytest.raises(ReplayError, match="no stored ticks"):
            rt.replay.replay_stored(["BTCUSDT"], btc_last + 10**9, btc_last + 2 * 10**9)

        n = await asyncio.to_thread(rt.replay.replay_stored, ["BTCUSDT"], start, end)
        assert n == len(expect) > 100
        await wait_for(lambda: rt.status().ticks == 35_389 + n, 30)
        await wait_for(lambda: rt.ingestion.writer.backlog == 0)
        await asyncio.to_thread(rt.ingestion.writer.flush, 30)
        st = rt.status()
        assert start <= st.replay_time_ms <= end
        assert rt.ingestion.pipeline.bar_state.duplicates == 0
    finally:
        await rt.stop()
    with Store(tmp_path / "replay.db") as store:
        got = [t for t in store.read_ticks("BTCUSDT") if t.time > btc_last]
        assert store.tick_count("BTCUSDT") == spans[0][3] + len(expect)
        # the same trades again, in order, later in time and under new ids
        assert [(t.price, t.qty, t.buyer_maker) for t in got] == [(t.price, t.qty, t.buyer_maker) for t in expect]
        assert [t.time - got[0].time for t in got] == [t.time - expect[0].time for t in expect]
        assert min(t.agg_id for t in got) > max(t.agg_id for t in expect)
        times = [b.time for b in load_bars(store, "BTCUSDT", "1s")]
        assert times == sorted(set(times))


async def test_pause_freezes_the_bar_clock_and_the_watchdog(tmp_path):
    cfg = _config(tmp_path, source="replay", **{"replay.speed": 1.0, "feed.silence_timeout_s": 1.0})
    rt = Runtime(cfg)
    await rt.start()
    try:
        await wait_for(lambda: rt.status().ticks > 50, 30)
        rt.replay.pause()
        await asyncio.sleep(0.5)
        closed = rt.ingestion.pipeline.closed.sink_to_list()
        ticks = rt.status().ticks
        await asyncio.sleep(2.5)  # longer than the watchdog's silence timeout
        st = rt.status()
        assert st.paused and st.ticks == ticks
        assert closed == []  # no empty bars are closed while paused: the charts stand still
        assert rt.ingestion.feed.stats.watchdog_reconnects == 0
        rt.replay.resume()
        await wait_for(lambda: rt.status().ticks > ticks + 20, 30)
        await wait_for(lambda: len(closed) > 0, 10)
    finally:
        await rt.stop()


async def test_replay_controls_on_the_live_feed_say_so(tmp_path, usdm_recording):
    async with Exchange(usdm_recording, speed=0) as ex:
        rt = Runtime(_config(tmp_path, source="live", **{"feed.ws_url": ex.url}))
        await rt.start()
        try:
            with pytest.raises(ReplayError, match="live feed"):
                rt.replay.pause()
        finally:
            await rt.stop()

"""Gap detection and REST backfill against the local exchange's real HTTP endpoint: every trade
exactly once, in id order, whatever was lost; 429/5xx answers retried; late fills rebuild bars."""

from __future__ import annotations

import asyncio
import random
import urllib.request

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantpanel.feeds.backfill import Backfill
from quantpanel.feeds.exchange import Exchange, Faults
from quantpanel.feeds.gaps import Gap, Sequencer
from quantpanel.feeds.rest import RestClient
from quantpanel.models import Tick, TickBatch
from quantpanel.pipeline.bars import build_bars
from quantpanel.pipeline.history import rebuild_bars_since
from quantpanel.storage.store import Store

pytestmark = pytest.mark.timeout(120)


def t(sym: str, a: int, time: int | None = None) -> Tick:
    return Tick(sym, a if time is None else time, a, 1.0, 1.0, False)


def test_sequencer_reports_jumps_and_drops_repeats():
    seq = Sequencer({"A": 10})
    out, gaps = seq.admit([t("A", 11), t("A", 14), t("B", 5), t("A", 12), t("A", 14), t("B", 6), t("A", 15)])
    assert [(x.symbol, x.agg_id) for x in out] == [("A", 11), ("A", 14), ("B", 5), ("B", 6), ("A", 15)]
    assert gaps == [(1, Gap("A", 12, 13, 14))]
    assert seq.dropped == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=200), st.integers(0, 3))
def test_sequencer_gaps_are_exactly_what_was_lost(kept, dupes):
    ids = list(range(1, len(kept) + 1))
    received = [a for a, k in zip(ids, kept) if k]
    rng = random.Random(len(kept))
    stream = list(received)
    for _ in range(dupes):  # repeats of earlier frames anywhere later
        if stream:
            i = rng.randrange(len(stream))
            stream.insert(rng.randrange(i, len(stream)) + 1, stream[i])
    out, gaps = Sequencer({"A": 0}).admit([t("A", a) for a in stream])
    assert [x.agg_id for x in out] == received
    missing = {a for a, k in zip(ids, kept) if not k and a < (received[-1] if received else 0)}
    assert {a for _, g in gaps for a in range(g.first, g.last + 1)} == missing


def rest_get(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


async def played(ex: Exchange) -> None:
    """Connect a listener so the timeline runs, and wait until it has played through."""
    from websockets.asyncio.client import connect

    async with connect(ex.url + "?streams=btcusdt@aggTrade/ethusdt@aggTrade") as ws:
        async def drain():
            async for _ in ws:
                pass
        task = asyncio.create_task(drain())
        await asyncio.wait_for(ex.done.wait(), 60)
        task.cancel()


async def test_exchange_serves_rest_agg_trades_in_binance_format(usdm_recording):
    async with Exchange(usdm_recording, speed=0) as ex:
        status, rows = await asyncio.to_thread(rest_get, f"{ex.rest_url}/fapi/v1/aggTrades?symbol=BTCUSDT&fromId=1")
        assert (status, rows) == (200, [])  # nothing released before the timeline ran
        await played(ex)
        btc = [x for x in usdm_recording.trades if x.symbol == "BTCUSDT"]
        status, rows = await asyncio.to_thread(
            rest_get, f"{ex.rest_url}/fapi/v1/aggTrades?symbol=BTCUSDT&fromId={btc[100].agg_id}&limit=3")
        assert status == 200 and [r["a"] for r in rows] == [x.agg_id for x in btc[100:103]]
        assert set(rows[0]) == {"a", "p", "q", "f", "l", "T", "m"}
        assert rows[0]["p"] == btc[100].price and rows[0]["T"] == btc[100].time
        status, err = await asyncio.to_thread(rest_get, f"{ex.rest_url}/fapi/v1/aggTrades?fromId=1")
        assert status == 400 and err["code"] == -1102


@pytest.mark.parametrize("fail_every", [0, 5])
async def test_backfill_puts_every_lost_trade_back_in_order(usdm_recording, usdm_ticks, fail_every):
    async with Exchange(usdm_recording, speed=0, faults=Faults(rest_fail_every=fail_every)) as ex:
        await played(ex)
        rng = random.Random(7)
        lost = set()
        i = 50
        while i < len(usdm_ticks) - 50:  # lose runs of 1..1500 trades, the last few too
            n = rng.randint(1, 1500)
            lost.update(range(i, i + n))
            i += n + rng.randint(100, 3000)
        lost.update(range(len(usdm_ticks) - 5, len(usdm_ticks)))
        received = [x for k, x in enumerate(usdm_ticks) if k not in lost]
        out: list[Tick] = []
        rest = RestClient(ex.rest_url, backoff_initial_s=0.01)
        bf = Backfill(rest, lambda b: out.extend(b.ticks), max_hold_s=120,  # 429s make each wait 1 s
                      last_ids={"BTCUSDT": usdm_ticks[0].agg_id - 1, "ETHUSDT": -1})
        for k in range(0, len(received), 400):
            bf.on_batch(TickBatch(tuple(received[k:k + 400]), 0, 0))
        bf.probe()  # a reconnect: the tail lost after the last received trade
        await bf.drain(60)
        for sym in ("BTCUSDT", "ETHUSDT"):
            assert [x.agg_id for x in out if x.symbol == sym] == [x.agg_id for x in usdm_ticks if x.symbol == sym]
        assert [x for x in out if x.symbol == "BTCUSDT"] == [x for x in usdm_ticks if x.symbol == "BTCUSDT"]
        assert bf.stats.gaps_unfilled == 0 and bf.stats.trades_filled >= len(lost)
        if fail_every:
            assert ex.stats.rest_failures > 0 and rest.stats.retries >= ex.stats.rest_failures
            assert rest.stats.throttled > 0  # the 429s


async def test_unreachable_rest_reports_the_gap_and_lets_the_stream_go_on():
    out: list[Tick] = []
    bf = Backfill(RestClient("http://127.0.0.1:9", retries=1, backoff_initial_s=0.01), lambda b: out.extend(b.ticks),
                  last_ids={"A": 0})
    bf.on_batch(TickBatch((t("A", 1), t("A", 5), t("A", 6)), 0, 0))
    await bf.drain(10)
    assert [x.agg_id for x in out] == [1, 5, 6]
    assert bf.stats.gaps == 1 and bf.stats.gaps_unfilled == 1 and "network error" in bf.stats.last_error


class LaggingRest:
    """A REST view that lags the stream: serves ids up to ``known`` only, which grows by
    ``step`` on every request (``step`` 0: never catches up)."""

    def __init__(self, ticks: list[Tick], known: int, step: int) -> None:
        self.ticks, self.known, self.step, self.requests = ticks, known, step, 0

    async def agg_trades(self, symbol: str, from_id: int, limit: int) -> list[Tick]:
        self.requests += 1
        page = [x for x in self.ticks if x.symbol == symbol and from_id <= x.agg_id <= self.known][:limit]
        self.known += self.step
        return page


@pytest.mark.parametrize("step", [3, 0])
async def test_a_gap_rest_serves_short_is_asked_again_and_never_passed_off_as_filled(step):
    ticks = [t("BTCUSDT", a, 1000 + a) for a in range(1, 21)]
    rest = LaggingRest(ticks, known=4, step=step)
    out: list[Tick] = []
    bf = Backfill(rest, lambda b: out.extend(b.ticks), max_hold_s=30)  # type: ignore[arg-type]
    bf.on_batch(TickBatch(tuple(ticks[:2]), 0, 0))
    bf.on_batch(TickBatch((ticks[11],), 0, 0))  # ids 3..11 lost; REST knows up to 4 so far
    await bf.drain(20)
    if step:  # it caught up: every trade once, in order
        assert [x.agg_id for x in out] == list(range(1, 13)) and bf.stats.gaps_unfilled == 0
        assert rest.requests > 2
    else:  # it never did: what it served is kept, the rest reported missing
        assert [x.agg_id for x in out] == [1, 2, 3, 4, 12]
        assert bf.stats.gaps_unfilled == 1 and "ids 5..11 not served" in bf.stats.last_error


class GatedRest:
    """Serves every id of ``ticks``; the first request waits for ``gate``."""

    def __init__(self, ticks: list[Tick]) -> None:
        self.ticks, self.gate, self.requests = ticks, asyncio.Event(), 0

    async def agg_trades(self, symbol: str, from_id: int, limit: int) -> list[Tick]:
        self.requests += 1
        if self.requests == 1:
            await self.gate.wait()
        return [x for x in self.ticks if x.symbol == symbol and from_id >= 0 and x.agg_id >= from_id][:limit]


async def test_two_probes_of_the_same_range_are_two_fills():
    """A reconnect while the previous probe is still in flight probes the same range again (the
    same Gap value). Each keeps its own trades: the first probe's reach beyond the live ticks held
    since must not be overwritten by the second's shorter one (the served-app soak lost ids so)."""
    ticks = [t("A", a, 1000 + a) for a in range(11, 31)]
    rest = GatedRest(ticks)
    out: list[Tick] = []
    bf = Backfill(rest, lambda b: out.extend(b.ticks), last_ids={"A": 10}, max_hold_s=30)  # type: ignore[arg-type]
    bf.probe()  # connect: ids 11.. (its REST request is slow)
    await asyncio.sleep(0.05)
    bf.probe()  # a reconnect before any live tick: the same range again, the first in flight
    bf.on_batch(TickBatch(tuple(ticks[9:15]), 0, 0))  # live 20..25: the gap 11..19 shows
    rest.gate.set()  # the first probe's answer reaches 30, beyond the live ticks held
    await asyncio.sleep(0.05)
    bf.on_batch(TickBatch(tuple(ticks[15:]), 0, 0))  # live 26..30
    await bf.drain(10)
    assert [x.agg_id for x in out] == list(range(11, 31))
    assert bf.stats.gaps_unfilled == 0


async def test_a_rest_answer_with_a_hole_is_used_up_to_the_hole_and_the_hole_reported():
    """REST pages are consecutive ids on Binance; one that skips an id must not pass the ids above
    the hole off as filled (their live copies would then be dropped as repeats)."""
    ticks = [t("A", a, 1000 + a) for a in range(11, 31)]
    rest = LaggingRest([x for x in ticks if x.agg_id != 15], known=30, step=0)
    out: list[Tick] = []
    bf = Backfill(rest, lambda b: out.extend(b.ticks), last_ids={"A": 10}, max_hold_s=30)  # type: ignore[arg-type]
    bf.probe()  # brings 11..14 and stops at the hole
    await asyncio.sleep(0.05)
    bf.on_batch(TickBatch(tuple(ticks[10:]), 0, 0))  # live 21..30: the gap 15..20 shows
    await bf.drain(20)
    assert [x.agg_id for x in out] == [a for a in range(11, 31) if a != 15]
    assert bf.stats.gaps_unfilled == 1 and "ids 15..15 not served" in bf.stats.last_error


def test_rebuild_since_restores_the_bars_of_a_late_fill(tmp_path, usdm_ticks):
    btc = [x for x in usdm_ticks if x.symbol == "BTCUSDT"]
    hole = set(range(8000, 9000))
    partial = [x for k, x in enumerate(btc) if k not in hole]
    tfs = ["1s", "1m"]
    with Store(tmp_path / "q.db") as store:
        store.insert_ticks(partial)
        bars, _ = build_bars(partial, tfs, include_forming=False)
        store.upsert_bars(bars)  # what the live builder stored without the hole's trades
        store.insert_ticks([btc[k] for k in sorted(hole)])  # the late backfill
        assert len(rebuild_bars_since(store, "BTCUSDT", tfs, btc[8000].time)) > 0
        ref, _ = build_bars(btc, tfs, include_forming=False)
        last = {tf: max(b.time for b in bars if b.timeframe == tf) for tf in tfs}
        for tf in tfs:
            want = [b for b in ref if b.timeframe == tf and b.time <= last[tf]]
            assert store.read_bars("BTCUSDT", tf) == want


async def test_proactive_rollover_overlaps_connections_with_no_gap_at_all(usdm_recording):
    """Binance cuts a connection at 24 h; the feed opens the next one before that (here every
    1.5 s) and closes the old once the new one streams: not one trade missing or doubled, with
    no REST to fall back on and the exchange free-running."""
    from quantpanel.feeds.connection import FeedConnection

    async with Exchange(usdm_recording, speed=15, pause_when_idle=False) as ex:
        out: list[Tick] = []
        bf = Backfill(None, lambda b: out.extend(b.ticks))
        feed = FeedConnection(ex.url, ["BTCUSDT", "ETHUSDT"], bf.on_batch, batch_interval_ms=20,
                              max_connection_age_s=1.5)
        task = asyncio.create_task(feed.run())
        await asyncio.sleep(9)
        await feed.stop()
        await task
    assert feed.stats.rollovers >= 4 and feed.stats.reconnects == 0
    assert bf.stats.gaps == 0 and len(out) > 3000
    first = {s: next(x.agg_id for x in out if x.symbol == s) for s in ("BTCUSDT", "ETHUSDT")}
    for sym in first:
        got = [x.agg_id for x in out if x.symbol == sym]
        assert got == list(range(first[sym], first[sym] + len(got)))  # consecutive: nothing lost
    assert bf.sequencer.dropped > 0  # the overlaps' repeats, dropped

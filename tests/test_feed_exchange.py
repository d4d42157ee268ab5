"""The feed client against real WebSocket servers on loopback: the local exchange and stubs."""

from __future__ import annotations

import asyncio
import socket

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from quantpanel.feeds.connection import FeedConnection
from quantpanel.feeds.exchange import Exchange, Faults
from quantpanel.feeds.recording import Recording
from quantpanel.models import TickBatch

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_until(cond, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


def small(rec: Recording, n: int) -> Recording:
    return Recording(rec.trades[:n], rec.source)


async def test_every_tick_arrives_in_batches_despite_drops_and_garbage(usdm_recording):
    batches: list[TickBatch] = []
    faults = Faults(drop_every=9_000, garbage_every=4_000)
    async with Exchange(usdm_recording, speed=0, faults=faults) as ex:
        feed = FeedConnection(ex.url, ["BTCUSDT", "ETHUSDT"], batches.append,
                              batch_max_ticks=500, backoff_initial_s=0.02, backoff_max_s=0.1)
        task = asyncio.create_task(feed.run())
        await asyncio.wait_for(ex.done.wait(), 30)
        await run_until(lambda: feed.stats.ticks == ex.stats.frames_sent)
        await feed.stop()
        await task
    ticks = [t for b in batches for t in b.ticks]
    assert [(t.symbol, t.agg_id) for t in ticks] == [(t.symbol, t.agg_id) for t in usdm_recording.trades]
    assert all(0 < len(b.ticks) <= 500 for b in batches)
    assert len(batches) >= len(ticks) // 500
    assert ex.stats.drops == 3 and feed.stats.reconnects == 3 and feed.stats.connects == 4
    # garbage: non-JSON, aggTrade without fields, an unknown event, a JSON array -- in turn
    assert ex.stats.garbage_sent == 8
    assert feed.stats.malformed == 6 and feed.stats.other_events["depthUpdate"] == 2


async def test_subscribe_unsubscribe_and_list_on_the_open_connection(usdm_recording):
    seen: list[str] = []
    async with Exchange(usdm_recording, speed=20) as ex:
        feed = FeedConnection(ex.url, ["BTCUSDT"], lambda b: seen.extend(t.symbol for t in b.ticks))
        task = asyncio.create_task(feed.run())
        await run_until(lambda: len(seen) > 20)
        assert set(seen) == {"BTCUSDT"}
        await feed.subscribe(["ethusdt"])
        assert await feed.list_subscriptions() == ["btcusdt@aggTrade", "ethusdt@aggTrade"]
        seen.clear()
        await run_until(lambda: "ETHUSDT" in seen and "BTCUSDT" in seen)
        await feed.unsubscribe(["BTCUSDT"])
        await asyncio.sleep(0.2)  # frames already in flight
        seen.clear()
        await run_until(lambda: len(seen) > 20)
        assert set(seen) == {"ETHUSDT"}
        assert feed.stats.connects == 1  # all of it on one connection
        assert feed.symbols == ["ETHUSDT"]  # and a reconnect would use the new set
        await feed.stop()
        await task


async def test_watchdog_replaces_a_silent_connection():
    opened = 0

    async def silent(ws):
        nonlocal opened
        opened += 1
        await ws.wait_closed()

    async with serve(silent, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        feed = FeedConnection(f"ws://127.0.0.1:{port}/stream", ["BTCUSDT"], lambda b: None,
                              silence_timeout_s=0.3, backoff_initial_s=0.01, backoff_max_s=0.05)
        task = asyncio.create_task(feed.run())
        await run_until(lambda: feed.stats.watchdog_reconnects >= 2)
        await feed.stop()
        await task
    assert opened >= 2
    assert feed.stats.last_error == "no frame for 0.3 s: replaced by the watchdog"


async def test_backoff_until_the_server_comes_up(usdm_recording):
    port = free_port()
    got: list[int] = []
    feed = FeedConnection(f"ws://127.0.0.1:{port}/stream", ["BTCUSDT"],
                          lambda b: got.extend(t.agg_id for t in b.ticks),
                          backoff_initial_s=0.05, backoff_max_s=0.2)
    task = asyncio.create_task(feed.run())
    await run_until(lambda: feed.stats.connect_failures >= 3)
    assert feed.stats.state in ("backoff", "connecting")
    assert "Connect call failed" in feed.stats.last_error or "refused" in feed.stats.last_error.lower()
    async with Exchange(small(usdm_recording, 300), speed=0, port=port):
        await run_until(lambda: len(got) == sum(t.symbol == "BTCUSDT" for t in usdm_recording.trades[:300]))
    await feed.stop()
    await task


async def test_exchange_speaks_binance_control_protocol_and_paths(usdm_recording):
    rec = small(usdm_recording, 50)
    async with Exchange(rec, speed=0) as ex:
        base = f"ws://127.0.0.1:{ex.port}"
        async with connect(f"{base}/market/ws/ethusdt@aggTrade") as ws:
            first = orjson.loads(await ws.recv())
            assert first["stream"] == "ethusdt@aggTrade" and first["data"]["s"] == "ETHUSDT"
            await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":7}')
            reply = orjson.loads(await _next_reply(ws))
            assert reply == {"result": ["ethusdt@aggTrade"], "id": 7}
            await ws.send("{nope")
            assert orjson.loads(await _next_reply(ws))["error"]["code"] == 3
            await ws.send('{"method":"SUBSCRIBE","params":"btcusdt@aggTrade","id":8}')
            assert orjson.loads(await _next_reply(ws)) == {
                "error": {"code": 1, "msg": "Invalid value type: expected Array of Strings"}, "id": 8}
            await ws.send('{"method":"FLY","id":9}')
            assert orjson.loads(await _next_reply(ws))["error"]["code"] == 0
        async with connect(f"{base}/nothing/here") as ws:
            await ws.wait_closed()
            assert ws.close_code == 1008


async def _next_reply(ws) -> str:
    while True:
        msg = await ws.recv()
        if ('"id"' in msg and '"stream"' not in msg) or msg.startswith('{"error"'):
            return msg


async def test_looping_replay_shifts_times_and_ids_so_nothing_repeats(usdm_recording):
    rec = small(usdm_recording, 400)
    got: list[tuple[str, int, int, float]] = []
    async with Exchange(rec, speed=0, loop=True) as ex:
        feed = FeedConnection(ex.url, ["BTCUSDT", "ETHUSDT"],
                              lambda b: got.extend((t.symbol, t.agg_id, t.time, t.price) for t in b.ticks))
        task = asyncio.create_task(feed.run())
        await run_until(lambda: len(got) >= 3 * 400)
        await feed.stop()
        await task
    keys = [(s, a) for s, a, _, _ in got]
    assert len(set(keys)) == len(keys)  # no duplicate (symbol, agg_id) across passes
    for sym in ("BTCUSDT", "ETHUSDT"):
        ids = [a for s, a, _, _ in got if s == sym]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # still contiguous: no fake gaps
        times = [t for s, _, t, _ in got if s == sym]
        assert times == sorted(times)
    # the second pass repeats the prices of the first, shifted in time
    first = [p for s, _, _, p in got[:400]]
    assert [p for s, _, _, p in got[400:800]] == first


async def test_rebased_replay_starts_now(usdm_recording):
    import time
    got: list[int] = []
    async with Exchange(small(usdm_recording, 20), speed=0, rebase_to_now=True) as ex:
        feed = FeedConnection(ex.url, ["BTCUSDT", "ETHUSDT"], lambda b: got.extend(t.time for t in b.ticks))
        task = asyncio.create_task(feed.run())
        await run_until(lambda: len(got) == 20)
        await feed.stop()
        await task
    assert abs(got[0] - time.time() * 1000) < 5_000


async def test_a_recording_without_ids_or_sides_is_served_gap_free_and_side_less():
    """NDJSON ticks (a browser collector's): ids 1..N per symbol in file order, no ``m`` on the wire,
    so every trade arrives with its side unknown and the id sequencer sees no gap."""
    from quantpanel.feeds.gaps import Sequencer
    from quantpanel.feeds.recording import load_recording
    from quantpanel.feeds.rest import RestClient

    from tests.offline.test_ndjson_import import TICKS

    rec = load_recording(TICKS)
    got: list = []
    async with Exchange(small(rec, 5), speed=0) as ex:  # on the wire: no "m" at all
        async with connect(f"ws://127.0.0.1:{ex.port}/market/ws/btcusdt@aggTrade") as ws:
            first = orjson.loads(await ws.recv())["data"]
            assert "m" not in first and (first["s"], first["a"]) == ("BTCUSDT", 1)
    async with Exchange(rec, speed=0) as ex:
        feed = FeedConnection(ex.url, ["BTCUSDT", "ETHUSDT"], lambda b: got.extend(b.ticks))
        task = asyncio.create_task(feed.run())
        await asyncio.wait_for(ex.done.wait(), 30)
        await run_until(lambda: len(got) == len(rec.trades))
        await feed.stop()
        await task
        rest = await RestClient(ex.rest_url).agg_trades("ETHUSDT", 370)
    assert feed.stats.malformed == 0 and all(t.buyer_maker is None for t in got)
    admitted, gaps = Sequencer().admit(got)
    assert gaps == [] and len(admitted) == len(got) == 993
    for sym, n in (("BTCUSDT", 622), ("ETHUSDT", 371)):
        mine = [t for t in got if t.symbol == sym]
        assert [t.agg_id for t in mine] == list(range(1, n + 1))
        assert [(t.time, t.price, t.qty) for t in mine] == [
            (t.time, float(t.price), float(t.qty)) for t in rec.trades if t.symbol == sym]
    assert [(t.agg_id, t.buyer_maker) for t in rest] == [(370, None), (371, None)]  # backfill agrees

"""The local exchange's futures-native market data over real sockets on loopback: routes like
Binance's (/market, /public), the recording's real quotes, the SIMULATED marks, liquidations,
funding and open interest in step with the trades, spot trades on /spot, REST shapes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from quantpanel.feeds.binance_futures import agg_trade_tick
from quantpanel.feeds.binance_market import (
    book_ticker_quote,
    force_order,
    funding_rate_row,
    mark_price,
    render_book_ticker,
    render_mark_price,
)
from quantpanel.feeds.exchange import Exchange, Faults, MarketModel
from quantpanel.feeds.exchange.simulated import simulate
from quantpanel.feeds.recording import Recording, load_recording

from tests.conftest import DATA, USDM_TRADES

pytestmark = pytest.mark.timeout(60)

BOOKTICKER = DATA / "binance-usdm-btcusdt-ethusdt-2024-08-08.bookticker.gz"
SPOT = DATA / "binance-spot-btcusdt-ethusdt-2024-08-08.trades.gz"
SYMBOLS = ("btcusdt", "ethusdt")
MODEL = MarketModel(funding_interval_s=5, liquidation_move_bps=0.5)  # plenty of both in 20 s


@pytest.fixture(scope="module")
def full() -> Recording:
    return load_recording(USDM_TRADES, quotes=BOOKTICKER)


@pytest.fixture(scope="module")
def rec(full: Recording) -> Recording:
    """The first 20 s of the real trades and the real quotes of the same seconds."""
    end = full.trades[0].time + 20_000
    return Recording(tuple(t for t in full.trades if t.time < end), "first 20 s", {},
                     tuple(q for q in full.quotes if q.time < end))


def streams(*kinds: str) -> str:
    return "?streams=" + "/".join(f"{s}@{k}" for s in SYMBOLS for k in kinds)


class Listener:
    """A client that reads every frame (a client that stops reading cannot close promptly)."""

    def __init__(self, ws: ClientConnection, into: list[str]) -> None:
        self.ws, self.frames = ws, into
        self.task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for msg in self.ws:
                self.frames.append(msg)

    def done(self) -> bool:
        return self.task.done()

    async def close(self) -> None:
        await self.ws.close()
        await self.task


async def listen(url: str, into: list[str]) -> Listener:
    return Listener(await connect(url), into)


async def run_until(cond, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


def data_of(frames: list[str], event: str) -> list[dict]:
    return [m["data"] for m in map(orjson.loads, frames) if m.get("data", {}).get("e") == event]


def released(rec: Recording, times: list[int]) -> list[bool]:
    """Which event times a pass over all of ``rec`` releases: up to 1 s before the first trade
    through the last trade."""
    return [rec.trades[0].time - 1_000 <= t <= rec.trades[-1].time for t in times]


async def test_market_route_and_public_route_each_serve_their_streams_in_step(rec):
    market: list[str] = []
    public: list[str] = []
    async with Exchange(rec, speed=0, market_model=MODEL) as ex:
        ex.pause()  # both listeners on before the first frame
        tasks = [await listen(ex.market_url + streams("aggTrade", "markPrice@1s", "markPrice", "forceOrder"), market),
                 await listen(ex.public_url + streams("bookTicker"), public)]
        await asyncio.sleep(0.1)
        ex.resume()
        await asyncio.wait_for(ex.done.wait(), 30)
        sim = ex.simulated()
        quotes = [q for q, ok in zip(rec.quotes, released(rec, [q.time for q in rec.quotes])) if ok]
        marks = [m for m in sim.marks if m.event_time <= rec.trades[-1].time]
        liqs = [x for x in sim.liquidations if x.event_time <= rec.trades[-1].time]
        expected_market = len(rec.trades) + len(marks) + sum(m.event_time // 1000 % 3 == 0 for m in marks) + len(liqs)
        await run_until(lambda: len(public) == len(quotes) and len(market) == expected_market)
        await asyncio.sleep(0.2)
        for t in tasks:
            await t.close()
    # /public: the recording's real quotes, exactly, nothing else
    assert public == [render_book_ticker(q, 0, 0) for q in quotes]
    assert [book_ticker_quote(d).update_id for d in data_of(public, "bookTicker")] == [q.update_id for q in quotes]
    # /market: every trade, every simulated mark on both mark streams, every liquidation, by time
    msgs = [orjson.loads(m) for m in market]
    assert [agg_trade_tick(m["data"]).agg_id for m in msgs if m["data"]["e"] == "aggTrade"] == [
        t.agg_id for t in rec.trades]
    one_s = [m for m in market if "@markPrice@1s" in m[:40]]
    assert one_s == [render_mark_price(m, 0) for m in marks]
    three_s = [mark_price(m["data"]) for m in msgs if m["stream"].endswith("@markPrice")]
    assert three_s and all(m.time % 3_000 == 0 for m in three_s)
    assert [force_order(m["data"]).time for m in msgs if m["data"]["e"] == "forceOrder"] == [x.time for x in liqs]
    assert liqs and {x.symbol for x in liqs} <= {"BTCUSDT", "ETHUSDT"}
    release = [m["data"]["T"] if m["data"]["e"] == "aggTrade" else m["data"]["E"] for m in msgs]
    assert release == sorted(release)  # marks and liquidations line up with the trades
    assert ex.stats.market_frames["bookTicker"] == len(quotes) and ex.stats.frames_sent == len(rec.trades)


async def test_a_stream_on_the_wrong_route_is_acknowledged_and_listed_but_never_delivered(rec):
    async with Exchange(rec, speed=0, market_model=MODEL) as ex:
        async with connect(ex.market_url) as wrong, connect(ex.public_url) as also_wrong:
            for ws, stream in ((wrong, "btcusdt@bookTicker"), (also_wrong, "btcusdt@aggTrade")):
                await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [stream], "id": 1}))
                assert orjson.loads(await ws.recv()) == {"result": None, "id": 1}
                await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":2}')
                assert orjson.loads(await ws.recv()) == {"result": [stream], "id": 2}
            await asyncio.wait_for(ex.done.wait(), 30)
            for ws in (wrong, also_wrong):
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.5)
        # the unrouted URL keeps serving aggTrade (and market streams), never bookTicker
        async with Exchange(Recording(rec.trades[:30], "s", {}, rec.quotes), speed=0) as ex2:
            got: list[str] = []
            task = await listen(ex2.url + streams("aggTrade", "bookTicker"), got)
            await run_until(lambda: len(got) == 30)
            await asyncio.sleep(0.2)
            await task.close()
            assert all('"aggTrade"' in m for m in got)


def rest_get(url: str) -> tuple[int, object, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, orjson.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read()), dict(e.headers)


async def test_rest_funding_rate_and_open_interest_answer_in_binance_shapes(rec):
    async with Exchange(rec, speed=0, market_model=MODEL) as ex:
        base = ex.rest_url
        assert (await asyncio.to_thread(rest_get, f"{base}/fapi/v1/fundingRate?symbol=BTCUSDT"))[:2] == (200, [])
        frames: list[str] = []
        listener = await listen(ex.market_url + streams("aggTrade"), frames)
        await asyncio.wait_for(ex.done.wait(), 30)
        await run_until(lambda: len(frames) == len(rec.trades))
        await listener.close()
        sim = ex.simulated()
        btc = [funding_rate_row(f, 0) for f in sim.funding if f.symbol == "BTCUSDT"]
        status, rows, headers = await asyncio.to_thread(rest_get, f"{base}/fapi/v1/fundingRate?symbol=btcusdt")
        assert status == 200 and rows == btc and len(btc) >= 3
        assert list(rows[0]) == ["symbol", "fundingTime", "fundingRate", "markPrice"]
        assert int(headers["X-MBX-USED-WEIGHT-1M"]) >= 2
        t1 = btc[1]["fundingTime"]
        _, first, _ = await asyncio.to_thread(rest_get, f"{base}/fapi/v1/fundingRate?symbol=BTCUSDT&startTime={t1}&limit=1")
        _, last, _ = await asyncio.to_thread(rest_get, f"{base}/fapi/v1/fundingRate?symbol=BTCUSDT&endTime={t1}&limit=1")
        _, both, _ = await asyncio.to_thread(rest_get, f"{base}/fapi/v1/fundingRate?limit=1000")
        assert first == [btc[1]] and last == [btc[1]] and len(both) == len(sim.funding)
        status, oi, headers = await asyncio.to_thread(rest_get, f"{base}/fapi/v1/openInterest?symbol=ETHUSDT")
        now = rec.trades[-1].time
        assert status == 200 and oi == {"openInterest": sim.open_interest_at("ETHUSDT", now)[1], "symbol": "ETHUSDT",
                                        "time": now}
        assert "X-MBX-USED-WEIGHT-1M" in headers
        for query, code in (("symbol=DOGEUSDT", -1121), ("", -1102)):
            status, err, _ = await asyncio.to_thread(rest_get, f"{base}/fapi/v1/openInterest?{query}")
            assert status == 400 and err["code"] == code
        assert (await asyncio.to_thread(rest_get, f"{base}/fapi/v1/openInterest?symbol=DOGEUSDT"))[1] == {
            "code": -1121, "msg": "Invalid symbol."}
        status, err, _ = await asyncio.to_thread(rest_get, f"{base}/fapi/v1/fundingRate?startTime=abc")
        assert status == 400 and err["code"] == -1100


async def test_spot_route_serves_the_spot_recordings_trades_as_spot_agg_trades(rec):
    spot = load_recording(SPOT)
    got: list[str] = []
    async with Exchange(rec, speed=0, spot=spot) as ex:
        ex.pause()
        task = await listen(ex.spot_url + streams("aggTrade"), got)
        futures: list[str] = []
        task2 = await listen(ex.market_url + streams("aggTrade"), futures)
        await asyncio.sleep(0.1)
        ex.resume()
        await asyncio.wait_for(ex.done.wait(), 30)
        want = [t for t, ok in zip(spot.trades, released(rec, [t.time for t in spot.trades])) if ok]
        await run_until(lambda: len(got) == len(want) and len(futures) == len(rec.trades))
        await asyncio.sleep(0.2)
        await task.close()
        await task2.close()
    data = data_of(got, "aggTrade")
    assert all(d["M"] is True for d in data)
    assert [(d["s"], d["a"], d["p"], d["q"], d["T"], d["m"]) for d in data] == [
        (t.symbol, t.agg_id, t.price, t.qty, t.time, t.buyer_maker) for t in want]
    assert data[0]["p"].endswith("000000")  # spot's 8 decimals: not the futures trades
    assert len(data_of(futures, "aggTrade")) == len(rec.trades)


async def test_looping_shifts_quote_times_and_update_ids_so_nothing_repeats(rec):
    small = Recording(rec.trades[:200], "s", {}, tuple(q for q in rec.quotes if q.time <= rec.trades[199].time))
    got: list[str] = []
    async with Exchange(small, speed=0, loop=True) as ex:
        task = await listen(ex.public_url + streams("bookTicker"), got)
        await run_until(lambda: len(got) >= 3 * len(small.quotes))
        await task.close()
    for sym in ("BTCUSDT", "ETHUSDT"):
        qs = [book_ticker_quote(d) for d in data_of(got, "bookTicker") if d["s"] == sym]
        ids = [q.update_id for q in qs]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert [q.time for q in qs] == sorted(q.time for q in qs)
        n = sum(q.symbol == sym for q in small.quotes)
        assert [(q.bid, q.ask) for q in qs[n:2 * n]] == [(q.bid, q.ask) for q in qs[:n]]  # the same real quotes


async def test_a_jump_releases_the_quotes_and_marks_from_the_jump_on_as_a_new_pass(rec):
    mid = rec.trades[len(rec.trades) // 2].time
    public: list[str] = []
    market: list[str] = []
    async with Exchange(rec, speed=0) as ex:
        ex.pause()
        tasks = [await listen(ex.public_url + streams("bookTicker"), public),
                 await listen(ex.market_url + streams("markPrice@1s"), market)]
        await asyncio.sleep(0.1)
        ex.jump(mid)  # before anything was sent: pass 1, times unshifted, update ids one span up
        ex.resume()
        await asyncio.wait_for(ex.done.wait(), 30)
        want = [q for q in rec.quotes if mid - 1_000 <= q.time <= rec.trades[-1].time]
        marks = [m for m in ex.simulated().marks if mid - 1_000 <= m.event_time <= rec.trades[-1].time]
        await run_until(lambda: len(public) == len(want) and len(market) == len(marks))
        for t in tasks:
            await t.close()
    ids = [q.update_id for q in rec.quotes]
    span = max(ids) - min(ids) + 1
    assert public == [render_book_ticker(q, 0, span) for q in want]
    assert market == [render_mark_price(m, 0) for m in marks]


async def test_faults_can_target_the_public_connection_alone(rec):
    market: list[str] = []
    public: list[str] = []
    async with Exchange(rec, speed=0, faults=Faults(drop_every=100, routes=("public",))) as ex:
        ex.pause()
        tasks = [await listen(ex.market_url + streams("aggTrade"), market),
                 await listen(ex.public_url + streams("bookTicker"), public)]
        await asyncio.sleep(0.1)
        ex.resume()
        await asyncio.wait_for(ex.done.wait(), 30)
        await run_until(lambda: len(market) == len(rec.trades))
        await asyncio.sleep(0.1)
        assert ex.stats.drops == 1 and len(public) == 100 and tasks[1].done() and not tasks[0].done()
        await tasks[0].close()


def test_simulation_is_deterministic_seeded_and_shaped_like_binance(full):
    a, b = simulate(full), simulate(full)
    assert a == b and simulate(full, MarketModel(seed=1)).marks != a.marks
    for sym in ("BTCUSDT", "ETHUSDT"):
        funding = [f for f in a.funding if f.symbol == sym]
        assert [f.time % 60_000 for f in funding] == [0] * len(funding) and len(funding) == 6
        liqs = [x for x in a.liquidations if x.symbol == sym]
        assert 5 <= len(liqs) <= 40  # a few per minute over 5.7 minutes
        assert len({x.time // 1000 for x in liqs}) == len(liqs)  # at most one per second
        marks = [m for m in a.marks if m.symbol == sym]
        assert [m.event_time for m in marks] == list(range(marks[0].event_time, marks[-1].event_time + 1, 1000))
    rates = [float(f.rate) for f in a.funding]
    assert min(rates) < 0 < max(rates) and all(abs(r) <= 0.003 for r in rates)

"""One ingest runtime publishing to a real redis-server, dashboards' hubs following it: the same
bars as the store, actions as commands, and both sides riding out a Redis restart."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from quantpanel.alerts.rules import Rule
from quantpanel.broker.local import LocalRedis
from quantpanel.broker.publisher import Publisher
from quantpanel.broker.remote import RemoteRuntime
from quantpanel.dashboard.hub import Hub
from quantpanel.models import Bar
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.store import Store

from .conftest import config_of, replay_tree

pytestmark = pytest.mark.timeout(240)
SERIES = [("BTCUSDT", "1s"), ("ETHUSDT", "1s"), ("BTCUSDT.SPOT", "1s"), ("BTCUSDT", "1m")]


async def until(cond: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.1)


def same_bars(shown: list[Bar], stored: list[Bar]) -> None:
    """``shown`` is exactly the stored bars over its span: no gap, no duplicate, same values."""
    assert shown, "nothing shown"
    times = [b.time for b in shown]
    assert times == sorted(set(times)), "a duplicate or out-of-order bar"
    span = [b for b in stored if times[0] <= b.time <= times[-1]]
    assert [b.time for b in span] == times, "a bar the store has is missing (or one it lacks is shown)"
    for a, b in zip(shown, span, strict=True):
        for f in ("open", "high", "low", "close", "volume", "trades", "vwap"):
            x, y = getattr(a, f), getattr(b, f)
            assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-9), (a, b, f)


def stored_bars(db: str, symbol: str, tf: str) -> list[Bar]:
    from quantpanel.pipeline.history import load_bars
    with Store(db, readonly=True) as store:
        return load_bars(store, symbol, tf, include_forming=False, grace_ms=250)


class Ingest:
    """The runtime and its publisher, in this test's loop (as ``quantpanel ingest`` runs them)."""

    def __init__(self, cfg, url: str) -> None:
        self.runtime = Runtime(cfg)
        self.publisher = Publisher(self.runtime, url)

    async def __aenter__(self) -> Ingest:
        await self.runtime.start()
        self.task = asyncio.create_task(self.publisher.run())
        await asyncio.wait_for(self.publisher.synced.wait(), 20)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.runtime.stop()


async def dashboard(cfg, url: str) -> tuple[RemoteRuntime, Hub]:
    rt = RemoteRuntime(cfg, url)
    hub = Hub(rt, cfg.dashboard.buffer_bars)
    await asyncio.wait_for(rt.start(), 30)
    return rt, hub


async def test_two_dashboards_show_the_stores_bars_and_act_through_commands(tmp_path: Path, redis_server, prefix):
    cfg = config_of(tmp_path, replay_tree(tmp_path, prefix, redis_server.url))
    async with Ingest(cfg, redis_server.url) as ing:
        (rt1, hub1) = await dashboard(cfg, redis_server.url)
        await until(lambda: len(hub1.closed_bars("BTCUSDT", "1s")) >= 8, 60, "8 closed 1s bars via Redis")
        (rt2, hub2) = await dashboard(cfg, redis_server.url)  # joins late: starts from the snapshot
        assert rt1.status().source == "REPLAY" and rt1.status().state == "connected"
        assert hub1.replaying and hub1.symbols == ["BTCUSDT", "ETHUSDT"]
        assert hub2.closed_bars("BTCUSDT", "1s"), "a late dashboard starts from the streams' history"

        # rules: saved from one dashboard, live in the ingest, listed by both
        rule = Rule(name="btc above 1", metric="price", symbol="BTCUSDT", timeframe="1s", op=">", threshold=1.0)
        version2 = hub2.rules_version
        saved = await hub1.save_rule(rule)
        assert saved.id is not None
        assert any(r.id == saved.id for r in hub1.rules()), "listed by the dashboard that saved it, at once"
        await until(lambda: hub2.rules_version > version2, 5, "the other dashboard told to redraw its rules")
        assert any(r.id == saved.id for r, _ in ing.runtime.rules.alerting.all_rules())
        await until(lambda: any(r.id == saved.id for r in hub2.rules()), 5, "the rule in the other dashboard")
        await until(lambda: any(a.rule_id == saved.id for a in hub2.alerts()), 20, "its alert in the other dashboard")
        await hub2.delete_rule(saved.id)
        assert all(r.id != saved.id for r, _ in ing.runtime.rules.alerting.all_rules())

        # replay controls act on the ingest's one timeline and come back as state to every dashboard
        hub1.replay.pause()
        await until(lambda: ing.runtime.status().paused, 5, "the ingest's exchange paused")
        await until(lambda: hub2.status().paused, 5, "the other dashboard seeing the pause")
        hub2.replay.resume()
        await until(lambda: not hub1.status().paused, 5, "resumed")

        # an unknown symbol is the exchange's one-line answer, raised in the dashboard that asked
        with pytest.raises(ValueError, match="NOTASYMBOL1 is not a USD-M futures symbol"):
            await hub1.add_symbol("notasymbol1")

        # pair analytics run in each dashboard on the same bars: equal in both
        from quantpanel.pipeline.pairs import PairSpec
        spec = PairSpec("BTCUSDT", "ETHUSDT", "1s", window=5)
        hub1.pair_since(spec, None)
        hub2.pair_since(spec, None)
        await until(lambda: len(hub1.pair_since(spec, None).items) >= 3, 30, "pair points")
        await asyncio.sleep(1.5)
        n = min(len(hub1.pair_since(spec, None).items), len(hub2.pair_since(spec, None).items))
        assert n >= 3
        assert hub1.pair_since(spec, None).items[-n:] == hub2.pair_since(spec, None).items[-n:]

        # uploads travel to the ingest's writer; every dashboard reads them from the store
        from quantpanel.storage.ohlc import parse_ohlc_csv
        root = Path(__file__).resolve().parents[2]
        series = parse_ohlc_csv((root / "data" / "ohlc" / "ADAUSDT-bybit-1d.csv").read_bytes(), name="ADAUSDT-bybit-1d.csv")
        n = await hub1.store_ohlc(series)
        assert n == len(series[0].frame) > 100
        assert [s[:3] for s in await asyncio.to_thread(hub2.ohlc_series)] == [("ADAUSDT", "1d", n)]
        frame = await asyncio.to_thread(hub2.read_ohlc, "ADAUSDT", "1d")
        assert frame["close"].tolist() == pytest.approx(series[0].frame["close"].tolist())
        csv = (b"agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
               b"1,0.35,10,1,1,1704067200000,true\n2,0.36,5,2,2,1704067201000,false\n")
        imported = await hub2.import_trades("ADAUSDT-aggTrades-2024-01-01.csv", csv)
        assert (imported.read, imported.stored, imported.symbols) == (2, 2, {"ADAUSDT"})
        with pytest.raises(Exception, match="ADAUSDT-aggTrades-bad.csv"):  # the ingest's one-line error, here
            await hub1.import_trades("ADAUSDT-aggTrades-bad.csv", b"not,a,trades,file\n")
        entries = await rt1.redis.xrange(rt1.keys.commands)
        assert entries and not [f for _, f in entries if f.get(b"data")], "uploaded bytes left in Redis"

        # a symbol removed and added back: every dashboard drops it, then follows it again, warm
        await hub1.remove_symbol("ETHUSDT")
        await until(lambda: hub2.symbols == ["BTCUSDT"], 5, "ETHUSDT dropped in the other dashboard")
        assert hub2.closed_bars("ETHUSDT", "1s") == []
        assert await hub2.add_symbol("ethusdt") == "ETHUSDT"
        await until(lambda: hub1.symbols == ["BTCUSDT", "ETHUSDT"], 5, "ETHUSDT followed again")
        await until(lambda: len(hub1.closed_bars("ETHUSDT", "1s")) >= 5, 30, "ETHUSDT's bars, warm from the store")

        seq = hub1.seq("BTCUSDT", "1s")
        await until(lambda: hub1.seq("BTCUSDT", "1s") >= seq + 3, 30, "more bars")
    # the ingest stopped (drained into the store): what both hubs hold equals the store's bars
    assert "offline" in (await _offline(rt1)).state
    db = cfg.storage.replay_db_path
    for sym, tf in SERIES:
        for hub in (hub1, hub2):
            if tf == "1s" or hub.closed_bars(sym, tf):
                same_bars(hub.closed_bars(sym, tf), stored_bars(db, sym, tf))
        assert hub1.closed_bars(sym, tf)[-1:] == hub2.closed_bars(sym, tf)[-1:]
    assert len(hub1.closed_bars("BTCUSDT", "1s")) >= 11
    for rt in (rt1, rt2):
        await rt.stop()


async def _offline(rt: RemoteRuntime):
    await until(lambda: rt.status().state == "ingest offline", 10, "ingest offline")
    return rt.status()


async def test_a_redis_restart_is_ridden_out_with_no_gap_or_duplicate(tmp_path: Path, prefix):
    redis = LocalRedis().start()
    try:
        cfg = config_of(tmp_path, replay_tree(tmp_path, prefix, redis.url))
        async with Ingest(cfg, redis.url) as ing:
            rt, hub = await dashboard(cfg, redis.url)
            await until(lambda: len(hub.closed_bars("BTCUSDT", "1s")) >= 5, 60, "bars via Redis")
            redis.kill()  # a crash: everything in it is gone
            await until(lambda: "offline" in rt.status().state, 10, "the dashboard saying the ingest is offline")
            assert "broker unreachable" in rt.status().error
            seq = hub.seq("BTCUSDT", "1s")
            await asyncio.sleep(2)  # bars close in the ingest meanwhile
            assert hub.seq("BTCUSDT", "1s") == seq
            redis.start()  # same port, empty
            await until(lambda: rt.status().state == "connected", 20, "the dashboard back online")
            await until(lambda: hub.seq("BTCUSDT", "1s") >= seq + 4, 30, "bars flowing again")
            assert ing.publisher.errors > 0
            await rt.stop()
            # a dashboard started after the restart gets the buffered bars the publisher refilled
            rt2, hub2 = await dashboard(cfg, redis.url)
            assert len(hub2.closed_bars("BTCUSDT", "1s")) >= len(hub.closed_bars("BTCUSDT", "1s")) - 2
            await rt2.stop()
        db = cfg.storage.replay_db_path
        same_bars(hub.closed_bars("BTCUSDT", "1s"), stored_bars(db, "BTCUSDT", "1s"))
        same_bars(hub2.closed_bars("BTCUSDT", "1s"), stored_bars(db, "BTCUSDT", "1s"))
    finally:
        redis.close()

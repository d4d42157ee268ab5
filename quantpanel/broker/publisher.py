"""The ingest side: the one runtime's outputs published to Redis Streams, its commands served.

Closed bars are *synced*, not queued: the publisher keeps each series' newest ``buffer_bars``
closed bars and, on every flush, appends to the series' stream the ones newer than the stream's
last entry (read back from Redis on every (re)connect). So a restarted ingest (its bars warmed from
the store) fills exactly the bars it had not published, a restarted Redis gets the buffer again, and
no bar is published twice. Forming bars are coalesced to the newest per series per flush. Alerts
and market data wait in a bounded queue while Redis is away. Nothing in the store depends on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import orjson
import pandas as pd

from quantpanel.alerts.engine import Alert
from quantpanel.alerts.rules import Rule
from quantpanel.broker.keys import BROKER_ERRORS, Keys, connect
from quantpanel.errors import QuantPanelError
from quantpanel.models import Bar, MarketBatch
from quantpanel.pipeline.bars import BarUpdate
from quantpanel.pipeline.codec import ALERTS, BARS, LIQUIDATIONS, MARKS, decode_message, encode_message, encode_view
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.ohlc import OhlcSeries

__all__ = ["Publisher", "QUEUE_MAX"]

log = logging.getLogger(__name__)
QUEUE_MAX = 100_000  # alert and market messages held while Redis is away (oldest dropped beyond)
_FLUSH_S = 0.02  # coalescing window: one Redis round trip per flush, not per tick


class Publisher:
    """``await Publisher(runtime, url).run()`` publishes until cancelled, reconnecting with backoff."""

    def __init__(self, runtime: Runtime, url: str) -> None:
        cfg = runtime.config
        self.runtime, self.url, self.keys = runtime, url, Keys(cfg.broker.prefix)
        # redis-py types replies as unions of every encoding: checked where they are read
        self.redis: Any = connect(url, cfg.broker.command_timeout_s)
        self._n = cfg.dashboard.buffer_bars
        self._closed: dict[tuple[str, str], deque[Bar]] = {}
        self._published: dict[tuple[str, str], int] = {}  # newest bar time in each stream
        self._dirty: set[tuple[str, str]] = set()
        self._forming: dict[tuple[str, str], Bar] = {}
        self._queue: deque[tuple[str, bytes]] = deque(maxlen=QUEUE_MAX)
        self._marks: list[Any] = []
        self._liqs: list[Any] = []
        self._views: set[str] = set()
        self._wake = asyncio.Event()
        self._serving: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.connected = False
        self.synced = asyncio.Event()  # the first sync after (re)connecting is done
        self.errors = 0
        self.last_error = ""

    # -- sinks (event loop) --------------------------------------------------------------------
    def attach(self, rt: Runtime) -> None:
        """Follow the runtime's outputs (on ready); the warm history is what streams may lack."""
        for key, bars in rt.ingestion.history.items():
            self._keep(key, [b for b in bars if b.closed])
        pipeline = rt.ingestion.pipeline
        pipeline.updates.sink(self.on_update)
        rt.on_rebuilt(self.on_rebuilt)
        rt.rules.alerting.alerts.sink(self.on_alerts)
        pipeline.market.updates.sink(self.on_market)
        rt.on_symbols(self.on_symbols)

    def _keep(self, key: tuple[str, str], bars: list[Bar]) -> None:
        if bars:
            self._closed.setdefault(key, deque(maxlen=self._n)).extend(bars)
            self._dirty.add(key)

    def on_update(self, update: BarUpdate) -> None:
        for b in update.closed:
            self._keep((b.symbol, b.timeframe), [b])
            self._forming.pop((b.symbol, b.timeframe), None)
        for b in update.forming:
            self._forming[(b.symbol, b.timeframe)] = b
        self._wake.set()

    def on_rebuilt(self, bars: list[Bar]) -> None:
        for b in bars:  # the kept copies too: a stream resynced later carries the rebuilt values
            kept = self._closed.get((b.symbol, b.timeframe))
            if kept:
                for i, old in enumerate(kept):
                    if old.time == b.time:
                        kept[i] = b
        self._queue.append((self.keys.rebuilt, encode_message("bars", BARS.dump(bars))))
        self._wake.set()

    def on_alerts(self, alerts: list[Alert]) -> None:
        self._queue.append((self.keys.alerts, encode_message("alerts", ALERTS.dump(alerts))))
        self._wake.set()

    def on_market(self, batch: MarketBatch) -> None:
        self._marks.extend(batch.marks)
        self._liqs.extend(batch.liquidations)
        self._views.update(q.symbol for q in batch.quotes)
        self._views.update(m.symbol for m in batch.marks)
        self._views.update(x.symbol for x in batch.liquidations)
        self._views.update(o.symbol for o in batch.open_interest)
        self._wake.set()

    def on_symbols(self, symbol: str, history: dict[tuple[str, str], list[Bar]] | None) -> None:
        if history is None:
            for key in [k for k in self._closed if k[0] == symbol]:
                del self._closed[key]
                self._forming.pop(key, None)
            return
        for key, bars in history.items():
            self._keep(key, [b for b in bars if b.closed])
        self.synced.clear()  # read its streams' positions first: a re-added symbol's bars may be there
        self._wake.set()

    # -- the loops -----------------------------------------------------------------------------
    async def run(self) -> None:
        await self.runtime.started.wait()
        self.attach(self.runtime)
        tasks = [asyncio.create_task(self._flushing(), name="broker-flush"),
                 asyncio.create_task(self._heartbeat(), name="broker-heartbeat"),
                 asyncio.create_task(self._commands(), name="broker-commands")]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)  # cancelling run leaves them be
            for t in tasks:
                if t.done() and not t.cancelled():
                    t.result()  # its error, raised
        finally:
            # the loops end after their current (at most 1 s) blocking read: a read cancelled
            # mid-way can leave redis-py waiting on its connection
            self._stopping = True
            self._wake.set()
            _, pending = await asyncio.wait(tasks, timeout=3)
            for t in pending:
                t.cancel()
            with contextlib.suppress(*BROKER_ERRORS, TimeoutError):  # Redis may be the one that is gone
                await asyncio.wait_for(self.redis.delete(self.keys.status), 2)  # dashboards: offline at once
            await self.redis.aclose()

    async def _retrying(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` forever; on a broker error back off (the runtime's feed backoff) and resync."""
        fcfg = self.runtime.config.feed
        delay = fcfg.backoff_initial_s
        while not self._stopping:
            try:
                await step()
                delay = fcfg.backoff_initial_s
            except Exception as exc:  # a Redis error reply or a bad entry must not end the ingest
                self.errors += 1
                self.last_error = f"{what}: {exc}"
                if not isinstance(exc, BROKER_ERRORS):
                    log.exception("broker %s: %s failed; retrying", self.url, what)
                elif self.connected:
                    log.warning("broker %s unreachable (%s): retrying with backoff", self.url, exc)
                self.connected = False
                self.synced.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, fcfg.backoff_max_s)

    async def _flushing(self) -> None:
        async def step() -> None:
            if not self.synced.is_set():
                await self._read_positions()
                self.connected = True
                self._dirty.update(self._closed)
                await self._flush()
                self.synced.set()
                log.info("publishing to %s (prefix %s)", self.url, self.keys.prefix)
            await self._wake.wait()
            await asyncio.sleep(_FLUSH_S)
            self._wake.clear()
            await self._flush()
        await self._retrying("publish", step)

    async def _read_positions(self) -> None:
        """The newest bar time of every series' stream: what is published already."""
        keys = list(self._closed)
        pipe = self.redis.pipeline(transaction=False)
        for sym, tf in keys:
            pipe.xrevrange(self.keys.bars(sym, tf), count=1)
        for key, last in zip(keys, await pipe.execute(), strict=True):
            self._published[key] = BARS.load(decode_message(last[0][1][b"d"], "bars"))[0].time if last else -1

    async def _flush(self) -> None:
        """One pipelined round trip. What arrives while it is in flight waits for the next; what
        it carried is taken off only once Redis has it (else it goes again after reconnecting)."""
        k, maxlen = self.keys, self.runtime.config.broker.maxlen
        pipe = self.redis.pipeline(transaction=False)
        # forming bars first: a reader woken by the first write of the round trip then has the
        # new bar before the one it closes, never a closed bar with no forming bar after it
        forming, self._forming = self._forming, {}
        if forming:
            pipe.xadd(k.forming, {"d": encode_message("bars", BARS.dump(forming.values()))}, maxlen=maxlen)
            pipe.hset(k.snapshot, mapping={f"forming:{sym}:{tf}": encode_message("bars", BARS.dump([b]))
                                           for (sym, tf), b in forming.items()})
        dirty, self._dirty = self._dirty, set()
        sent: dict[tuple[str, str], int] = {}
        for key in dirty:
            newest = self._published.get(key, -1)
            for b in self._closed.get(key, ()):
                if b.time > newest:
                    pipe.xadd(k.bars(*key), {"d": encode_message("bars", BARS.dump([b]))}, maxlen=maxlen)
                    newest = b.time
                    sent[key] = newest
        marks, liqs, views = self._marks, self._liqs, self._views
        self._marks, self._liqs, self._views = [], [], set()
        market = self._market_message(marks, liqs, views)
        queued = [self._queue.popleft() for _ in range(len(self._queue))]
        for key_, data in queued + ([(k.market, market)] if market else []):
            pipe.xadd(key_, {"d": data}, maxlen=maxlen)
        try:
            await pipe.execute()
        except BaseException:
            self._dirty |= dirty
            self._forming = {**forming, **self._forming}  # a newer forming bar wins
            self._queue.extendleft(reversed(queued))  # the oldest go first once Redis is back
            self._marks = (marks + self._marks)[-QUEUE_MAX:]  # the charts' newest points, bounded
            self._liqs = (liqs + self._liqs)[-QUEUE_MAX:]
            self._views |= views
            raise
        self._published.update(sent)

    def _market_message(self, marks: list[Any], liqs: list[Any], symbols: set[str]) -> bytes | None:
        if not (marks or liqs or symbols):
            return None
        views = self.runtime.ingestion.pipeline.market.views
        return encode_message("market", {"marks": MARKS.dump(marks), "liquidations": LIQUIDATIONS.dump(liqs),
                                         "views": {s: encode_view(views[s]) for s in symbols if s in views}})

    async def _heartbeat(self) -> None:
        bcfg = self.runtime.config.broker

        async def step() -> None:
            await self.redis.set(self.keys.status, encode_message("status", self.state()),
                                 px=int(bcfg.offline_after_s * 1000))
            await asyncio.sleep(bcfg.heartbeat_s)
        await self._retrying("heartbeat", step)

    def state(self) -> dict[str, Any]:
        """The heartbeat: everything a dashboard shows that is not a series."""
        rt = self.runtime
        replay = rt.replay.active
        views = rt.ingestion.pipeline.market.views
        series = sorted(rt.ingestion.pipeline.bar_state.series)
        return {"status": asdict(rt.status()), "symbols": rt.symbols, "timeframes": list(rt.config.timeframes),
                "series": [list(k) for k in series],
                "rules": [[r.model_dump(mode="json"), why] for r, why in rt.rules.alerting.all_rules()],
                "replaying": replay, "time_range": list(rt.replay.time_range()) if replay else None,
                "db_path": rt.db_path, "views": {s: encode_view(v) for s, v in views.items()},
                "sent_ms": int(time.time() * 1000), "pid": _pid()}

    # -- commands --------------------------------------------------------------------------------
    async def _commands(self) -> None:
        last: list[bytes | str] = []

        async def step() -> None:
            if not last:  # commands sent while no ingest ran are not acted on later
                newest = await self.redis.xrevrange(self.keys.commands, count=1)
                last.append(newest[0][0] if newest else b"0-0")
            got = await self.redis.xread({self.keys.commands: last[-1]}, block=1000, count=100)
            for _, entries in got or []:
                for entry_id, fields in entries:
                    last.append(entry_id)
                    del last[:-1]
                    task = asyncio.create_task(self._serve(entry_id, fields))
                    self._serving.add(task)
                    task.add_done_callback(self._serving.discard)
        await self._retrying("commands", step)

    async def _serve(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        request = fields.get(b"id", b"").decode()
        try:
            op = fields[b"op"].decode()
            args = orjson.loads(fields.get(b"args", b"{}"))
            reply: dict[str, Any] = {"ok": await self._act(op, args, fields.get(b"data", b""))}
        except (QuantPanelError, ValueError, KeyError, TypeError) as exc:
            reply = {"error": str(exc), "type": type(exc).__name__}
        except Exception as exc:  # a bug: answered, logged, the ingest keeps running
            log.exception("broker command %r failed", fields.get(b"op"))
            reply = {"error": f"the ingest process failed: {exc}", "type": "RuntimeError"}
        bcfg = self.runtime.config.broker
        with contextlib.suppress(*BROKER_ERRORS):
            pipe = self.redis.pipeline(transaction=False)
            if fields.get(b"data"):  # an uploaded file: not kept in Redis once stored
                pipe.xdel(self.keys.commands, entry_id)
            # the state after the action, before the reply: the asker's next read shows it
            pipe.set(self.keys.status, encode_message("status", self.state()), px=int(bcfg.offline_after_s * 1000))
            if request:
                pipe.rpush(self.keys.reply(request), encode_message("reply", reply))
                pipe.expire(self.keys.reply(request), 60)
            await pipe.execute()
        self._wake.set()

    async def _act(self, op: str, a: dict[str, Any], data: bytes) -> Any:
        rt = self.runtime
        if op == "add_symbol":
            return await rt.add_symbol(a["text"])
        if op == "remove_symbol":
            return await rt.remove_symbol(a["symbol"])
        if op == "save_rule":
            return (await rt.rules.save(Rule.model_validate(a["rule"]))).model_dump(mode="json")
        if op == "delete_rule":
            return await rt.rules.delete(int(a["id"]))
        if op == "replay":
            action = a["action"]
            if action in ("pause", "resume"):
                return getattr(rt.replay, action)()
            if action == "set_speed":
                return rt.replay.set_speed(float(a["speed"]))
            if action == "jump":
                return rt.replay.jump(int(a["time_ms"]))
            if action == "replay_stored":
                return await asyncio.to_thread(rt.replay.replay_stored, list(a["symbols"]),
                                               int(a["start_ms"]), int(a["end_ms"]))
            raise ValueError(f"unknown replay action {action!r}")
        if op == "store_ohlc":
            return await rt.stored.store_ohlc([_ohlc(s) for s in a["series"]])
        if op == "import_trades":
            res = await rt.stored.import_trades(a["name"], data)
            return {"path": str(res.path), "read": res.read, "stored": res.stored, "symbols": sorted(res.symbols),
                    "skipped": res.skipped, "synthesised": res.synthesised, "bars": res.bars,
                    "seconds": res.seconds}
        raise ValueError(f"unknown broker command {op!r}")


def _ohlc(d: dict[str, Any]) -> OhlcSeries:
    frame = pd.DataFrame({c: [math.nan if v is None else v for v in vs] for c, vs in d["columns"].items()})
    return OhlcSeries(d["symbol"], d["timeframe"], frame)


def _pid() -> int:
    import os
    return os.getpid()

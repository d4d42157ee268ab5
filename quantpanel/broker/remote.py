"""The dashboard side: what ``quantpanel serve --broker`` runs instead of a ``Runtime``.

``RemoteRuntime`` offers the hub the surface it uses of a runtime (history, the output streams,
status, rules, replay controls, symbols, the database) but owns no feed and no pipeline: a reader
follows the ingest's streams, deduplicating bars by time (an ingest restarted mid-bar may close a
bar again), and every action on shared state goes to the ingest as a command and waits for its
reply. Pair analytics are computed here, by the same ``PairRegistry`` on the same closed bars: each
session's window and lookback cost this process, not the shared ingest. Stored series are read from
the database file directly (SQLite WAL: readers never block the ingest's writer).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from streamz import Stream

from quantpanel.alerts.engine import Alert
from quantpanel.alerts.rules import Rule
from quantpanel.broker.keys import BROKER_ERRORS, Keys, connect
from quantpanel.config import Config
from quantpanel.errors import FrameError, ImportFileError, QuantPanelError, ReplayError, SeriesNotFoundError, StoreError
from quantpanel.models import SPOT_SUFFIX, Bar, MarketBatch
from quantpanel.pipeline.bars import BarUpdate
from quantpanel.pipeline.codec import ALERTS, BARS, LIQUIDATIONS, MARKS, decode_message, decode_view
from quantpanel.pipeline.market import MarketView
from quantpanel.pipeline.pairs import PairRegistry
from quantpanel.pipeline.runtime import Status
from quantpanel.pipeline.stored import StoredData
from quantpanel.storage.importer import ImportResult
from quantpanel.storage.ohlc import OhlcSeries

__all__ = ["RemoteRuntime"]

log = logging.getLogger(__name__)
_ERRORS: dict[str, type[Exception]] = {c.__name__: c for c in (
    ValueError, ReplayError, StoreError, SeriesNotFoundError, ImportFileError, QuantPanelError)}
History = dict[tuple[str, str], list[Bar]]


class RemoteMarket:
    """The newest market values per symbol and the batches of marks and liquidations."""

    def __init__(self) -> None:
        self.views: dict[str, MarketView] = {}
        self.updates = Stream(asynchronous=True)

    def put(self, view: MarketView) -> None:
        """Keep ``view`` unless a newer one is held: a heartbeat written before a market message
        that was read first must not take its values back."""
        held = self.views.get(view.symbol)
        if held is None or view.updated_ms >= held.updated_ms:
            self.views[view.symbol] = view


class RemotePipeline:
    """The output streams of the ingest's pipeline, rebuilt from the broker's messages."""

    def __init__(self) -> None:
        self.updates = Stream(asynchronous=True)
        self.closed = self.updates.map(lambda u: u.closed).filter(bool)
        self.pairs = PairRegistry()
        self.pair_points = self.closed.map(self.pairs.update).filter(bool)
        self.market = RemoteMarket()
        self.last: dict[tuple[str, str], int] = {}  # newest closed bar time per series

    def apply(self, closed: list[Bar], forming: list[Bar]) -> None:
        """Emit what is new: a bar at or before a series' newest closed one is a duplicate."""
        new, last = [], self.last
        for b in closed:
            key = (b.symbol, b.timeframe)
            if b.time > last.get(key, -1):
                last[key] = b.time
                new.append(b)
        now = [b for b in forming if b.time > last.get((b.symbol, b.timeframe), -1)]
        if new or now:
            self.updates.emit(BarUpdate(tuple(new), tuple(now)))


@dataclasses.dataclass
class RemoteIngestion:
    history: History
    pipeline: RemotePipeline


class RemoteAlerting:
    def __init__(self, runtime: RemoteRuntime) -> None:
        self._rt = runtime
        self.alerts = Stream(asynchronous=True)

    def all_rules(self) -> list[tuple[Rule, str | None]]:
        return [(Rule.model_validate(r), why) for r, why in self._rt.state.get("rules", [])]


class RemoteRules:
    """The ingest's rule book: listed from its heartbeat, edited by command."""

    def __init__(self, runtime: RemoteRuntime) -> None:
        self._rt = runtime
        self.alerting = RemoteAlerting(runtime)
        self.recent: list[Alert] = []

    def recent_alerts(self, last: int) -> list[Alert]:
        return self.recent[-last:]

    async def save(self, rule: Rule) -> Rule:
        saved = Rule.model_validate(await self._rt.call("save_rule", {"rule": rule.model_dump(mode="json")}))
        await self._rt.refresh_state()  # the edited rule book shows at once, not a heartbeat later
        return saved

    async def delete(self, rule_id: int) -> None:
        await self._rt.call("delete_rule", {"id": rule_id})
        await self._rt.refresh_state()


class RemoteReplay:
    """The shared replay controls, acting on the ingest's exchange."""

    def __init__(self, runtime: RemoteRuntime) -> None:
        self._rt = runtime

    @property
    def active(self) -> bool:
        return bool(self._rt.state.get("replaying"))

    def _send(self, action: str, optimistic: dict[str, Any], **args: Any) -> None:
        if not self.active:
            raise ReplayError("replay controls need the replay source; the ingest is on the live feed")
        if not self._rt.online:
            raise ReplayError(f"the ingest process is offline (broker {self._rt.url}): try again when it is back")
        self._rt.state.get("status", {}).update(optimistic)  # shown now; the heartbeat confirms
        self._rt.spawn(self._rt.call("replay", {"action": action, **args}, offline=ReplayError))

    def pause(self) -> None:
        self._send("pause", {"paused": True})

    def resume(self) -> None:
        self._send("resume", {"paused": False})

    def set_speed(self, speed: float) -> None:
        self._send("set_speed", {"speed": speed}, speed=speed)

    def jump(self, time_ms: int) -> None:
        self._send("jump", {}, time_ms=time_ms)

    def time_range(self) -> tuple[int, int]:
        tr = self._rt.state.get("time_range")
        if not tr:
            raise ReplayError("replay controls need the replay source; the ingest is on the live feed")
        return int(tr[0]), int(tr[1])

    def stored_spans(self) -> list[tuple[str, int, int, int]]:
        """Blocking (reads the database)."""
        return self._rt.stored.tick_spans(self._rt.symbols)

    def replay_stored(self, symbols: list[str], start_ms: int, end_ms: int) -> int:
        """Blocking: call from a worker thread (the command runs on the loop)."""
        assert self._rt.loop is not None, "started before any replay"
        fut = asyncio.run_coroutine_threadsafe(self._rt.call(
            "replay", {"action": "replay_stored", "symbols": symbols, "start_ms": start_ms, "end_ms": end_ms},
            offline=ReplayError), self._rt.loop)
        return int(fut.result())


class RemoteStored(StoredData):
    """Reads from the database file; uploads go to the ingest, whose writer stores them."""

    def __init__(self, cfg: Config, db_path: Path, runtime: RemoteRuntime) -> None:
        super().__init__(cfg, db_path, None)
        self._rt = runtime

    async def store_ohlc(self, series: list[OhlcSeries]) -> int:
        payload = [{"symbol": s.symbol, "timeframe": s.timeframe,
                    "columns": {c: s.frame[c].tolist() for c in s.frame.columns}} for s in series]
        return int(await self._rt.call("store_ohlc", {"series": payload}, offline=StoreError))

    async def import_trades(self, name: str, data: bytes,
                            progress: Callable[[int, int], None] | None = None) -> ImportResult:
        r = await self._rt.call("import_trades", {"name": name}, data=data, offline=StoreError)
        if progress:
            progress(r["read"], r["read"])
        return ImportResult(Path(r["path"]), r["read"], r["stored"], set(r["symbols"]), r["skipped"], r["synthesised"],
                            bars=r["bars"], seconds=r["seconds"])


class RemoteRuntime:
    """Start with ``await start()`` (waits for the ingest's first heartbeat); ``stop()`` to close."""

    stored: StoredData

    def __init__(self, config: Config, url: str) -> None:
        self.config, self.url, self.keys = config, url, Keys(config.broker.prefix)
        self.mode = "broker"
        self.source_kind = "STARTING"
        self.error = ""
        self.started = asyncio.Event()
        # redis-py types replies as unions of every encoding: checked where they are read
        self.redis: Any = connect(url, config.broker.command_timeout_s)
        self.ingestion = RemoteIngestion({}, RemotePipeline())
        self.rules = RemoteRules(self)
        self.replay = RemoteReplay(self)
        self.state: dict[str, Any] = {}
        self._state_at = 0.0  # monotonic time of the last heartbeat read
        self._broker_error = ""
        self._positions: dict[str, bytes] = {}
        self._on_ready: list[Callable[[Any], None]] = []
        self._on_rebuilt: list[Callable[[list[Bar]], None]] = []
        self._on_symbols: list[Callable[[str, History | None], None]] = []
        self._on_rules: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # -- the runtime's surface -------------------------------------------------------------------
    @property
    def db_path(self) -> str | None:
        return str(self.stored.db_path) if self.started.is_set() else None

    @property
    def symbols(self) -> list[str]:
        return list(self.state.get("symbols") or self.config.symbols)

    def on_ready(self, callback: Callable[[Any], None]) -> None:
        if self.started.is_set():
            callback(self)
        else:
            self._on_ready.append(callback)

    def on_rebuilt(self, callback: Callable[[list[Bar]], None]) -> None:
        self._on_rebuilt.append(callback)

    def on_symbols(self, callback: Callable[[str, History | None], None]) -> None:
        self._on_symbols.append(callback)

    def on_rules(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the ingest's rule book changed (an edit from any dashboard)."""
        self._on_rules.append(callback)

    async def add_symbol(self, text: str) -> str:
        symbol = str(await self.call("add_symbol", {"text": text}))
        await self.refresh_state()
        return symbol

    async def remove_symbol(self, symbol: str) -> None:
        await self.call("remove_symbol", {"symbol": symbol})
        await self.refresh_state()

    @property
    def online(self) -> bool:
        """A heartbeat of the ingest was read within ``broker.offline_after_s``."""
        return bool(self.state) and not self._broker_error and (
            time.monotonic() - self._state_at < self.config.broker.offline_after_s)

    def status(self) -> Status:
        raw = self.state.get("status")
        if self.error:  # start-up failed (hub._start says why)
            return Status("STARTING", f"broker {self.url}", False, "failed", 0.0, None, 0, 0, 0, "", self.error)
        if raw is None:
            why = self._broker_error or "waiting for its first heartbeat"
            return Status("STARTING", f"broker {self.url}", False, "waiting for ingest", 0.0, None, 0, 0, 0, "",
                          f"no ingest process on {self.url} yet ({why}): start `quantpanel ingest --broker {self.url}`")
        st = Status(**{**raw, "silent_streams": tuple(raw.get("silent_streams", ()))})
        if self.online:
            return st
        age = time.monotonic() - self._state_at
        why = self._broker_error or f"no heartbeat for {age:.0f} s"
        return dataclasses.replace(st, state="ingest offline", ticks_per_s=0.0,
                                   error=f"ingest offline ({why}); charts resume when it is back")

    # -- commands ----------------------------------------------------------------------------------
    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("broker command failed: %s", task.exception())

    async def call(self, op: str, args: dict[str, Any], *, data: bytes = b"",
                   offline: type[Exception] = ValueError) -> Any:
        """Send a command to the ingest and wait for its reply; its error is raised here, as the
        same type. No ingest or no broker: ``offline`` with a one-line message."""
        if not self.online:
            raise offline(f"the ingest process is offline (broker {self.url}): try again when it is back")
        request = uuid.uuid4().hex
        timeout = self.config.broker.command_timeout_s
        try:
            await self.redis.xadd(self.keys.commands, {"id": request, "op": op, "args": orjson.dumps(args),
                                                       "data": data}, maxlen=1000)
            got = await self.redis.blpop([self.keys.reply(request)], timeout=timeout)
        except BROKER_ERRORS as exc:
            raise offline(f"broker {self.url} unreachable: {exc}") from None
        if got is None:
            raise offline(f"the ingest process did not answer {op!r} within {timeout:g} s (broker {self.url})")
        reply = decode_message(got[1], "reply")
        if "error" in reply:
            raise _ERRORS.get(reply.get("type", ""), QuantPanelError)(reply["error"])
        return reply["ok"]

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        delay = self.config.feed.backoff_initial_s
        while not await self._read_state():
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.feed.backoff_max_s)
        st = self.state
        self.config = self.config.model_copy(update={"symbols": tuple(st["symbols"]),
                                                     "timeframes": tuple(st["timeframes"])})
        self.stored = RemoteStored(self.config, Path(st["db_path"]), self)
        while True:
            try:
                self.ingestion.history = await self._snapshot(self.symbols)
                break
            except BROKER_ERRORS as exc:
                self._broker_error = str(exc)
                await asyncio.sleep(delay)
        for bars in self.ingestion.history.values():
            closed = [b for b in bars if b.closed]
            if closed:
                self.ingestion.pipeline.last[(closed[0].symbol, closed[0].timeframe)] = closed[-1].time
        self.source_kind = st["status"]["source"]
        log.info("following the ingest on %s: %s", self.url, ", ".join(self.symbols))
        self.started.set()
        for cb in self._on_ready:
            cb(self)
        self._on_ready.clear()
        self.spawn(self._reading())
        self.spawn(self._heartbeats())

    async def stop(self) -> None:
        """Stop reading. The loops end after their current (at most 1 s) blocking read; a read
        cancelled mid-way can leave redis-py waiting on its connection, so none is cancelled
        until they had that chance."""
        self._stopping = True
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=3)
            for t in pending:
                t.cancel()
        await self.redis.aclose()

    async def _read_state(self) -> bool:
        """Read the ingest's heartbeat; False when there is none (or no broker)."""
        try:
            raw = await self.redis.get(self.keys.status)
        except BROKER_ERRORS as exc:
            self._broker_error = f"broker unreachable: {exc}"
            return False
        self._broker_error = ""
        if raw is None:  # expired, or deleted by an ingest stopping: offline now
            self._state_at = -math.inf
            return False
        rules = self.state.get("rules")
        try:
            self.state = decode_message(raw, "status")
        except FrameError as exc:
            self._broker_error = str(exc)
            log.error("%s: %s", self.keys.status, exc)
            return False
        self._state_at = time.monotonic()
        if rules is not None and self.state.get("rules") != rules:
            for cb in self._on_rules:
                cb()
        market = self.ingestion.pipeline.market
        for v in self.state.get("views", {}).values():
            market.put(decode_view(v))
        return True

    async def refresh_state(self) -> None:
        if await self._read_state():
            await self._follow_symbols()

    async def _heartbeats(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.broker.heartbeat_s)
            try:
                await self.refresh_state()
            except Exception as exc:  # the next beat tries again; the status says why
                self._broker_error = f"broker: {exc}"
                log.warning("broker %s: reading the ingest's state failed: %s", self.url, exc)

    async def _follow_symbols(self) -> None:
        """Series streams of symbols the ingest added are read from their start; removed ones dropped."""
        now = list(self.state.get("symbols", []))
        followed = list(self.config.symbols)
        if now == followed:
            return
        added = {sym: await self._series_history([sym]) for sym in now if sym not in followed}
        self.config = self.config.model_copy(update={"symbols": tuple(now)})  # once all is read
        for sym in [s for s in followed if s not in now]:
            for key in [k for k in self.ingestion.pipeline.last if k[0] in (sym, sym + SPOT_SUFFIX)]:
                self._positions.pop(self.keys.bars(*key), None)
                self.ingestion.pipeline.last.pop(key, None)
            for cb in self._on_symbols:
                cb(sym, None)
        for sym, history in added.items():
            for key, bars in history.items():
                if bars:
                    self.ingestion.pipeline.last[key] = bars[-1].time
            for cb in self._on_symbols:
                cb(sym, history)

    def _series_of(self, symbols: list[str]) -> list[tuple[str, str]]:
        """The series the ingest builds for ``symbols`` (a spot twin's ``SYMBOL.SPOT`` included)."""
        wanted = set(symbols) | {s + SPOT_SUFFIX for s in symbols}
        return [(s, tf) for s, tf in self.state.get("series", []) if s in wanted]

    async def _series_history(self, symbols: list[str]) -> History:
        """The newest ``buffer_bars`` closed bars of each series; their positions are kept."""
        n = self.config.dashboard.buffer_bars
        keys = self._series_of(symbols)
        pipe = self.redis.pipeline(transaction=False)
        for s, tf in keys:
            pipe.xrevrange(self.keys.bars(s, tf), count=n)
        history: History = {}
        for (s, tf), entries in zip(keys, await pipe.execute(), strict=True):
            self._positions[self.keys.bars(s, tf)] = entries[0][0] if entries else b"0-0"
            history[(s, tf)] = [b for _, f in reversed(entries) for b in BARS.load(decode_message(f[b"d"], "bars"))]
        return history

    async def _snapshot(self, symbols: list[str]) -> History:
        """Where a new consumer starts: buffered bars, rebuilds over them, the forming bars, alerts."""
        history = await self._series_history(symbols)
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.xrange(k.rebuilt)
        pipe.hgetall(k.snapshot)
        pipe.xrevrange(k.alerts, count=self.config.alerts.log_rows)
        for stream in (k.forming, k.market):
            pipe.xrevrange(stream, count=1)
        rebuilt, snap, alerts, *tails = await pipe.execute()
        fixes = {(b.symbol, b.timeframe, b.time): b
                 for _, f in rebuilt for b in BARS.load(decode_message(f[b"d"], "bars"))}
        for key, bars in history.items():
            history[key] = [fixes.get((b.symbol, b.timeframe, b.time), b) for b in bars]
        for name, data in snap.items():
            if name.startswith(b"forming:"):
                b = BARS.load(decode_message(data, "bars"))[0]
                held = history.get((b.symbol, b.timeframe))
                if held is not None and (not held or b.time > held[-1].time):
                    held.append(b)
        self.rules.recent = [a for _, f in reversed(alerts) for a in ALERTS.load(decode_message(f[b"d"], "alerts"))]
        self._positions[k.rebuilt] = rebuilt[-1][0] if rebuilt else b"0-0"
        self._positions[k.alerts] = alerts[0][0] if alerts else b"0-0"
        for stream, tail in zip((k.forming, k.market), tails, strict=True):
            self._positions[stream] = tail[0][0] if tail else b"0-0"
        return history

    async def _reading(self) -> None:
        """Follow every stream from its position; on a broker error back off and carry on from
        the same positions (no gap, no duplicate)."""
        delay = self.config.feed.backoff_initial_s
        while not self._stopping:
            try:
                got = await self.redis.xread(dict(self._positions), block=1000, count=1000)
                delay = self.config.feed.backoff_initial_s
            except Exception as exc:  # unreachable, or an error reply: back off, same positions
                gone = isinstance(exc, BROKER_ERRORS)
                self._broker_error = f"broker unreachable: {exc}" if gone else f"broker: {exc}"
                log.warning("broker %s: %s; retrying in %.1f s", self.url, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.feed.backoff_max_s)
                continue
            for key, entries in got or []:
                name = key.decode()
                if name not in self._positions:
                    continue  # a symbol removed while the read was on its way
                self._positions[name] = entries[-1][0]
                try:
                    self._dispatch(name, [f[b"d"] for _, f in entries])
                except Exception:  # a bad entry, or a bug downstream: logged, the reader goes on
                    log.exception("%s: %d entries not applied", name, len(entries))

    def _dispatch(self, name: str, messages: list[bytes]) -> None:
        k, pipeline = self.keys, self.ingestion.pipeline
        if name == k.forming:
            newest: dict[tuple[str, str], Bar] = {}
            for m in messages:
                for b in BARS.load(decode_message(m, "bars")):
                    newest[(b.symbol, b.timeframe)] = b
            pipeline.apply([], list(newest.values()))
        elif name == k.rebuilt:
            bars = [b for m in messages for b in BARS.load(decode_message(m, "bars"))]
            for cb in self._on_rebuilt:
                cb(bars)
        elif name == k.alerts:
            alerts = [a for m in messages for a in ALERTS.load(decode_message(m, "alerts"))]
            self.rules.recent = (self.rules.recent + alerts)[-self.config.alerts.log_rows:]
            pipeline_alerts = self.rules.alerting.alerts
            pipeline_alerts.emit(alerts)
        elif name == k.market:
            for m in messages:
                d = decode_message(m, "market")
                for v in d["views"].values():
                    pipeline.market.put(decode_view(v))
                pipeline.market.updates.emit(MarketBatch(marks=tuple(MARKS.load(d["marks"])),
                                                         liquidations=tuple(LIQUIDATIONS.load(d["liquidations"])),
                                                         received_ms=int(time.time() * 1000)))
        else:  # a series' closed bars
            pipeline.apply([b for m in messages for b in BARS.load(decode_message(m, "bars"))], [])

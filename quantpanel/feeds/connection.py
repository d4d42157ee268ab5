"""The feed connection: one WebSocket per Binance route for all symbols' streams, micro-batched
into the pipeline.

The same code talks to Binance and to the local exchange; only the URL differs. It reconnects
with exponential backoff and jitter, a watchdog replaces a connection that went silent, and a
malformed frame is logged, counted and dropped without touching the rest of the stream.

``kinds`` are the per-symbol streams of this connection (``aggTrade``, ``markPrice@1s``,
``forceOrder`` on the market route; ``bookTicker`` on the public one). Binance acknowledges a
subscription on the wrong route and then never delivers it, so a stream that has sent nothing
``stream_silence_s`` after it was subscribed is reported by name (``FeedStats.silent_streams``);
``forceOrder`` is exempt: liquidations can be rare for hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from quantpanel.errors import FrameError
from quantpanel.feeds.binance_futures import (
    ControlMethod,
    combined_stream_url,
    control_message,
    is_agg_trade_frame,
    parse_frame,
    parse_trade_frames,
)
from quantpanel.feeds.binance_market import stream_name
from quantpanel.models import Liquidation, MarketBatch, MarkPrice, Quote, Tick, TickBatch

__all__ = ["FeedConnection", "FeedStats"]

log = logging.getLogger(__name__)
#: Streams that may legitimately stay quiet for long: never reported as silent.
_MAY_BE_QUIET = frozenset({"forceOrder"})


@dataclass
class FeedStats:
    """Counters and state the status strip and the benchmarks read."""

    state: str = "idle"  # idle | connecting | connected | backoff | stopped
    url: str = ""
    connects: int = 0
    reconnects: int = 0
    rollovers: int = 0  # proactive replacements before the exchange's connection age limit
    watchdog_reconnects: int = 0
    connect_failures: int = 0
    frames: int = 0
    ticks: int = 0
    batches: int = 0
    malformed: int = 0
    quotes: int = 0  # bookTicker updates
    marks: int = 0  # markPriceUpdates
    liquidations: int = 0  # forceOrders
    other_events: Counter[str] = field(default_factory=Counter)
    silent_streams: dict[str, str] = field(default_factory=dict)  # stream -> why it is reported
    last_error: str = ""
    last_event_ms: int = 0  # exchange event time E of the newest tick
    last_tick_ms: int = 0  # trade time T of the newest tick
    last_recv_wall_ms: int = 0  # local wall clock when the newest tick arrived


class FeedConnection:
    """Stream ``kinds`` of ``symbols`` from ``base_url``: trades as ``TickBatch``es to ``on_batch``,
    quotes, marks and liquidations as ``MarketBatch``es to ``on_market``.

    Both are called on the event loop, in arrival order, at most every ``batch_interval_ms`` or
    whenever ``batch_max_ticks`` ticks are pending.
    """

    def __init__(
        self,
        base_url: str,
        symbols: Iterable[str],
        on_batch: Callable[[TickBatch], object],
        *,
        batch_max_ticks: int = 500,
        batch_interval_ms: int = 75,
        silence_timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_connection_age_s: float = 0.0,
        kinds: Iterable[str] = ("aggTrade",),
        on_market: Callable[[MarketBatch], object] | None = None,
        stream_silence_s: float = 15.0,
        suffix: str = "",
    ) -> None:
        self.base_url = base_url
        self.symbols: list[str] = [s.upper() for s in symbols]
        self.kinds: tuple[str, ...] = tuple(kinds)
        self.on_batch = on_batch
        self.on_market = on_market
        self.stream_silence = stream_silence_s
        self.suffix = suffix  # appended to every tick's symbol (a spot twin's trades: BTCUSDT.SPOT)
        self.batch_max = batch_max_ticks
        self.batch_interval = batch_interval_ms / 1000
        self.silence_timeout = silence_timeout_s
        self.expect_silence = False
        self.on_connect: Callable[[], object] | None = None  # after every (re)connect: the backfill's probe
        self.connect_timeout = connect_timeout_s
        self.backoff_initial = backoff_initial_s
        self.backoff_max = backoff_max_s
        self.max_age = max_connection_age_s  # 0 = never roll over
        self.stats = FeedStats(url=base_url)
        self.connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._pending: list[Tick] = []
        self._raw_trades: list[str] = []  # aggTrade frames not yet parsed: parsed as one batch at the flush
        self._quotes: list[Quote] = []
        self._marks: list[MarkPrice] = []
        self._liquidations: list[Liquidation] = []
        self._awaited: dict[str, float] = {}  # stream -> when subscribed, until its first frame
        self._max_event = 0
        self._stopping = False
        self._stopped = asyncio.Event()
        self._next_id = 1
        self._replies: dict[int, asyncio.Future[object]] = {}
        self._last_frame = 0.0
        self._silent = False  # the watchdog closed the current connection

    # -- control -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, stream, reconnect; returns only after ``stop()``."""
        attempt = 0
        flusher = asyncio.get_running_loop().create_task(self._flush_periodically())
        try:
            while not self._stopping:
                url = combined_stream_url(self.base_url, self.streams())
                self.stats.state = "connecting"
                self.stats.url = url
                started = time.monotonic()
                try:
                    await self._session(url)
                except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
                    self.stats.last_error = (
                        f"no frame for {self.silence_timeout:g} s: replaced by the watchdog"
                        if self._silent else f"{type(exc).__name__}: {exc}")
                    if not self.connected.is_set() and time.monotonic() - started < self.connect_timeout + 1:
                        self.stats.connect_failures += 1
                    log.warning("feed %s: %s", url.split("?")[0], self.stats.last_error)
                finally:
                    self._ws = None
                    self._silent = False
                    self.connected.clear()
                    self._flush()
                    for fut in self._replies.values():
                        fut.cancel()
                    self._replies.clear()
                if self._stopping:
                    break
                self.stats.reconnects += 1
                # A connection that streamed for a while resets the backoff.
                attempt = 0 if time.monotonic() - started > 10 else attempt + 1
                delay = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt, 16))
                delay *= random.uniform(0.5, 1.0)
                self.stats.state = "backoff"
                log.info("feed reconnecting in %.2f s (attempt %d)", delay, attempt)
                with contextlib.suppress(TimeoutError):  # sleep, but wake at once on stop()
                    await asyncio.wait_for(self._stopped.wait(), delay)
        finally:
            flusher.cancel()
            self._flush()
            self.stats.state = "stopped"

    async def stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        if self._ws is not None:
            await self._ws.close()

    def streams(self, symbols: Iterable[str] | None = None) -> list[str]:
        """The stream names of ``symbols`` (default: all followed) on this connection."""
        return [stream_name(s, k) for s in (self.symbols if symbols is None else symbols) for k in self.kinds]

    async def subscribe(self, symbols: Iterable[str], timeout: float = 5.0) -> None:
        """Add symbols on the open connection (and to every later reconnect)."""
        new = [s.upper() for s in symbols if s.upper() not in self.symbols]
        self.symbols.extend(new)
        if new and self._ws is not None:
            await self._request("SUBSCRIBE", self.streams(new), timeout)
            self._await(self.streams(new))

    async def unsubscribe(self, symbols: Iterable[str], timeout: float = 5.0) -> None:
        """Remove symbols on the open connection (and from every later reconnect)."""
        gone = [s.upper() for s in symbols if s.upper() in self.symbols]
        self.symbols = [s for s in self.symbols if s not in gone]
        for name in self.streams(gone):
            self._awaited.pop(name, None)
            self.stats.silent_streams.pop(name, None)
        if gone and self._ws is not None:
            await self._request("UNSUBSCRIBE", self.streams(gone), timeout)

    async def list_subscriptions(self, timeout: float = 5.0) -> list[str]:
        result = await self._request("LIST_SUBSCRIPTIONS", [], timeout)
        return list(result) if isinstance(result, list) else []

    async def _request(self, method: ControlMethod, streams: list[str], timeout: float) -> object:
        if self._ws is None:
            raise ConnectionError(f"{method}: feed is not connected")
        rid, self._next_id = self._next_id, self._next_id + 1
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._replies[rid] = fut
        await self._ws.send(control_message(method, streams, rid).decode())
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._replies.pop(rid, None)

    # -- streaming -----------------------------------------------------------------------------
    async def _connect(self, url: str) -> ClientConnection:
        return await connect(url, open_timeout=self.connect_timeout, max_size=2**20, close_timeout=2)

    async def _session(self, url: str) -> None:
        ws = await self._connect(url)
        self._ws = ws
        self.stats.connects += 1
        self.stats.state = "connected"
        self.connected.set()
        log.info("feed connected to %s", url.split("?")[0])
        self._last_frame = time.monotonic()
        self._awaited.clear()
        self._await(self.streams())
        if self.on_connect is not None:
            self._flush()  # what arrived before stays ahead of the probe's trades
            self.on_connect()
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read(ws))
        watchdog = loop.create_task(self._watchdog())
        try:
            while True:
                timer = loop.create_task(asyncio.sleep(self.max_age or 2**31))
                await asyncio.wait({reader, timer}, return_when=asyncio.FIRST_COMPLETED)
                timer.cancel()
                if reader.done():
                    return reader.result()  # closed or failed: run() reconnects
                # Binance cuts a connection at 24 h: open the next one first, let both stream
                # until the new one delivers, then close the old (the ids drop the overlap).
                try:
                    new = await self._connect(combined_stream_url(self.base_url, self.streams()))
                except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                    log.warning("feed rollover failed (%s); keeping the current connection", exc)
                    continue
                first = asyncio.Event()
                new_reader = loop.create_task(self._read(new, first))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(first.wait(), self.connect_timeout)
                self.stats.rollovers += 1
                log.info("feed rolled over to a new connection (age %.0f s)", self.max_age)
                old, self._ws, ws = ws, new, new
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await old.close()
                reader = new_reader
        finally:
            watchdog.cancel()
            reader.cancel()
            if self._ws is not None and self._ws is not ws:
                await self._ws.close()
            await ws.close()

    async def _read(self, ws: ClientConnection, first: asyncio.Event | None = None) -> None:
        async for raw in ws:
            if first is not None and not first.is_set():
                first.set()
            self._on_frame(raw)

    def _await(self, streams: Iterable[str]) -> None:
        now = time.monotonic()
        for name in streams:
            if name.split("@", 1)[1] not in _MAY_BE_QUIET:
                self._awaited[name] = now

    def _heard(self, name: str) -> None:
        """``name`` delivered a frame: no longer awaited (nor reported silent)."""
        if self._awaited.pop(name, None) is not None and self.stats.silent_streams.pop(name, ""):
            log.info("feed: %s is delivering now", name)

    def _check_streams(self) -> None:
        """Report each subscribed stream that has sent nothing for ``stream_silence`` s."""
        now = time.monotonic()
        for name, since in self._awaited.items():
            if name not in self.stats.silent_streams and now - since > self.stream_silence:
                why = (f"{name} subscribed on {self.base_url} but silent for {self.stream_silence:g} s "
                       f"(acknowledged, never delivered: the wrong route or URL?)")
                self.stats.silent_streams[name] = why
                log.warning("feed: %s", why)

    async def _watchdog(self) -> None:
        """Close a connection that sent nothing for ``silence_timeout`` s, so run() reconnects;
        report streams that never delivered."""
        while True:
            await asyncio.sleep(min(self.silence_timeout / 4, 1.0))
            if self.expect_silence:  # the source is paused on purpose (a paused replay)
                self._last_frame = time.monotonic()
                for name in self._awaited:
                    self._awaited[name] = self._last_frame
                continue
            if self._awaited:
                self._check_streams()
            if time.monotonic() - self._last_frame > self.silence_timeout:
                self.stats.watchdog_reconnects += 1
                self._silent = True
                log.warning("feed silent for %.1f s: reconnecting", self.silence_timeout)
                if self._ws is not None:
                    self._ws.transport.abort()
                return

    def _on_frame(self, raw: str | bytes) -> None:
        """An aggTrade frame waits for its batch, parsed with it at the flush (``parse_trade_frames``,
        one decode for the batch); any other frame is parsed now."""
        self._last_frame = time.monotonic()
        self.stats.frames += 1
        if is_agg_trade_frame(raw):
            self._raw_trades.append(raw)  # type: ignore[arg-type]  # a str, by is_agg_trade_frame
            if len(self._raw_trades) >= self.batch_max:
                self._flush()
            return
        self._parse_one(raw)

    def _parse_one(self, raw: str | bytes) -> None:
        try:
            parsed = parse_frame(raw)
        except FrameError as exc:
            self.stats.malformed += 1
            log.warning("dropped malformed frame: %s", exc)
            return
        if parsed.__class__ is not tuple:
            self._on_other(parsed, raw)  # type: ignore[arg-type]
            return
        tick, event_ms = parsed  # type: ignore[misc]
        self._pending.append(tick)
        if event_ms > self._max_event:
            self._max_event = event_ms

    def _parse_trades(self) -> None:
        """The waiting aggTrade frames into ``_pending``, in arrival order: as one batch, or frame by
        frame when one of them is not a plain aggTrade frame (so it is refused and counted alone)."""
        raws, self._raw_trades = self._raw_trades, []
        batch = parse_trade_frames(raws)
        if batch is None:
            for raw in raws:
                self._parse_one(raw)
            return
        ticks, event_ms = batch
        self._pending.extend(ticks)
        if event_ms > self._max_event:
            self._max_event = event_ms

    def _on_other(self, parsed: Quote | MarkPrice | Liquidation | str, raw: str | bytes) -> None:
        st = self.stats
        if isinstance(parsed, Quote):
            self._quotes.append(parsed)
            st.quotes += 1
        elif isinstance(parsed, MarkPrice):
            self._marks.append(parsed)
            st.marks += 1
        elif isinstance(parsed, Liquidation):
            self._liquidations.append(parsed)
            st.liquidations += 1
        elif parsed in ("response", "error"):
            self._on_reply(raw)
        else:
            st.other_events[parsed] += 1

    def _on_reply(self, raw: str | bytes) -> None:
        msg = orjson.loads(raw)
        fut = self._replies.get(msg.get("id")) if isinstance(msg.get("id"), int) else None
        if "error" in msg:
            err = ConnectionError(f"exchange refused request: {msg['error']}")
            if fut and not fut.done():
                fut.set_exception(err)
            log.warning("%s", err)
            self.stats.other_events["error"] += 1
        elif fut and not fut.done():
            fut.set_result(msg.get("result"))

    def _flush(self) -> None:
        if self._raw_trades:
            self._parse_trades()
        if self._quotes or self._marks or self._liquidations:
            self._flush_market()
        if not self._pending:
            return
        ticks, self._pending = tuple(self._pending), []
        if self._awaited:
            for sym in {t.symbol for t in ticks}:
                self._heard(stream_name(sym, "aggTrade"))
        if self.suffix:
            ticks = tuple(t._replace(symbol=t.symbol + self.suffix) for t in ticks)
        now = int(time.time() * 1000)
        last = ticks[-1]
        st = self.stats
        st.ticks += len(ticks)
        st.batches += 1
        st.last_tick_ms = max(st.last_tick_ms, last.time)
        st.last_event_ms = max(st.last_event_ms, self._max_event)
        st.last_recv_wall_ms = now
        self.on_batch(TickBatch(ticks, now, self._max_event))

    def _flush_market(self) -> None:
        batch = MarketBatch(tuple(self._quotes), tuple(self._marks), tuple(self._liquidations),
                            int(time.time() * 1000))
        self._quotes, self._marks, self._liquidations = [], [], []
        if self._awaited:
            heard = {stream_name(q.symbol, "bookTicker") for q in batch.quotes}
            mark_kinds = [k for k in self.kinds if k.startswith("markPrice")]
            heard.update(stream_name(m.symbol, k) for m in batch.marks for k in mark_kinds)
            for name in heard:
                self._heard(name)
        if self.on_market is not None:
            self.on_market(batch)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.batch_interval)
            self._flush()

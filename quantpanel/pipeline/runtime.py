"""The runtime: owns the process's one pipeline, its feed connection and the asyncio tasks.

``source`` decides where ticks come from: ``live`` (Binance), ``replay`` (the local exchange on
bundled recorded data), or ``auto``: live if it connects within ``feed.connect_timeout_s``, else
replay, with the status saying so plainly. Replayed ticks go to their own database file.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from quantpanel.config import Config
from quantpanel.feeds.connection import FeedConnection
from quantpanel.feeds.exchange import Exchange
from quantpanel.models import Bar, TickBatch
from quantpanel.pipeline.bars import Clock
from quantpanel.pipeline.ingestion import Ingestion, build_ingestion, make_feed
from quantpanel.pipeline.replay_controls import ReplayControls, start_exchange
from quantpanel.pipeline.rulebook import RuleBook
from quantpanel.pipeline.stored import StoredData
from quantpanel.storage.writer import StoreWriter

__all__ = ["Runtime", "Status"]

log = logging.getLogger(__name__)
_CLOCK_PERIOD_S = 0.25
_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")


@dataclass(frozen=True)
class Status:
    """What the status strip shows; a snapshot, safe to hand to any session."""

    source: str  # LIVE | REPLAY | STARTING
    label: str  # what is being replayed, and whether it is real or simulated
    simulated: bool
    state: str  # connection state
    ticks_per_s: float
    last_tick_age_s: float | None
    ticks: int
    malformed: int
    reconnects: int
    db_path: str
    error: str
    replay_time_ms: int | None = None  # the replayed recording's own clock (REPLAY only)
    paused: bool = False
    speed: float = 1.0
    gaps: int = 0  # id gaps seen by the backfill
    backfilled: int = 0  # trades it fetched over REST
    gaps_unfilled: int = 0
    silent_streams: tuple[str, ...] = ()  # subscribed streams that never delivered (wrong route?)


class Runtime:
    """Start once per process with ``await runtime.start()``; stop with ``await runtime.stop()``.

    ``start`` builds what the run is made of, each a small object with one job: ``stored`` (reads
    of and uploads into the database, from ``open``), ``ingestion`` (feed, backfill, pipeline,
    writer), ``rules`` (the alert rule book) and ``replay`` (the shared replay controls). They
    exist once ``started`` is set; callbacks given to ``on_ready`` run then.
    """

    stored: StoredData
    ingestion: Ingestion
    rules: RuleBook
    replay: ReplayControls

    def __init__(self, config: Config, *, source: str | None = None) -> None:
        self.config = config
        self.mode = source or config.source
        self.source_kind = "STARTING"
        self.error = ""
        self.started = asyncio.Event()
        self._writer: StoreWriter | None = None  # set by open()
        self._exchange: Exchange | None = None
        self._probe: FeedConnection | None = None  # the live connection tried before the store opens
        self._probe_task: asyncio.Task[None] | None = None
        self._early: list[TickBatch] = []  # batches it delivered before the pipeline existed
        self._clock_task: asyncio.Task[None] | None = None
        self._on_ready: list[Callable[[Runtime], None]] = []
        self._on_rebuilt: list[Callable[[list[Bar]], None]] = []
        self._on_symbols: list[Callable[[str, dict[tuple[str, str], list[Bar]] | None], None]] = []

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def db_path(self) -> str | None:
        """The database this run stores into, once open."""
        return str(self.stored.db_path) if self._writer is not None else None

    def open(self, db: str | Path) -> StoredData:
        """Open the run's database (its writer thread and ``stored``), with no feed yet: enough
        for the analytics, Offline and Backtest views. ``start`` opens it unless done already."""
        if self._writer is None:
            self._writer = StoreWriter(db)
            # `panel serve` exits on SIGINT/SIGTERM without stopping us: drain queued writes then.
            atexit.register(self._writer.close)
            self.stored = StoredData(self.config, Path(db), self._writer)
        return self.stored

    def on_rebuilt(self, callback: Callable[[list[Bar]], None]) -> None:
        """Call ``callback(bars)`` on the event loop with the stored bars a late backfill rebuilt."""
        self._on_rebuilt.append(callback)

    def _rebuilt(self, bars: list[Bar]) -> None:
        for cb in self._on_rebuilt:
            cb(bars)

    def on_ready(self, callback: Callable[[Runtime], None]) -> None:
        """Call ``callback(runtime)`` once the run is built (now, if it already is)."""
        if self.started.is_set():
            callback(self)
        else:
            self._on_ready.append(callback)

    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        if self.mode in ("auto", "live") and await self._try_live():
            self.source_kind, db = "LIVE", cfg.storage.db_path
        elif self.mode == "live":
            self.error = f"cannot connect to {cfg.feed.ws_url}: {self._probe.stats.last_error if self._probe else ''}"
            log.error("%s; retrying in the background", self.error)
            self.source_kind, db = "LIVE", cfg.storage.db_path
        else:
            self._exchange = await start_exchange(cfg)
            self.source_kind, db = "REPLAY", cfg.storage.replay_db_path
        ex, stored = self._exchange, self.open(db)
        ing = self.ingestion = build_ingestion(
            cfg, stored.db_path, history_bars=cfg.dashboard.buffer_bars, feed=self._probe,
            ws_url=ex.market_url if ex else cfg.feed.ws_url, rest_url=ex.rest_url if ex else None,
            public_ws_url=ex.public_url if ex else cfg.feed.public_ws_url,
            spot_ws_url=ex.spot_url if ex else cfg.feed.spot_ws_url,
            writer=self._writer, on_rebuilt=lambda bars: loop.call_soon_threadsafe(self._rebuilt, bars))
        if tuple(ing.symbols) != cfg.symbols:  # the database's watch list added some
            self.config = cfg = cfg.model_copy(update={"symbols": tuple(ing.symbols)})
        self.rules = RuleBook(cfg, ing.pipeline, ing.writer, ing.db_path, ing.history)
        self.replay = ReplayControls(ex, ing.feeds, self.stored, list(cfg.symbols))
        early, self._early = self._early, []
        for batch in early:
            ing.on_batch(batch)
        ing.start(self._probe_task)
        self._clock_task = loop.create_task(self._clock(), name="clock")
        log.info("runtime started: %s, db %s", self.source_kind, db)
        self.started.set()
        for cb in self._on_ready:
            cb(self)
        self._on_ready.clear()

    async def stop(self) -> None:
        if self._clock_task is not None:  # no bar closes by the clock while the writer drains
            self._clock_task.cancel()
            await asyncio.gather(self._clock_task, return_exceptions=True)
        if self.started.is_set():
            await self.ingestion.stop(drain_s=10)  # feed, backfill, writer: as `record` stops
            self.rules.close()
        elif self._probe is not None:
            await self._probe.stop()
            if self._probe_task is not None:
                self._probe_task.cancel()
                await asyncio.gather(self._probe_task, return_exceptions=True)
        if self._exchange:
            await self._exchange.stop()
        if self._writer is not None:  # opened without a start
            self._writer.close()

    async def _try_live(self) -> bool:
        self._probe = make_feed(self.config, self.config.feed.ws_url, self._early.append)
        task = asyncio.get_running_loop().create_task(self._probe.run(), name="feed")
        try:
            await asyncio.wait_for(self._probe.connected.wait(), self.config.feed.connect_timeout_s + 0.5)
        except TimeoutError:
            if self.mode == "live":
                self._probe_task = task  # keep retrying with backoff
                return False
            log.warning("live Binance unreachable (%s): replaying bundled data",
                        self._probe.stats.last_error or "timeout")
            await self._probe.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._probe = None
            return False
        self._probe_task = task
        return True

    async def _clock(self) -> None:
        """Close bars by their feed's clock (its last event time plus elapsed wall time: the USD-M
        feed's for the futures series, the spot feed's for the spot twins); feed the
        alert engine its health samples every ``alerts.health_interval_s``."""
        next_health = time.monotonic()
        ing, ex = self.ingestion, self._exchange
        while True:
            await asyncio.sleep(_CLOCK_PERIOD_S)
            # a replay's clock runs at its speed, and stands still while it is paused
            rate = 1.0 if ex is None else 0.0 if ex.paused else ex.speed or 1.0
            wall = int(time.time() * 1000)
            # a gap's trades come first: no bar closes while the backfill holds the feed back
            for feed, spot in ((ing.feed, False), (ing.spot_feed, True)):
                if feed is None or (not spot and ing.backfill.holding):
                    continue
                st = feed.stats
                if feed.connected.is_set() and st.last_event_ms:
                    ing.pipeline.emit(Clock(st.last_event_ms + int((wall - st.last_recv_wall_ms) * rate), spot))
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + self.config.alerts.health_interval_s
                status = self.status()
                self.rules.alerting.on_health(int(time.time() * 1000), status.ticks_per_s, status.last_tick_age_s)

    # -- symbols -------------------------------------------------------------------------------
    @property
    def symbols(self) -> list[str]:
        """The symbols the feed follows now (config, the database's watch list, runtime additions)."""
        return self.ingestion.symbols if self.started.is_set() else list(self.config.symbols)

    def on_symbols(self, callback: Callable[[str, dict[tuple[str, str], list[Bar]] | None], None]) -> None:
        """Call ``callback(symbol, history)`` after a symbol is added (history: its warm bars per
        series) or removed (history None)."""
        self._on_symbols.append(callback)

    async def add_symbol(self, text: str) -> str:
        """Follow the USD-M symbol ``text`` from now on (ValueError, one line, when it is not one)."""
        symbol = text.strip().upper()
        if not _SYMBOL.match(symbol):
            raise ValueError(f"{text!r} is not a Binance symbol (2-30 of A-Z, 0-9)")
        if symbol in self.symbols:
            raise ValueError(f"{symbol} is followed already")
        if len(self.symbols) >= 200:
            raise ValueError("at most 200 symbols (Binance's streams per connection)")
        rest = self.ingestion.backfill.rest
        if rest is not None:  # the exchange's own answer: -1121 Invalid symbol for one it does not list
            try:
                await rest.open_interest(symbol)
            except ConnectionError as exc:
                if "-1121" in str(exc) or "Invalid symbol" in str(exc):
                    raise ValueError(f"{symbol} is not a USD-M futures symbol on {rest.base_url}") from None
                log.warning("could not check %s on %s (%s): following it anyway", symbol, rest.base_url, exc)
        history = await self.ingestion.add_symbol(symbol, history_bars=self.config.dashboard.buffer_bars)
        self.config = self.config.model_copy(update={"symbols": tuple(self.ingestion.symbols)})
        log.info("following %s from now on", symbol)
        for cb in self._on_symbols:
            cb(symbol, history)
        return symbol

    async def remove_symbol(self, symbol: str) -> None:
        if symbol not in self.symbols:
            raise ValueError(f"{symbol} is not followed")
        if len(self.symbols) == 1:
            raise ValueError("the last symbol cannot be removed")
        await self.ingestion.remove_symbol(symbol)
        self.config = self.config.model_copy(update={"symbols": tuple(self.ingestion.symbols)})
        for cb in self._on_symbols:
            cb(symbol, None)

    # -- status --------------------------------------------------------------------------------
    def status(self) -> Status:
        """A snapshot for the status strip, safe before ``start`` finishes."""
        ing = self.ingestion if self.started.is_set() else None
        feed = ing.feed if ing else self._probe
        st = feed.stats if feed else None
        bf = ing.backfill.stats if ing else None
        ex = self._exchange
        age = None
        if st and st.last_recv_wall_ms:
            age = max(0.0, time.time() - st.last_recv_wall_ms / 1000)
        replay = self.source_kind == "REPLAY"
        db = self.config.storage.replay_db_path if replay else self.config.storage.db_path
        return Status(
            source=self.source_kind,
            label=self.config.replay.label if replay else self.config.feed.ws_url,
            simulated=replay and self.config.replay.simulated,
            state=st.state if st else "starting",
            ticks_per_s=ing.ticks_per_s if ing else 0.0,
            last_tick_age_s=age,
            ticks=st.ticks if st else 0,
            malformed=st.malformed if st else 0,
            reconnects=st.reconnects if st else 0,
            db_path=str(db),
            error=self.error or (st.last_error if st and st.state != "connected" else ""),
            replay_time_ms=ex.replay_time_ms if ex else None,
            paused=bool(ex and ex.paused),
            speed=ex.speed if ex else 1.0,
            gaps=bf.gaps if bf else 0,
            backfilled=bf.trades_filled if bf else 0,
            gaps_unfilled=bf.gaps_unfilled if bf else 0,
            silent_streams=tuple(sorted({n for f in ing.feeds for n in f.stats.silent_streams})) if ing else (),
        )

"""The one ingestion build: config in, a running feed -> backfill -> pipeline -> writer out.

The server's runtime, ``quantpanel record`` and a headless ingest process all build ingestion
here, so the config-to-arguments mapping and the order of the wiring (warm start before the
first tick, the backfill probing on every connect) exist once.

Binance splits its streams by route, so ingestion holds up to two connections: ``feed`` on the
market route (aggTrade, markPrice, forceOrder) and ``quotes_feed`` on the public route
(bookTicker), each with its own backoff, watchdog and rollover. Over REST, beside the backfill
(and on its weight budget), it polls open interest and fetches the funding events it missed on
start and after every reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantpanel.config import Config
from quantpanel.feeds.backfill import Backfill
from quantpanel.feeds.connection import FeedConnection
from quantpanel.models import MARKET_STREAMS, SPOT_SUFFIX, Bar, MarketBatch, TickBatch
from quantpanel.pipeline.backfilling import make_backfill
from quantpanel.pipeline.graph import Pipeline
from quantpanel.pipeline.history import WarmStart, warm_start
from quantpanel.pipeline.market import MarketData
from quantpanel.pipeline.market_polls import MarketPolls
from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

__all__ = ["Ingestion", "build_ingestion", "make_feed"]

log = logging.getLogger(__name__)
_RATE_WINDOW_S = 5.0


def route_streams(cfg: Config, route: str) -> tuple[str, ...]:
    """The configured stream kinds (``feed.streams``) Binance serves on ``route``."""
    return tuple(k for k in cfg.feed.streams if MARKET_STREAMS[k] == route)


def make_feed(cfg: Config, url: str | None = None,
              on_batch: Callable[[TickBatch], None] | None = None, *,
              route: str = "market") -> FeedConnection:
    """A feed connection to ``url`` (default ``feed.ws_url``, or ``feed.public_ws_url`` for the
    public route) for the configured streams of ``route``, with the config's batching, watchdog,
    backoff and rollover."""
    f = cfg.feed
    return FeedConnection(
        url or (f.ws_url if route == "market" else f.public_ws_url), cfg.symbols,
        on_batch or (lambda _batch: None),
        batch_max_ticks=f.batch_max_ticks, batch_interval_ms=f.batch_interval_ms,
        silence_timeout_s=f.silence_timeout_s, connect_timeout_s=f.connect_timeout_s,
        backoff_initial_s=f.backoff_initial_s, backoff_max_s=f.backoff_max_s,
        max_connection_age_s=f.max_connection_age_s, kinds=route_streams(cfg, route),
        stream_silence_s=f.stream_silence_s,
    )


@dataclass
class Ingestion:
    """A built ingest: everything exists; ``start`` runs the feed, ``stop`` drains and closes."""

    db_path: Path
    writer: StoreWriter
    pipeline: Pipeline
    backfill: Backfill
    feed: FeedConnection  # the market route: trades, marks, liquidations
    history: dict[tuple[str, str], list[Bar]]  # the warm start's last bars per series
    quotes_feed: FeedConnection | None = None  # the public route: bookTicker (None: not configured)
    spot_feed: FeedConnection | None = None  # Binance spot: the spot twins' trades (feed.spot_symbols)
    polls: MarketPolls | None = None  # open interest and funding history over REST
    _rate: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))
    _task: asyncio.Task[None] | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    late_symbols: list[str] = field(default_factory=list)  # to subscribe on the adopted feed at start

    @property
    def market(self) -> MarketData:
        return self.pipeline.market

    @property
    def feeds(self) -> list[FeedConnection]:
        """Every open connection, market route first."""
        return [self.feed] + [f for f in (self.quotes_feed, self.spot_feed) if f is not None]

    @property
    def futures_feeds(self) -> list[FeedConnection]:
        """The USD-M connections (not the spot twins'): what an added symbol is subscribed on."""
        return [self.feed] + ([self.quotes_feed] if self.quotes_feed is not None else [])

    def on_market(self, batch: MarketBatch) -> None:
        self.pipeline.emit(batch)

    def on_spot_batch(self, batch: TickBatch) -> None:
        """A spot twin's trades: into the bars as they come (spot has its own REST API, so its
        id gaps are not backfilled), and the last price of each into its futures symbol's basis."""
        self.pipeline.emit(batch)
        last: dict[str, float] = {}
        for t in batch.ticks:
            last[t.symbol.removesuffix(SPOT_SUFFIX)] = t.price
        self.market.on_spot(last)

    @property
    def symbols(self) -> list[str]:
        """The symbols followed now (config and watch list, plus any added at runtime)."""
        return list(self.feed.symbols)

    async def add_symbol(self, symbol: str, *, history_bars: int = 0) -> dict[tuple[str, str], list[Bar]]:
        """Follow ``symbol`` from now on: warmed from the store (its last ``history_bars`` bars
        per timeframe are returned for the charts), subscribed on every open connection, kept in
        the database's watch list so a restart follows it too."""
        if symbol in self.feed.symbols:
            return {}
        state = self.pipeline.bar_state

        def warm_one() -> WarmStart:
            with Store(self.db_path, readonly=True) as store:
                return warm_start(store, [symbol], state.timeframes, bars=history_bars, grace_ms=state.grace_ms)

        warm = await asyncio.to_thread(warm_one)
        self.writer.put_bars(warm.recovered)
        self.pipeline.add_series(warm.state)
        self.writer.call(lambda store: store.add_watch(symbol))
        for f in self.futures_feeds:
            await f.subscribe([symbol])
        if self.polls is not None:
            self.polls.symbols.append(symbol)
            self.polls.fetch_funding_soon()
        return warm.history

    async def remove_symbol(self, symbol: str) -> None:
        """Stop following ``symbol`` (unsubscribed everywhere, off the watch list); what is stored stays."""
        for f in self.futures_feeds:
            await f.unsubscribe([symbol])
        self.backfill.sequencer.last.pop(symbol, None)  # no gap fill of a symbol no longer followed
        self.pipeline.drop_symbol(symbol)
        self.writer.call(lambda store: store.remove_watch(symbol))
        if self.polls is not None and symbol in self.polls.symbols:
            self.polls.symbols.remove(symbol)

    def on_batch(self, batch: TickBatch) -> None:
        """The feed's batches: counted, then in id order (gaps filled) into the pipeline."""
        self._rate.append((time.monotonic(), len(batch.ticks)))
        self.backfill.on_batch(batch)

    @property
    def ticks_per_s(self) -> float:
        now = time.monotonic()
        return sum(n for t, n in self._rate if now - t <= _RATE_WINDOW_S) / _RATE_WINDOW_S

    def start(self, task: asyncio.Task[None] | None = None) -> asyncio.Task[None]:
        """Run the feeds and the REST polls (adopting ``task``, the market feed's already running
        ``run()``); returns the market feed's task."""
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = task or loop.create_task(self.feed.run(), name="feed")
            if self.quotes_feed is not None:
                self._tasks.append(loop.create_task(self.quotes_feed.run(), name="quotes-feed"))
            if self.spot_feed is not None:
                self._tasks.append(loop.create_task(self.spot_feed.run(), name="spot-feed"))
            if self.polls is not None:
                self._tasks.extend(self.polls.start())
            if self.late_symbols:
                late, self.late_symbols = self.late_symbols, []
                self._tasks.append(loop.create_task(self.feed.subscribe(late), name="late-subscribe"))
        return self._task

    async def stop(self, *, drain_s: float = 10.0) -> None:
        """Stop the feeds, let the backfill finish (up to ``drain_s``), write what is queued."""
        for t in self._tasks:
            if not t.get_name().endswith("feed"):
                t.cancel()
        await asyncio.gather(*(f.stop() for f in self.feeds))
        running = [t for t in (self._task, *self._tasks) if t is not None]
        if running:  # they end once the sockets close, flushing their last batches
            await asyncio.wait(running, timeout=5.0)
            for t in running:
                t.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        await self.backfill.drain(drain_s)
        self.market.flush()
        await asyncio.to_thread(self.writer.flush)
        self.writer.close()

    def summary(self) -> dict[str, Any]:
        """What was ingested, under the keys ``quantpanel record`` prints."""
        st, bf, w, rest = self.feed.stats, self.backfill.stats, self.writer.stats, self.backfill.rest
        return {
            "db": str(self.db_path), "ticks_received": st.ticks, "ticks_stored": w.ticks_written,
            "duplicates_ignored": w.ticks_ignored, "bars_stored": w.bars_written, "frames": st.frames,
            "malformed": st.malformed, "other_events": dict(st.other_events), "connects": st.connects,
            "reconnects": st.reconnects, "store_errors": w.errors, "gaps": bf.gaps,
            "trades_backfilled": bf.trades_filled, "gaps_unfilled": bf.gaps_unfilled,
            "rest_requests": rest.stats.requests if rest else 0,
            "rest_retries": rest.stats.retries if rest else 0,
            "backfill_holds": bf.holds, "longest_hold_s": round(bf.longest_hold_s, 3),
            "watchdog_reconnects": st.watchdog_reconnects,
            **self._market_summary(),
        }

    def _market_summary(self) -> dict[str, Any]:
        feeds, w = self.feeds, self.writer.stats
        return {
            "quotes_received": sum(f.stats.quotes for f in feeds),
            "marks_received": sum(f.stats.marks for f in feeds),
            "liquidations_received": sum(f.stats.liquidations for f in feeds),
            "spot_ticks_received": self.spot_feed.stats.ticks if self.spot_feed is not None else 0,
            "quote_bars_stored": w.quote_bars_written, "quotes_stored": w.quotes_written,
            "marks_stored": w.marks_written, "funding_stored": w.funding_written,
            "liquidations_stored": w.liquidations_written, "open_interest_stored": w.open_interest_written,
            "silent_streams": sorted({n for f in feeds for n in f.stats.silent_streams}),
            "connections": {("market" if f is self.feed else "spot" if f is self.spot_feed else f.kinds[0]): {
                "url": f.base_url, "connects": f.stats.connects, "reconnects": f.stats.reconnects,
                "frames": f.stats.frames, "malformed": f.stats.malformed} for f in feeds},
        }


def build_ingestion(cfg: Config, db_path: str | Path, *, history_bars: int = 0,
                    feed: FeedConnection | None = None, ws_url: str | None = None,
                    public_ws_url: str | None = None, spot_ws_url: str | None = None,
                    rest_url: str | None = None, writer: StoreWriter | None = None,
                    on_rebuilt: Callable[[list[Bar]], object] | None = None) -> Ingestion:
    """Warm start from ``db_path``, then pipeline, backfill and feed wired in that order.

    ``feed``: a connection opened earlier (the runtime's live probe) to adopt instead of a new one
    to ``ws_url``; batches it delivered before, hand to ``on_batch`` once the consumers are wired.
    ``public_ws_url`` (default ``feed.public_ws_url``): the public route's connection, opened when
    ``feed.streams`` has any of its streams. ``spot_ws_url`` (default ``feed.spot_ws_url``): Binance
    spot's stream, opened for ``feed.spot_symbols``.
    ``writer``: the database's writer if it is open already (else one is opened).
    ``history_bars`` bars per series are kept for the dashboard; ``on_rebuilt(bars)`` gets the
    stored bars a late backfill rewrote (in the writer thread).
    """
    db = Path(db_path)
    writer = writer or StoreWriter(db)
    with Store(db) as store:
        watched = [s for s in store.watchlist() if s not in cfg.symbols]
        if watched:  # symbols added at runtime by an earlier run: followed again
            cfg = cfg.model_copy(update={"symbols": (*cfg.symbols, *watched)})
        spot = [s + SPOT_SUFFIX for s in cfg.feed.spot_symbols]
        warm = warm_start(store, [*cfg.symbols, *spot], cfg.timeframes, bars=history_bars,
                          grace_ms=cfg.bars.close_grace_ms)
        last_ids = {s: store.max_agg_id(s) for s in cfg.symbols}
        last_funding = {s: store.max_funding_time(s) for s in cfg.symbols}
    writer.put_bars(warm.recovered)
    pipeline = Pipeline(warm.state, writer,
                        market=MarketData(cfg.timeframes, writer, keep_quotes=cfg.storage.keep_quotes))
    backfill = make_backfill(cfg, pipeline.emit, writer, last_ids, rest_url=rest_url, on_rebuilt=on_rebuilt)
    quotes = (make_feed(cfg, public_ws_url, route="public") if route_streams(cfg, "public") else None)
    ing = Ingestion(db, writer, pipeline, backfill, feed or make_feed(cfg, ws_url), warm.history, quotes)
    ing.late_symbols = [s for s in cfg.symbols if s not in ing.feed.symbols]  # an adopted probe lacks them
    if cfg.feed.spot_symbols:
        fc = cfg.feed
        ing.spot_feed = FeedConnection(
            spot_ws_url or fc.spot_ws_url, fc.spot_symbols, ing.on_spot_batch, suffix=SPOT_SUFFIX,
            batch_max_ticks=fc.batch_max_ticks, batch_interval_ms=fc.batch_interval_ms,
            silence_timeout_s=fc.silence_timeout_s, connect_timeout_s=fc.connect_timeout_s,
            backoff_initial_s=fc.backoff_initial_s, backoff_max_s=fc.backoff_max_s,
            max_connection_age_s=fc.max_connection_age_s, stream_silence_s=fc.stream_silence_s)
    if backfill.rest is not None:
        ing.polls = MarketPolls(backfill.rest, cfg.symbols, pipeline.market, last_funding,
                                open_interest_s=cfg.feed.open_interest_s)
    ing.feed.on_batch = ing.on_batch
    for f in ing.feeds:
        f.on_market = ing.on_market
    polls = ing.polls

    def on_connect() -> None:  # every (re)connect of the market route: fill what the outage missed
        backfill.probe()
        if polls is not None:
            polls.fetch_funding_soon()

    ing.feed.on_connect = on_connect
    if ing.feed.connected.is_set():  # connected before the store was known: probe now
        on_connect()
    return ing

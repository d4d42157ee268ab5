"""Replay: the local exchange the runtime replays from, and the controls every session shares
(pause, speed, jump, replay of stored ticks) acting on its one timeline."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from quantpanel.config import Config
from quantpanel.errors import ReplayError
from quantpanel.feeds.connection import FeedConnection
from quantpanel.feeds.exchange import Exchange
from quantpanel.feeds.exchange.simulated import MarketModel
from quantpanel.feeds.recording import load_recording, recording_from_ticks
from quantpanel.pipeline.stored import StoredData
from quantpanel.storage.store import Store

__all__ = ["ReplayControls", "start_exchange", "REPLAY_MAX_TICKS"]

log = logging.getLogger(__name__)
REPLAY_MAX_TICKS = 5_000_000  # a replay of stored ticks is held in memory (~150 B per trade)


async def start_exchange(cfg: Config) -> Exchange:
    """The local exchange on ``replay.data``, continuing after what earlier runs stored."""
    r = cfg.replay
    quotes = r.quotes if r.quotes is not None and r.quotes.is_file() else None
    recording = await asyncio.to_thread(load_recording, r.data, quotes=quotes)
    if recording.quotes and not {q.symbol for q in recording.quotes} & set(recording.symbols):
        log.warning("replay.quotes %s quote other symbols than %s: served without quotes", quotes, r.data)
        recording = dataclasses.replace(recording, quotes=())
    spot = None
    if cfg.feed.spot_symbols and r.spot is not None and r.spot.is_file():
        spot = await asyncio.to_thread(load_recording, r.spot)
    exchange = Exchange(recording, speed=r.speed, loop=r.loop, rebase_to_now=r.rebase_to_now,
                        host=r.host, port=r.port, spot=spot,
                        market_model=MarketModel(funding_interval_s=r.funding_interval_s))
    # A restart continues after what earlier runs stored: never a stored id again, and (when
    # times are rebased) no artificial hole that would show as a run of empty bars.
    with Store(cfg.storage.replay_db_path) as store:
        stored = {s: store.max_agg_id(s) for s in recording.symbols}
        last_ms = max((store.max_time(s) for s in recording.symbols), default=-1)
    exchange.first_pass = exchange.pass_after(stored)
    if r.rebase_to_now and last_ms >= 0:
        exchange.start_at_ms = last_ms + 1_000
    await exchange.start()
    return exchange


class ReplayControls:
    """The shared replay timeline's controls; on the live feed (``exchange`` None) every action
    is a ``ReplayError`` that says so."""

    def __init__(self, exchange: Exchange | None, feeds: list[FeedConnection], stored: StoredData,
                 symbols: list[str]) -> None:
        self.exchange, self._feeds, self._stored, self._symbols = exchange, feeds, stored, symbols
        self._loop = asyncio.get_running_loop()

    @property
    def active(self) -> bool:
        """The run replays from the local exchange: the controls act."""
        return self.exchange is not None

    def _replaying(self) -> Exchange:
        if self.exchange is None:
            raise ReplayError("replay controls need the replay source; this server is on the live feed")
        return self.exchange

    def pause(self) -> None:
        self._replaying().pause()
        for f in self._feeds:  # a paused timeline sends nothing on any route
            f.expect_silence = True

    def resume(self) -> None:
        self._replaying().resume()
        for f in self._feeds:
            f.expect_silence = False

    def set_speed(self, speed: float) -> None:
        self._replaying().set_speed(speed)

    def jump(self, time_ms: int) -> None:
        """Continue the replay from ``time_ms`` on the recording's own clock."""
        self._replaying().jump(time_ms)

    def time_range(self) -> tuple[int, int]:
        """First and last trade time of what is being replayed (its own clock)."""
        trades = self._replaying().recording.trades
        return trades[0].time, trades[-1].time

    def stored_spans(self) -> list[tuple[str, int, int, int]]:
        """(symbol, first, last, ticks) stored of the symbols the feed follows: what
        ``replay_stored`` can play. Blocking: call from a worker thread."""
        return self._stored.tick_spans(self._symbols)

    def replay_stored(self, symbols: list[str], start_ms: int, end_ms: int) -> int:
        """Replay the stored ticks of ``symbols`` with ``start_ms <= time <= end_ms`` through the
        shared pipeline, continuing after what was replayed so far. Returns the number of ticks.
        Blocking (reads the store): call from a worker thread; the exchange picks it up on its loop."""
        ex = self._replaying()
        unknown = sorted(set(symbols) - set(self._symbols))
        if not symbols or unknown:
            raise ReplayError(f"replay: pick symbols the feed follows ({', '.join(self._symbols)})"
                              + (f"; not followed: {', '.join(unknown)}" if unknown else ""))
        if end_ms < start_ms:
            raise ReplayError(f"replay: the range ends ({end_ms}) before it starts ({start_ms})")
        db: Path = self._stored.db_path
        with Store(db, readonly=True) as store:
            n = sum(store.tick_count_between(s, start_ms, end_ms + 1) for s in symbols)
            if n == 0:
                raise ReplayError(f"replay: no stored ticks of {', '.join(symbols)} in that range")
            if n > REPLAY_MAX_TICKS:
                raise ReplayError(f"replay: {n:,} ticks in that range, more than {REPLAY_MAX_TICKS:,}: "
                                  "pick a shorter range")
            ticks = [t for s in symbols for t in store.iter_ticks(s, start_ms, end_ms + 1)]
        recording = recording_from_ticks(ticks, f"stored ticks of {', '.join(symbols)} in {db}")
        self._loop.call_soon_threadsafe(ex.load, recording)
        return len(ticks)

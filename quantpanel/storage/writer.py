"""A background thread that owns the write connection, so the event loop never waits on disk."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from quantpanel.errors import StoreError
from quantpanel.models import Bar, FundingEvent, Liquidation, MarkPrice, OpenInterest, Quote, QuoteBar, Tick
from quantpanel.storage.store import Store

__all__ = ["StoreWriter", "WriterStats"]

log = logging.getLogger(__name__)
_STOP = object()
#: what the thread is handed besides _STOP and a flush's Event: ("ticks" | "bars" | "alerts" | a
#: _MARKET kind, rows) or ("call", (fn, future))
_Job = tuple[str, Any]
#: The futures-native kinds: queue kind -> (the Store method that writes a batch, its WriterStats
#: counter). Each is written and retained on its own, after the ticks and bars.
_MARKET: dict[str, tuple[Callable[[Store, list[Any]], int], str]] = {
    "quotes": (Store.insert_quotes, "quotes_written"),
    "quote_bars": (Store.upsert_quote_bars, "quote_bars_written"),
    "marks": (Store.insert_marks, "marks_written"),
    "funding": (Store.insert_funding, "funding_written"),
    "liquidations": (Store.insert_liquidations, "liquidations_written"),
    "open_interest": (Store.insert_open_interest, "open_interest_written"),
}


@dataclass
class WriterStats:
    ticks_written: int = 0
    ticks_ignored: int = 0  # already stored (idempotent re-delivery)
    ticks_retained: int = 0  # rows waiting for the database to accept writes again
    ticks_dropped: int = 0  # beyond retain_max while the database refused writes
    bars_written: int = 0
    alerts_written: int = 0
    quotes_written: int = 0
    quote_bars_written: int = 0
    marks_written: int = 0
    funding_written: int = 0  # events added, or stored ones whose unknown mark was filled
    liquidations_written: int = 0
    open_interest_written: int = 0
    market_retained: int = 0  # futures-native rows waiting for the database, all kinds
    errors: int = 0
    last_error: str = ""


class StoreWriter:
    """Queue ticks, closed bars and futures-native rows; a thread writes whatever is queued, one
    transaction per kind, so a kind the database refuses never costs another.

    ``put_*`` never blocks. ``flush()`` waits until everything queued so far is on disk (or, while
    the database refuses writes, until it was tried). A failed write (disk full, read-only file,
    locked) is logged and reported in ``stats``, and its rows are kept and retried, up to
    ``retain_max`` rows: a full disk that is cleared loses nothing.
    """

    def __init__(self, path: str | Path, *, retain_max: int = 5_000_000, retry_s: float = 1.0) -> None:
        self.path = Path(path)
        self.retain_max = retain_max
        self.retry_s = retry_s
        self._retained_ticks: list[Tick] = []
        self._retained_bars: list[Bar] = []
        self._retained_market: dict[str, list[Any]] = {}
        Store(self.path).close()  # create the schema now, and fail here, not in the thread
        self.stats = WriterStats()
        self._q: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="quantpanel-store-writer", daemon=True)
        self._thread.start()

    def put_ticks(self, ticks: tuple[Tick, ...] | list[Tick]) -> None:
        if ticks:
            self._q.put(("ticks", ticks))

    def put_bars(self, bars: tuple[Bar, ...] | list[Bar]) -> None:
        if bars:
            self._q.put(("bars", bars))

    def put_quotes(self, quotes: tuple[Quote, ...] | list[Quote]) -> None:
        if quotes:
            self._q.put(("quotes", quotes))

    def put_quote_bars(self, bars: tuple[QuoteBar, ...] | list[QuoteBar]) -> None:
        if bars:
            self._q.put(("quote_bars", bars))

    def put_marks(self, marks: tuple[MarkPrice, ...] | list[MarkPrice]) -> None:
        if marks:
            self._q.put(("marks", marks))

    def put_funding(self, events: tuple[FundingEvent, ...] | list[FundingEvent]) -> None:
        if events:
            self._q.put(("funding", events))

    def put_liquidations(self, rows: tuple[Liquidation, ...] | list[Liquidation]) -> None:
        if rows:
            self._q.put(("liquidations", rows))

    def put_open_interest(self, rows: tuple[OpenInterest, ...] | list[OpenInterest]) -> None:
        if rows:
            self._q.put(("open_interest", rows))

    def put_alerts(self, rows: list[tuple[object, ...]]) -> None:
        """Alert log rows in ``ALERT_COLUMNS`` order."""
        if rows:
            self._q.put(("alerts", rows))

    def call(self, fn: Callable[[Store], object]) -> Future[object]:
        """Run ``fn(store)`` on the writer's own connection, after what is queued before it.

        Big writes (a file import) go through here: the live ticks queue behind them in memory
        instead of contending for SQLite's write lock.
        """
        fut: Future[object] = Future()
        self._q.put(("call", (fn, fut)))
        return fut

    @property
    def backlog(self) -> int:
        return self._q.qsize()

    def flush(self, timeout: float | None = None) -> None:
        done = threading.Event()
        self._q.put(done)
        if not done.wait(timeout):
            raise TimeoutError(f"store writer did not flush within {timeout} s")

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join()

    def _run(self) -> None:
        store = Store(self.path)
        try:
            while True:
                try:  # while rows wait for a retry, wake up to retry them
                    item = self._q.get(timeout=self.retry_s if self._retained_ticks or self._retained_bars
                                       or self._retained_market else None)
                except queue.Empty:
                    self._write(store, [], [])
                    self._write_market(store, {})
                    continue
                items = [item]
                while len(items) < 1000:  # coalesce whatever queued meanwhile
                    try:
                        items.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                ticks: list[Tick] = []
                bars: list[Bar] = []
                alerts: list[tuple[object, ...]] = []
                calls: list[tuple[Callable[[Store], object], Future[object]]] = []
                rows: dict[str, list[Any]] = {"ticks": ticks, "bars": bars, "alerts": alerts}
                waiters = []
                stop = market = False
                for it in items:
                    if it is _STOP:
                        stop = True
                    elif isinstance(it, threading.Event):
                        waiters.append(it)
                    else:
                        kind, payload = cast("_Job", it)
                        if kind == "call":
                            calls.append(payload)
                        elif kind in rows:
                            rows[kind].extend(payload)
                        else:  # a futures-native kind: its list is made only when one comes
                            rows[kind] = list(payload)
                            market = True
                self._write(store, ticks, bars)
                if market or self._retained_market:
                    self._write_market(store, rows)
                if alerts:
                    self._write_alerts(store, alerts)
                for fn, fut in calls:
                    if fut.set_running_or_notify_cancel():
                        try:
                            fut.set_result(fn(store))
                        except BaseException as exc:  # handed to the caller, who reports it
                            fut.set_exception(exc)
                for w in waiters:
                    w.set()
                if stop:
                    if self._retained_ticks or self._retained_bars or self._retained_market:
                        log.error("store writer closing with %d ticks, %d bars and %d market rows the database "
                                  "refused: %s", len(self._retained_ticks), len(self._retained_bars),
                                  self.stats.market_retained, self.stats.last_error)
                    return
        finally:
            store.close()

    def _write_alerts(self, store: Store, rows: list[tuple[object, ...]]) -> None:
        try:
            self.stats.alerts_written += store.insert_alerts(rows)
        except StoreError as exc:
            self._failed(exc)

    def _write(self, store: Store, ticks: list[Tick], bars: list[Bar]) -> None:
        """Ticks and bars are written independently: a failed tick batch never costs the bars.
        Rows of a failed write are retained (in order) and go first in the next attempt."""
        ticks, self._retained_ticks = self._retained_ticks + ticks, []
        bars, self._retained_bars = self._retained_bars + bars, []
        if ticks:
            try:
                added = store.insert_ticks(ticks)
                self.stats.ticks_written += added
                self.stats.ticks_ignored += len(ticks) - added
            except StoreError as exc:
                self._failed(exc)
                over = len(ticks) - self.retain_max
                if over > 0:  # memory is finite: the oldest go, counted (the backfill can't know)
                    self.stats.ticks_dropped += over
                    log.error("store writer: %d ticks dropped beyond the retention cap", over)
                self._retained_ticks = ticks[max(0, over):]
        if bars:
            try:
                self.stats.bars_written += store.upsert_bars(bars)
            except StoreError as exc:
                self._failed(exc)
                self._retained_bars = bars[-self.retain_max:]
        self.stats.ticks_retained = len(self._retained_ticks)

    def _write_market(self, store: Store, rows: dict[str, list[Any]]) -> None:
        """Each futures-native kind in its own transaction; a failed kind's rows (the newest
        ``retain_max``) are retained and go first in its next attempt, like bars."""
        for kind, (write, counter) in _MARKET.items():
            batch = self._retained_market.pop(kind, []) + rows.get(kind, [])
            if not batch:
                continue
            try:
                setattr(self.stats, counter, getattr(self.stats, counter) + write(store, batch))
            except StoreError as exc:
                self._failed(exc)
                self._retained_market[kind] = batch[-self.retain_max:]
        self.stats.market_retained = sum(len(v) for v in self._retained_market.values())

    def _failed(self, exc: StoreError) -> None:
        self.stats.errors += 1
        self.stats.last_error = str(exc)
        log.error("%s", exc)

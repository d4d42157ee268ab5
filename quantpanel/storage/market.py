"""The futures-native tables of the store: quotes, quote bars, marks, funding, liquidations, open
interest and the runtime watchlist.

A mixin of ``Store`` (which owns the connection and its one-transaction ``_write``), kept apart so
``store.py`` stays about ticks and bars. Every table is keyed so a re-delivered or re-imported row
is stored once: ``INSERT OR IGNORE``, except quote bars (a later bar replaces the earlier, as cached
bars do) and funding (a row that learns the mark fills a NULL one).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from quantpanel.errors import StoreError
from quantpanel.models import FundingEvent, Liquidation, MarkPrice, OpenInterest, Quote, QuoteBar

__all__ = ["MarketTables", "MARKET_SCHEMA", "MARKET_TABLES"]

#: Appended to the store's schema; CREATE IF NOT EXISTS, so an older file gains them in place.
MARKET_SCHEMA = """
CREATE TABLE IF NOT EXISTS quotes (
    symbol TEXT NOT NULL, update_id INTEGER NOT NULL, time INTEGER NOT NULL,
    bid REAL NOT NULL, bid_qty REAL NOT NULL, ask REAL NOT NULL, ask_qty REAL NOT NULL,
    PRIMARY KEY (symbol, update_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS quotes_symbol_time ON quotes (symbol, time);
CREATE TABLE IF NOT EXISTS quote_bars (
    symbol TEXT NOT NULL, timeframe TEXT NOT NULL, time INTEGER NOT NULL,
    bid REAL NOT NULL, ask REAL NOT NULL, mean_spread_bps REAL NOT NULL, max_spread_bps REAL NOT NULL,
    updates INTEGER NOT NULL,
    PRIMARY KEY (symbol, timeframe, time)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS marks (
    symbol TEXT NOT NULL, time INTEGER NOT NULL, mark REAL NOT NULL, index_price REAL NOT NULL,
    settle REAL NOT NULL, funding_rate REAL NOT NULL, next_funding INTEGER NOT NULL,
    PRIMARY KEY (symbol, time)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS funding (
    symbol TEXT NOT NULL, time INTEGER NOT NULL, rate REAL NOT NULL,
    mark REAL,                     -- NULL: the mark at the funding time is not known
    PRIMARY KEY (symbol, time)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS liquidations (
    symbol TEXT NOT NULL, time INTEGER NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL,
    price REAL NOT NULL, avg_price REAL NOT NULL, status TEXT NOT NULL, last_qty REAL NOT NULL,
    filled_qty REAL NOT NULL,
    PRIMARY KEY (symbol, time, side, price, qty)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS open_interest (
    symbol TEXT NOT NULL, time INTEGER NOT NULL, open_interest REAL NOT NULL,
    PRIMARY KEY (symbol, time)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS watchlist (symbol TEXT PRIMARY KEY, added INTEGER NOT NULL);
"""
#: The data tables ``market_counts`` reports, by name.
MARKET_TABLES = ("quotes", "quote_bars", "marks", "funding", "liquidations", "open_interest")

_LO, _HI = -(2**62), 2**62
_QUOTES_SQL = ("INSERT OR IGNORE INTO quotes (symbol, time, update_id, bid, bid_qty, ask, ask_qty) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)")
_QUOTE_BARS_SQL = "INSERT OR REPLACE INTO quote_bars VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
# A known mark fills a NULL one; anything else about a stored event stays as first stored.
_FUNDING_SQL = ("INSERT INTO funding (symbol, time, rate, mark) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (symbol, time) DO UPDATE SET mark = excluded.mark "
                "WHERE funding.mark IS NULL AND excluded.mark IS NOT NULL")


def _bar_row(b: QuoteBar) -> tuple[object, ...]:
    return (b.symbol, b.timeframe, b.time, b.bid, b.ask, b.mean_spread_bps, b.max_spread_bps, b.updates)


def _range(symbol: str, start: int | None, end: int | None) -> tuple[str, int, int]:
    return symbol, _LO if start is None else start, _HI if end is None else end


class MarketTables:
    """Store methods for the futures-native tables. Reads take ``start <= time < end``, oldest first."""

    path: Path
    _db: sqlite3.Connection

    def _write(self, sql: str, rows: Iterable[Sequence[object]]) -> int:  # provided by Store
        raise NotImplementedError

    # -- writes: each one transaction, returning rows added ---------------------------------------
    def insert_quotes(self, quotes: Iterable[Quote]) -> int:
        """Raw best bid/ask updates; an update id already stored is ignored."""
        return self._write(_QUOTES_SQL, quotes)

    def upsert_quote_bars(self, bars: Iterable[QuoteBar]) -> int:
        """Closed quote bars; a later write of the same bar replaces it (counted as written)."""
        return self._write(_QUOTE_BARS_SQL, (_bar_row(b) for b in bars))

    def insert_marks(self, marks: Iterable[MarkPrice]) -> int:
        return self._write("INSERT OR IGNORE INTO marks VALUES (?, ?, ?, ?, ?, ?, ?)", marks)

    def insert_funding(self, events: Iterable[FundingEvent]) -> int:
        """Funding events; a NaN mark is stored as NULL, and a later event with the mark fills it
        (counted). Returns rows added or filled. Times are keyed to the second: REST ``fundingTime``
        and dump ``calc_time`` run a few ms past the hour the stream names, and one funding must
        never be stored (and charged) twice."""
        return self._write(_FUNDING_SQL, ((s, t - t % 1000, r, None if math.isnan(m) else m)
                                          for s, t, r, m in events))

    def insert_liquidations(self, rows: Iterable[Liquidation]) -> int:
        return self._write("INSERT OR IGNORE INTO liquidations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def insert_open_interest(self, rows: Iterable[OpenInterest]) -> int:
        return self._write("INSERT OR IGNORE INTO open_interest VALUES (?, ?, ?)", rows)

    def store_quote_history(self, quotes: Iterable[Quote],
                            bars: Callable[[], Iterable[QuoteBar]]) -> tuple[int, int]:
        """Quotes, then ``bars()`` (built while the quotes streamed in), in ONE transaction: a file
        import whose reader raises on a bad row stores neither. Returns (quotes added, bars written)."""
        try:
            with self._db:
                before = self._db.total_changes
                self._db.executemany(_QUOTES_SQL, quotes)
                added = self._db.total_changes - before
                self._db.executemany(_QUOTE_BARS_SQL, (_bar_row(b) for b in bars()))
                return added, self._db.total_changes - before - added
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: write failed, nothing of this batch stored: {exc}") from None

    # -- reads --------------------------------------------------------------------------------------
    def read_quotes(self, symbol: str, start: int | None = None, end: int | None = None) -> list[Quote]:
        rows = self._db.execute(
            "SELECT symbol, time, update_id, bid, bid_qty, ask, ask_qty FROM quotes "
            "WHERE symbol = ? AND time >= ? AND time < ? ORDER BY time, update_id", _range(symbol, start, end))
        return [Quote(*r) for r in rows]

    def read_quote_bars(self, symbol: str, timeframe: str, start: int | None = None,
                        end: int | None = None) -> list[QuoteBar]:
        sym, lo, hi = _range(symbol, start, end)
        rows = self._db.execute(
            "SELECT symbol, timeframe, time, bid, ask, mean_spread_bps, max_spread_bps, updates FROM quote_bars "
            "WHERE symbol = ? AND timeframe = ? AND time >= ? AND time < ? ORDER BY time", (sym, timeframe, lo, hi))
        return [QuoteBar(*r) for r in rows]

    def read_marks(self, symbol: str, start: int | None = None, end: int | None = None) -> list[MarkPrice]:
        rows = self._db.execute(
            "SELECT symbol, time, mark, index_price, settle, funding_rate, next_funding FROM marks "
            "WHERE symbol = ? AND time >= ? AND time < ? ORDER BY time", _range(symbol, start, end))
        return [MarkPrice(*r) for r in rows]

    def read_funding(self, symbol: str, start: int | None = None, end: int | None = None) -> list[FundingEvent]:
        """Funding events; mark NaN where it is not known."""
        rows = self._db.execute("SELECT symbol, time, rate, mark FROM funding "
                                "WHERE symbol = ? AND time >= ? AND time < ? ORDER BY time",
                                _range(symbol, start, end))
        return [FundingEvent(s, t, r, math.nan if m is None else m) for s, t, r, m in rows]

    def read_liquidations(self, symbol: str, start: int | None = None, end: int | None = None,
                          ) -> list[Liquidation]:
        rows = self._db.execute(
            "SELECT symbol, time, side, qty, price, avg_price, status, last_qty, filled_qty FROM liquidations "
            "WHERE symbol = ? AND time >= ? AND time < ? ORDER BY time, side, price, qty", _range(symbol, start, end))
        return [Liquidation(*r) for r in rows]

    def read_open_interest(self, symbol: str, start: int | None = None, end: int | None = None,
                           ) -> list[OpenInterest]:
        rows = self._db.execute("SELECT symbol, time, open_interest FROM open_interest "
                                "WHERE symbol = ? AND time >= ? AND time < ? ORDER BY time",
                                _range(symbol, start, end))
        return [OpenInterest(*r) for r in rows]

    def max_funding_time(self, symbol: str) -> int:
        """Time of the newest stored funding event of ``symbol``, 0 when none (where a history
        backfill starts)."""
        row = self._db.execute("SELECT MAX(time) FROM funding WHERE symbol = ?", (symbol,)).fetchone()
        return 0 if row[0] is None else int(row[0])

    def market_counts(self) -> dict[str, int]:
        """Rows per futures-native data table (``MARKET_TABLES``), for status and tests."""
        return {t: int(self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in MARKET_TABLES}

    # -- the watchlist: symbols added at runtime, kept across restarts -----------------------------
    def watchlist(self) -> list[str]:
        """Watched symbols in the order they were added."""
        return [r[0] for r in self._db.execute("SELECT symbol FROM watchlist ORDER BY added, rowid")]

    def add_watch(self, symbol: str) -> None:
        """Watch ``symbol`` (already watched: unchanged, it keeps its place)."""
        self._write("INSERT OR IGNORE INTO watchlist (symbol, added) VALUES (?, ?)",
                    [(symbol, time.time_ns() // 1_000_000)])

    def remove_watch(self, symbol: str) -> None:
        self._write("DELETE FROM watchlist WHERE symbol = ?", [(symbol,)])

"""The SQLite store: ticks keyed by (symbol, agg_id), so storing is idempotent, and closed bars.

Ticks are the truth. The ``bars`` table caches closed bars so a restart warms up without
re-reading hours of ticks; anything the cache lacks is rebuilt from ticks by the bar builder.
The futures-native market data (quotes, marks, funding, liquidations, open interest, the watchlist)
lives in the same file; its tables and methods are in ``storage/market.py``. One ``Store`` per
thread (sqlite3 connections are not shared across threads). WAL mode lets the dashboard and the
CLI read while the writer thread writes.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from quantpanel.alerts.engine import ALERT_COLUMNS
from quantpanel.errors import StoreError
from quantpanel.models import BAR_COLUMNS, Bar, Tick, TickColumns
from quantpanel.storage.archive import ArchivedTicks
from quantpanel.storage.market import MARKET_SCHEMA, MarketTables

__all__ = ["Store", "OHLC_BAR_COLUMNS", "ALERT_COLUMNS"]

log = logging.getLogger(__name__)

OHLC_BAR_COLUMNS = BAR_COLUMNS  # an imported series stores the same fields, NULL where unknown

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ticks (
    symbol TEXT NOT NULL,
    agg_id INTEGER NOT NULL,
    time INTEGER NOT NULL,
    price REAL NOT NULL,
    qty REAL NOT NULL,
    buyer_maker INTEGER NOT NULL,
    PRIMARY KEY (symbol, agg_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ticks_symbol_time ON ticks (symbol, time);
CREATE TABLE IF NOT EXISTS bars (
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    time INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL,
    volume REAL NOT NULL, trades INTEGER NOT NULL, vwap REAL NOT NULL,
    buy_volume REAL,               -- NULL: a tick of unknown side is in the bar
    PRIMARY KEY (symbol, timeframe, time)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS imported_files (  -- the trade files imported whole: a rerun skips them
    path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    rows INTEGER NOT NULL, symbols TEXT NOT NULL, finished_ms INTEGER NOT NULL,  -- symbols: comma-separated
    PRIMARY KEY (path, size, mtime_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alert_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL,            -- the rule as JSON (quantpanel.alerts.rules.Rule)
    deleted INTEGER NOT NULL DEFAULT 0  -- kept, so a config rule the user deleted stays deleted
);
CREATE TABLE IF NOT EXISTS ohlc_bars (  -- imported OHLC series, apart from the bars built from ticks
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    time INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL,
    volume REAL, trades INTEGER, vwap REAL, buy_volume REAL,  -- NULL: the file does not say
    PRIMARY KEY (symbol, timeframe, time)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL, rule_id INTEGER NOT NULL, rule TEXT NOT NULL, metric TEXT NOT NULL,
    subject TEXT NOT NULL, timeframe TEXT NOT NULL, value REAL NOT NULL, threshold REAL NOT NULL,
    condition TEXT NOT NULL
);
""" + MARKET_SCHEMA + """
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '3');
"""

# Version 1 -> 2: bars.buy_volume may be unknown (NULL); ohlc_bars keeps what a file says and no
# more (volume optional; trades, vwap, taker buy volume when the file has them). SQLite cannot
# relax NOT NULL in place, so both tables are copied into their new shape in one transaction.
_MIGRATE_1_2 = """
ALTER TABLE bars RENAME TO bars_v1;
ALTER TABLE ohlc_bars RENAME TO ohlc_bars_v1;
{schema}
INSERT INTO bars SELECT * FROM bars_v1;
INSERT INTO ohlc_bars (symbol, timeframe, time, open, high, low, close, volume)
    SELECT symbol, timeframe, time, open, high, low, close, volume FROM ohlc_bars_v1;
DROP TABLE bars_v1;
DROP TABLE ohlc_bars_v1;
UPDATE meta SET value = '2' WHERE key = 'schema_version';
"""
# Version 2 -> 3: the futures-native tables (storage/market.py), all new, so created in place.
_MIGRATE_2_3 = """
{schema}
UPDATE meta SET value = '3' WHERE key = 'schema_version';
"""
_OLD_VERSIONS = ("1", "2")
_SIDES = (False, True, None)  # ticks.buyer_maker: 0, 1, or 2 = unknown (a collector without sides)
#: A tick's side as the code stored for it (a code stays itself). Bound as this int, not the
#: bool: sqlite3 adapts a bool through its protocol lookup, 3x an int's bind (0.6 vs 0.2 us),
#: all of it holding the GIL in the store writer's thread.
_SIDE_CODE: dict[bool | int | None, int] = {**{side: code for code, side in enumerate(_SIDES)}, 2: 2}


_TICKS_SQL = "INSERT OR IGNORE INTO ticks (symbol, time, agg_id, price, qty, buyer_maker) VALUES (?, ?, ?, ?, ?, ?)"
#: Rows per multi-row statement (``Store._execute_rows``), largest first: any count is a few
#: statements, and a few sizes per INSERT keep sqlite3's statement cache small.
_ROWS_PER_STATEMENT = (4096, 1024, 256, 64, 16, 4, 1)


@functools.lru_cache(maxsize=128)
def _multi_row(head: str, values: str, k: int) -> str:
    return f"{head} VALUES " + ",".join([values] * k)


def _nan(v: float | None) -> float:
    return float("nan") if v is None else v


class Store(MarketTables, ArchivedTicks):
    """Typed access to one SQLite file. All SQL is parameterised. The futures-native tables'
    methods come from ``MarketTables``; the tick readers include the days moved to the Parquet
    archive (``ArchivedTicks``, storage/archive.py) as if they were stored here."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._in_transaction = False  # inside ``transaction()``: writes join it
        try:
            if readonly:
                if not self.path.is_file():
                    raise StoreError(f"{self.path}: no such database")
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
                if self._version() in _OLD_VERSIONS:  # an older file: migrate it once, then read
                    self._db.close()
                    Store(self.path).close()
                    self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=10)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
                self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{self.path}: cannot open database: {exc}") from None

    def _version(self) -> str | None:
        """The file's schema version; None for a new file."""
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        if not has_meta:
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return row[0] if row else None

    def _migrate(self) -> None:
        """Step an older file up one version at a time, each step in one transaction."""
        if self._version() == "1":
            log.info("%s: migrating the schema from version 1 to 2", self.path)
            self._db.executescript("BEGIN;" + _MIGRATE_1_2.format(schema=_SCHEMA) + "COMMIT;")
        if self._version() == "2":
            log.info("%s: migrating the schema from version 2 to 3", self.path)
            self._db.executescript("BEGIN;" + _MIGRATE_2_3.format(schema=_SCHEMA) + "COMMIT;")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Several writes as one transaction: all of them or none (an imported file's ticks, its
        bars and its ledger row). Writes inside join it instead of committing on their own."""
        if self._in_transaction:
            raise RuntimeError("transactions do not nest")
        self._in_transaction = True
        try:
            with self._db:
                yield
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: write failed, nothing of it stored: {exc}") from None
        finally:
            self._in_transaction = False

    def _write(self, sql: str, rows: Iterable[Sequence[object]], *, last_as: Mapping[Any, object] | None = None) -> int:
        """Run an INSERT (or any statement) for each row, in the open transaction or its own
        (``last_as``: see ``_execute_rows``)."""
        try:
            if self._in_transaction:
                before = self._db.total_changes
                self._execute_rows(sql, rows, last_as=last_as)
                return self._db.total_changes - before
            with self._db:  # one transaction: all rows or none
                before = self._db.total_changes
                self._execute_rows(sql, rows, last_as=last_as)
                return self._db.total_changes - before
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: write failed, nothing of this batch stored: {exc}") from None

    def _execute_rows(self, sql: str, rows: Iterable[Sequence[object]], *,
                      last_as: Mapping[Any, object] | None = None) -> None:
        """``executemany``, as multi-row ``INSERT ... VALUES (..), (..)`` statements where ``sql``
        is a plain one-row INSERT.

        Why: ``executemany`` takes the GIL back after every row, and each take-back can wait a
        switch interval (5 ms) while the event loop is busy, so the writer thread's inserts queue
        behind the loop instead of running beside it. A statement of thousands of rows binds
        them at once and lets go of the GIL once for all. Same rows, same order, same conflicts
        (a later row of one statement meets the earlier ones as it would the earlier statement).
        ``last_as`` maps a row's last value to the value bound for it (one not in it stays itself).
        """
        head, sep, values = sql.rpartition(" VALUES ")
        values = values.strip()
        if not sep or not values.startswith("(") or not values.endswith(")") or "(" in values[1:]:
            if last_as is not None:
                raise ValueError(f"last_as is for a plain one-row INSERT, not {sql[:60]!r}")
            self._db.executemany(sql, rows)  # an upsert, a DELETE: as it is
            return
        width = values.count("?")
        rows = rows if isinstance(rows, list | tuple) else list(rows)
        if any(len(r) != width for r in rows):
            raise sqlite3.ProgrammingError(f"a row without exactly {width} values for {head}")
        flat = list(chain.from_iterable(rows))
        if last_as is not None:
            last = flat[width - 1::width]
            flat[width - 1::width] = map(last_as.get, last, last)  # a value not mapped stays itself
        most = self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width
        i, n = 0, len(rows)
        for k in _ROWS_PER_STATEMENT:
            if k > most:
                continue
            while n - i >= k:
                self._db.execute(_multi_row(head, values, k), flat[width * i:width * (i + k)])
                i += k

    # -- ticks ---------------------------------------------------------------------------------
    def insert_ticks(self, ticks: Iterable[Tick]) -> int:
        """Store ticks in one transaction; ticks already stored are ignored. Returns rows added."""
        rows: Sequence[Sequence[object]] = ticks if isinstance(ticks, list | tuple) else list(ticks)
        return self._write(_TICKS_SQL, rows, last_as=_SIDE_CODE)  # the side as its code (None: 2)

    def insert_tick_columns(self, symbol: str, cols: TickColumns) -> int:
        """``insert_ticks`` for columns (an import's chunk): no ``Tick`` per row. Returns rows added."""
        n = len(cols)
        rows = zip([symbol] * n, cols.time.tolist(), cols.agg_id.tolist(), cols.price.tolist(), cols.qty.tolist(),
                   cols.side.tolist(), strict=True)
        return self._write(_TICKS_SQL, list(rows))

    def iter_tick_columns(self, symbol: str, start: int | None = None, end: int | None = None, *,
                          chunk: int = 500_000) -> Iterator[TickColumns]:
        """``iter_ticks`` as columns, ``chunk`` rows at a time (a rebuild over months of ticks)."""
        lo, hi = start if start is not None else -(2**62), end if end is not None else 2**62
        if self._archived_days(symbol, lo, hi):  # merged with archived days, tick by tick
            it = ((t.time, t.agg_id, t.price, t.qty, _SIDES.index(t.buyer_maker))
                  for t in self.iter_ticks(symbol, lo, hi))
            batches: Iterator[list[Any]] = iter(lambda: list(islice(it, chunk)), [])
        else:
            cur = self._db.execute("SELECT time, agg_id, price, qty, buyer_maker FROM ticks WHERE symbol = ? "
                                   "AND time >= ? AND time < ? ORDER BY time, agg_id", (symbol, lo, hi))
            batches = iter(lambda: cur.fetchmany(chunk), [])
        for rows in batches:
            t, a, p, q, m = zip(*rows, strict=True)
            yield TickColumns(np.array(t, dtype="int64"), np.array(a, dtype="int64"), np.array(p, dtype="float64"),
                              np.array(q, dtype="float64"), np.array(m, dtype="int8"))

    def tick_before(self, symbol: str, time: int) -> tuple[int, int, float] | None:
        """(time, agg_id, price) of the newest tick of ``symbol`` before ``time``, archived days
        included (an import after them continues from their last price); None when none."""
        row = self._db.execute("SELECT time, agg_id, price FROM ticks WHERE symbol = ? AND time < ? "
                               "ORDER BY time DESC, agg_id DESC LIMIT 1", (symbol, time)).fetchone()
        found = [(int(row[0]), int(row[1]), float(row[2]))] if row is not None else []
        archived = self._archived_tick_before(symbol, time, stored_time=found[0][0] if found else None)
        return max([*found, *([archived] if archived else [])], key=lambda t: t[:2], default=None)

    def first_tick_time(self, symbol: str, start: int) -> int | None:
        """Trade time of the oldest tick of ``symbol`` at or after ``start``, archived days included
        (an import before them must not rebuild their cached bars); None when none."""
        row = self._db.execute("SELECT MIN(time) FROM ticks WHERE symbol = ? AND time >= ?", (symbol, start)).fetchone()
        stored = None if row[0] is None else int(row[0])
        times = [t for t in (stored, self._archived_first_time(symbol, start, stored_time=stored)) if t is not None]
        return int(min(times)) if times else None

    def iter_ticks(
        self, symbol: str, start: int | None = None, end: int | None = None, *, chunk: int = 50_000
    ) -> Iterator[Tick]:
        """Ticks of ``symbol`` with ``start <= time < end``, ordered by (time, agg_id), archived
        days included."""
        lo, hi = start if start is not None else -(2**62), end if end is not None else 2**62
        days = self._archived_days(symbol, lo, hi)
        if not days:
            return self._stored_ticks(symbol, lo, hi, chunk)
        return self._with_archive(days, lo, hi, lambda a, b: self._stored_ticks(symbol, a, b, chunk))

    def _stored_ticks(self, symbol: str, lo: int, hi: int, chunk: int) -> Iterator[Tick]:
        cur = self._db.execute(
            "SELECT symbol, time, agg_id, price, qty, buyer_maker FROM ticks "
            "WHERE symbol = ? AND time >= ? AND time < ? ORDER BY time, agg_id", (symbol, lo, hi))
        while rows := cur.fetchmany(chunk):
            for s, t, a, p, q, m in rows:
                yield Tick(s, t, a, p, q, _SIDES[m])

    def read_ticks(self, symbol: str, start: int | None = None, end: int | None = None) -> list[Tick]:
        return list(self.iter_ticks(symbol, start, end))

    def tick_ids(self, symbol: str | None = None) -> set[tuple[str, int]]:
        """The stored (symbol, agg_id) keys: what completeness checks compare (archived days are
        read from their files)."""
        if symbol is None:
            rows = self._db.execute("SELECT symbol, agg_id FROM ticks")
        else:
            rows = self._db.execute("SELECT symbol, agg_id FROM ticks WHERE symbol = ?", (symbol,))
        return {(s, a) for s, a in rows} | self._archived_ids(symbol)

    def tick_count(self, symbol: str | None = None) -> int:
        if symbol is None:
            n = int(self._db.execute("SELECT COUNT(*) FROM ticks").fetchone()[0])
            return n + sum(self._archived_count(s, -(2**62), 2**62) for s in self._archived_spans())
        n = int(self._db.execute("SELECT COUNT(*) FROM ticks WHERE symbol = ?", (symbol,)).fetchone()[0])
        return n + self._archived_count(symbol, -(2**62), 2**62)

    def tick_count_between(self, symbol: str, start: int, end: int) -> int:
        """Ticks of ``symbol`` with ``start <= time < end``."""
        return int(self._db.execute("SELECT COUNT(*) FROM ticks WHERE symbol = ? AND time >= ? AND time < ?",
                                    (symbol, start, end)).fetchone()[0]) + self._archived_count(symbol, start, end)

    def max_agg_id(self, symbol: str) -> int:
        """Highest stored exchange agg_id of ``symbol`` (synthetic keys aside), -1 when none."""
        row = self._db.execute("SELECT MAX(agg_id) FROM ticks WHERE symbol = ? AND agg_id >= 0",
                               (symbol,)).fetchone()
        archived = self._archived_spans().get(symbol)
        return max(-1 if row[0] is None else int(row[0]), archived[3] if archived else -1)

    def max_time(self, symbol: str) -> int:
        """Trade time of the newest stored tick of ``symbol``, -1 when none."""
        row = self._db.execute("SELECT MAX(time) FROM ticks WHERE symbol = ?", (symbol,)).fetchone()
        if row[0] is not None:
            return int(row[0])  # archived days are older than any tick left in the table
        archived = self._archived_spans().get(symbol)
        return archived[1] if archived else -1

    def symbols(self) -> list[str]:
        stored = [r[0] for r in self._db.execute("SELECT DISTINCT symbol FROM ticks ORDER BY symbol")]
        return sorted({*stored, *self._archived_spans()})

    def tick_spans(self) -> list[tuple[str, int, int, int]]:
        """(symbol, first time, last time, ticks) of every stored symbol: what can be replayed."""
        spans = {s: (int(a), int(b), int(n)) for s, a, b, n in self._db.execute(
            "SELECT symbol, MIN(time), MAX(time), COUNT(*) FROM ticks GROUP BY symbol ORDER BY symbol")}
        for s, (first, last, _, _) in self._archived_spans().items():
            a, b, n = spans.get(s, (first, last, 0))
            spans[s] = (min(a, first), max(b, last), n + self._archived_count(s, -(2**62), 2**62))
        return [(s, *spans[s]) for s in sorted(spans)]

    # -- bars ----------------------------------------------------------------------------------
    def upsert_bars(self, bars: Iterable[Bar]) -> int:
        """Store closed bars (a later write of the same bar replaces it). Forming bars are refused."""
        rows = []
        for b in bars:
            if not b.closed:
                raise ValueError(f"refusing to cache forming bar {b.symbol} {b.timeframe} {b.time}")
            rows.append((b.symbol, b.timeframe, b.time, b.open, b.high, b.low, b.close,
                         b.volume, b.trades, b.vwap, b.buy_volume))
        return self._write("INSERT OR REPLACE INTO bars VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

    def read_bars(
        self,
        symbol: str,
        timeframe: str,
        start: int | None = None,
        end: int | None = None,
        *,
        last: int | None = None,
    ) -> list[Bar]:
        """Cached closed bars with ``start <= time < end`` (or the ``last`` N), oldest first."""
        lo = start if start is not None else -(2**62)
        hi = end if end is not None else 2**62
        sql = (
            "SELECT time, open, high, low, close, volume, trades, vwap, buy_volume FROM bars "
            "WHERE symbol = ? AND timeframe = ? AND time >= ? AND time < ? ORDER BY time"
        )
        params: tuple[object, ...] = (symbol, timeframe, lo, hi)
        if last is not None:
            sql = f"SELECT * FROM ({sql} DESC LIMIT ?) ORDER BY time"
            params = (*params, last)
        return [Bar(symbol, timeframe, t, o, h, lo, c, v, n, vw, _nan(bv))
                for t, o, h, lo, c, v, n, vw, bv in self._db.execute(sql, params)]

    def replace_bar_range(self, symbol: str, timeframe: str, start: int, end: int,
                          rows: Iterable[Sequence[object]]) -> int:
        """Swap the cached bars of a series with ``start <= time < end`` for ``rows`` (``bars``
        table rows, all closed): a rebuild of the span an import touched. Returns rows written."""
        self._write("DELETE FROM bars WHERE symbol = ? AND timeframe = ? AND time >= ? AND time < ?",
                    [(symbol, timeframe, start, end)])
        return self._write("INSERT INTO bars VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

    def imported(self, path: str, size: int, mtime_ns: int) -> tuple[int, list[str]] | None:
        """(rows, symbols) of a trade file imported whole before (same path, size and mtime)."""
        row = self._db.execute("SELECT rows, symbols FROM imported_files WHERE path = ? AND size = ? AND mtime_ns = ?",
                               (path, size, mtime_ns)).fetchone()
        return None if row is None else (int(row[0]), row[1].split(",") if row[1] else [])

    def record_import(self, path: str, size: int, mtime_ns: int, rows: int, symbols: list[str],
                      finished_ms: int) -> None:
        """Note a trade file as imported whole (inside the transaction that stored it)."""
        self._write("INSERT OR REPLACE INTO imported_files VALUES (?, ?, ?, ?, ?, ?)",
                    [(path, size, mtime_ns, rows, ",".join(symbols), finished_ms)])

    def replace_bars(self, symbol: str, bars: Iterable[Bar]) -> int:
        """Swap a symbol's cached bars for ``bars`` in one transaction (a rebuild)."""
        rows = [(b.symbol, b.timeframe, b.time, b.open, b.high, b.low, b.close, b.volume,
                 b.trades, b.vwap, b.buy_volume) for b in bars if b.closed]
        try:
            with self._db:
                self._db.execute("DELETE FROM bars WHERE symbol = ?", (symbol,))
                self._db.executemany("INSERT INTO bars VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: rebuilding bars of {symbol} failed, old bars kept: {exc}") from None
        return len(rows)

    # -- alert rules and the alert log ----------------------------------------------------------
    def seed_rule(self, name: str, spec: str) -> None:
        """Add a rule unless one of that name exists or existed (config rules seed once)."""
        self._write("INSERT OR IGNORE INTO alert_rules (name, spec) VALUES (?, ?)", [(name, spec)])

    def save_rule(self, name: str, spec: str, rule_id: int | None = None) -> int:
        """Insert (``rule_id`` None) or update a rule; returns its id. Names are unique."""
        try:
            with self._db:
                if rule_id is None:
                    self._db.execute("DELETE FROM alert_rules WHERE name = ? AND deleted = 1", (name,))
                    cur = self._db.execute("INSERT INTO alert_rules (name, spec) VALUES (?, ?)", (name, spec))
                    assert cur.lastrowid is not None  # set by the INSERT just made
                    return cur.lastrowid
                cur = self._db.execute("UPDATE alert_rules SET name = ?, spec = ? WHERE id = ? AND deleted = 0",
                                       (name, spec, rule_id))
                if cur.rowcount != 1:
                    raise StoreError(f"{self.path}: no alert rule with id {rule_id}")
                return rule_id
        except sqlite3.IntegrityError:
            raise StoreError(f"an alert rule named {name!r} already exists") from None
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot save alert rule {name!r}: {exc}") from None

    def delete_rule(self, rule_id: int) -> None:
        self._write("UPDATE alert_rules SET deleted = 1 WHERE id = ?", [(rule_id,)])

    def read_rules(self) -> list[tuple[int, str, str]]:
        """(id, name, spec JSON) of the rules not deleted, oldest first."""
        return self._db.execute(
            "SELECT id, name, spec FROM alert_rules WHERE deleted = 0 ORDER BY id").fetchall()

    def insert_alerts(self, rows: Iterable[Sequence[object]]) -> int:
        """Rows in ALERT_COLUMNS order, one transaction."""
        cols = ", ".join(ALERT_COLUMNS)
        return self._write(f"INSERT INTO alerts ({cols}) VALUES ({', '.join('?' * len(ALERT_COLUMNS))})", rows)

    def read_alerts(self, last: int | None = None) -> list[tuple[object, ...]]:
        """The newest ``last`` alerts (all when None), oldest first, in ALERT_COLUMNS order."""
        cols = ", ".join(ALERT_COLUMNS)
        sql = f"SELECT {cols} FROM (SELECT * FROM alerts ORDER BY id DESC"
        sql += " LIMIT ?)" if last is not None else ")"
        rows = self._db.execute(sql + " ORDER BY id", (last,) if last is not None else ()).fetchall()
        return rows

    # -- imported OHLC series ------------------------------------------------------------------
    def insert_ohlc(self, series: Iterable[tuple[str, str, Iterable[Sequence[object]]]]) -> int:
        """(symbol, timeframe, rows in OHLC_BAR_COLUMNS order, None where unknown) for several
        series, all in one transaction; a bar already stored is replaced. Returns rows written."""
        cols = ", ".join(OHLC_BAR_COLUMNS)
        try:
            with self._db:
                before = self._db.total_changes
                for symbol, timeframe, rows in series:
                    self._db.executemany(
                        f"INSERT OR REPLACE INTO ohlc_bars (symbol, timeframe, {cols}) "
                        f"VALUES (?, ?, {', '.join('?' * len(OHLC_BAR_COLUMNS))})",
                        ((symbol, timeframe, *r) for r in rows))
                return self._db.total_changes - before
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: write failed, nothing of this file stored: {exc}") from None

    def read_ohlc(self, symbol: str, timeframe: str, start: int | None = None, end: int | None = None,
                  ) -> list[Bar]:
        """An imported series' bars with ``start <= time < end``, oldest first; NaN where the file
        did not say."""
        rows = self._db.execute(
            f"SELECT {', '.join(OHLC_BAR_COLUMNS)} FROM ohlc_bars WHERE symbol = ? AND timeframe = ? "
            "AND time >= ? AND time < ? ORDER BY time",
            (symbol, timeframe, start if start is not None else -(2**62), end if end is not None else 2**62))
        return [Bar(symbol, timeframe, t, o, h, lo, c, _nan(v), _nan(n), _nan(vw), _nan(bv))
                for t, o, h, lo, c, v, n, vw, bv in rows]

    def has_ticks(self, symbol: str) -> bool:
        return self._db.execute("SELECT 1 FROM ticks WHERE symbol = ? LIMIT 1", (symbol,)).fetchone() is not None \
            or bool(self._archive_rows("SELECT 1 FROM tick_archive WHERE symbol = ? LIMIT 1", (symbol,)))

    def has_bars(self, symbol: str, timeframe: str) -> bool:
        """A cached or imported bar of (symbol, timeframe) exists (index lookups, no scan)."""
        return any(self._db.execute(f"SELECT 1 FROM {table} WHERE symbol = ? AND timeframe = ? LIMIT 1",
                                    (symbol, timeframe)).fetchone() for table in ("bars", "ohlc_bars"))

    def bar_series(self) -> list[tuple[str, str, int, int, int]]:
        """(symbol, timeframe, bars, first time, last time) of every cached or imported series."""
        return self._db.execute(
            "SELECT symbol, timeframe, COUNT(*), MIN(time), MAX(time) FROM "
            "(SELECT symbol, timeframe, time FROM bars UNION SELECT symbol, timeframe, time FROM ohlc_bars) "
            "GROUP BY symbol, timeframe ORDER BY symbol, timeframe").fetchall()

    def ohlc_series(self) -> list[tuple[str, str, int, int, int]]:
        """(symbol, timeframe, bars, first time, last time) of every uploaded series."""
        return self._db.execute(
            "SELECT symbol, timeframe, COUNT(*), MIN(time), MAX(time) FROM ohlc_bars "
            "GROUP BY symbol, timeframe ORDER BY symbol, timeframe").fetchall()

"""The Parquet archive of old ticks: one file per symbol and UTC day, read back as if stored.

A mixin of ``Store`` (as ``storage/market.py`` is), so the store's tick readers see archived days
without their callers knowing. The ``tick_archive`` table of the database is the manifest: a day
is archived exactly when its row is there, and that row is written in the same transaction that
deletes the day's ticks from the ``ticks`` table. So whatever step a crash interrupts, every tick
is read exactly once: a file the manifest does not list is ignored (and rewritten by the next run),
and a tick in both places (a crash while merging late ticks into an archived day, or an import of
an archived day) is deduplicated on (time, agg_id) when read and merged into the file by the next
run. Cached bars stay in SQLite, so bars of archived days still come from the cache.

The archive directory is recorded in the database (``meta.archive_dir``, relative to the
database's directory when it is inside it), so every reader of the file finds it with no config.

Layout: ``<archive_dir>/<SYMBOL>/<YYYY-MM-DD>.parquet``; columns ``symbol``, ``time``
(timestamp[ms, UTC]), ``agg_id``, ``price``, ``qty``, ``buyer_maker`` (bool; null = unknown side).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from quantpanel.errors import StoreError
from quantpanel.models import Tick

__all__ = ["ArchivedDay", "ArchivedTicks", "DAY_MS", "archive_cutoff", "merge_ticks"]

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
_SIDES = (False, True, None)  # ticks.buyer_maker 0, 1, 2 = unknown (as store.py)
_SAFE_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a symbol is a directory name
_BATCH = 65_536
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ARCHIVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS tick_archive (  -- one row per archived (symbol, UTC day): the manifest
    symbol TEXT NOT NULL,
    day_ms INTEGER NOT NULL,       -- the day's 00:00 UTC, epoch ms
    file TEXT NOT NULL,            -- relative to meta.archive_dir
    ticks INTEGER NOT NULL,
    first_time INTEGER NOT NULL, last_time INTEGER NOT NULL,
    max_agg_id INTEGER NOT NULL,   -- highest exchange id (synthetic keys < 0 aside), -1 when none
    sha256 TEXT NOT NULL,          -- of the decoded columns (``_checksum``)
    PRIMARY KEY (symbol, day_ms)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class ArchivedDay:
    """One symbol-day in the archive: ``ticks`` in its file, ``moved`` of them out of SQLite now."""

    symbol: str
    day: str  # YYYY-MM-DD (UTC)
    ticks: int
    moved: int
    file: Path
    bytes: int


@dataclass(frozen=True, slots=True)
class _Day:
    """A manifest row."""

    symbol: str
    start: int
    file: Path
    ticks: int

    @property
    def end(self) -> int:
        return self.start + DAY_MS


@dataclass(frozen=True, slots=True)
class _Columns:
    """A day's ticks as arrays, ordered by (time, agg_id); ``side`` 0/1/2 as the ticks table."""

    time: np.ndarray
    agg_id: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    side: np.ndarray

    def __len__(self) -> int:
        return len(self.time)


def archive_cutoff(now_ms: int, older_than_days: int) -> int:
    """Start of the first UTC day that is kept: whole days ending ``older_than_days`` days before
    ``now_ms`` or earlier are archived."""
    return (now_ms - older_than_days * DAY_MS) // DAY_MS * DAY_MS


def _day_name(start: int) -> str:
    return datetime.fromtimestamp(start / 1000, tz=UTC).strftime("%Y-%m-%d")


def _checksum(c: _Columns) -> str:
    h = hashlib.sha256()
    for a, dtype in ((c.time, "<i8"), (c.agg_id, "<i8"), (c.price, "<f8"), (c.qty, "<f8"), (c.side, "i1")):
        h.update(np.ascontiguousarray(a, dtype=dtype).tobytes())
    return h.hexdigest()


def _sorted_unique(c: _Columns) -> _Columns:
    """Order by (time, agg_id) and keep one row per agg_id (a tick both archived and stored)."""
    _, first = np.unique(c.agg_id, return_index=True)
    order = first[np.lexsort((c.agg_id[first], c.time[first]))]
    return _Columns(c.time[order], c.agg_id[order], c.price[order], c.qty[order], c.side[order])


def _concat(parts: list[_Columns]) -> _Columns:
    return _Columns(*(np.concatenate([getattr(p, f) for p in parts])
                      for f in ("time", "agg_id", "price", "qty", "side")))


def _read_columns(path: Path) -> _Columns:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["time", "agg_id", "price", "qty", "buyer_maker"])
    side = t.column("buyer_maker")
    return _Columns(t.column("time").cast(pa.int64()).to_numpy(), t.column("agg_id").to_numpy(),
                    t.column("price").to_numpy(), t.column("qty").to_numpy(),
                    np.where(side.is_null().to_numpy(), 2, side.fill_null(False).to_numpy()).astype(np.int8))


def _write_file(path: Path, symbol: str, c: _Columns) -> None:
    """Write ``c`` to ``path`` (zstd, fsynced)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "symbol": pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(c), np.int32)), pa.array([symbol])),
        "time": pa.array(c.time, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "agg_id": pa.array(c.agg_id, pa.int64()),
        "price": pa.array(c.price, pa.float64()),
        "qty": pa.array(c.qty, pa.float64()),
        "buyer_maker": pa.array(c.side == 1, pa.bool_(), mask=c.side == 2),
    })
    with open(path, "wb") as f:
        pq.write_table(table, f, compression="zstd", row_group_size=_BATCH * 4)
        f.flush()
        os.fsync(f.fileno())


def _file_ticks(symbol: str, path: Path, lo: int, hi: int) -> Iterator[Tick]:
    """Ticks of one archived file with ``lo <= time < hi``, in file order; row groups wholly
    outside the range are not read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    t_col = pf.schema_arrow.get_field_index("time")
    groups = []
    for i in range(pf.metadata.num_row_groups):
        st = pf.metadata.row_group(i).column(t_col).statistics
        if st is None or not st.has_min_max or (_ms(st.min) < hi and _ms(st.max) >= lo):
            groups.append(i)
    if not groups:
        return
    for batch in pf.iter_batches(batch_size=_BATCH, row_groups=groups,
                                 columns=["time", "agg_id", "price", "qty", "buyer_maker"]):
        times = batch.column(0).cast(pa.int64()).to_numpy()
        a, b = np.searchsorted(times, [lo, hi])
        if a == b:
            continue
        rows = zip(times[a:b].tolist(), batch.column(1).slice(a, b - a).to_pylist(),
                   batch.column(2).slice(a, b - a).to_pylist(), batch.column(3).slice(a, b - a).to_pylist(),
                   batch.column(4).slice(a, b - a).to_pylist(), strict=True)
        for t, i, p, q, m in rows:
            yield Tick(symbol, t, i, p, q, m)


def _ms(v: Any) -> int:
    """A Parquet timestamp statistic (a datetime) or an int as epoch ms, exactly (no float)."""
    return (v - _EPOCH) // timedelta(milliseconds=1) if isinstance(v, datetime) else int(v)


def merge_ticks(archived: Iterator[Tick], stored: Iterator[Tick]) -> Iterator[Tick]:
    """Two (time, agg_id)-ordered streams as one, a tick in both yielded once."""
    first = next(stored, None)
    if first is None:  # the common case: an archived day has no ticks left in SQLite
        yield from archived
        return
    last: tuple[int, int] | None = None
    for t in heapq.merge(archived, _chain(first, stored), key=lambda t: (t.time, t.agg_id)):
        if (t.time, t.agg_id) != last:
            yield t
        last = (t.time, t.agg_id)


def _chain(first: Tick, rest: Iterator[Tick]) -> Iterator[Tick]:
    yield first
    yield from rest


class ArchivedTicks:
    """Store methods for the archive: the manifest queries the tick readers use, and the export."""

    path: Path
    _db: sqlite3.Connection

    # -- read side ---------------------------------------------------------------------------------
    def _archive_rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a manifest query; none when this database was never archived."""
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise StoreError(f"{self.path}: cannot read the tick archive: {exc}") from None

    def archive_dir(self) -> Path | None:
        """Where this database's archived ticks are (None: never archived)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'archive_dir'").fetchone()
        if row is None:
            return None
        p = Path(row[0])
        return p if p.is_absolute() else self.path.parent / p

    def _archived_days(self, symbol: str, lo: int, hi: int) -> list[_Day]:
        """Manifest rows of ``symbol`` overlapping ``[lo, hi)``, oldest first."""
        rows = self._archive_rows(
            "SELECT day_ms, file, ticks FROM tick_archive WHERE symbol = ? AND day_ms < ? AND day_ms > ? "
            "ORDER BY day_ms", (symbol, hi, lo - DAY_MS))
        if not rows:
            return []
        root = self._archive_root()
        return [_Day(symbol, d, root / f, n) for d, f, n in rows]

    def _archive_root(self) -> Path:
        root = self.archive_dir()
        if root is None:
            raise StoreError(f"{self.path}: the tick archive lists days but meta.archive_dir is missing")
        return root

    def _listed_file(self, day: _Day) -> Path:
        if not day.file.is_file():
            raise StoreError(f"archived ticks of {day.symbol} {_day_name(day.start)} are missing: "
                             f"{day.file} (listed in {self.path}'s tick_archive)")
        return day.file

    def _day_ticks(self, day: _Day, lo: int, hi: int) -> Iterator[Tick]:
        return _file_ticks(day.symbol, self._listed_file(day), max(lo, day.start), min(hi, day.end))

    def _archived_tick_before(self, symbol: str, time: int, *, stored_time: int | None = None
                              ) -> tuple[int, int, float] | None:
        """(time, agg_id, price) of the newest archived tick of ``symbol`` before ``time``: in the
        newest day the manifest says has one (its file is ordered by (time, agg_id)). None, and no
        file read, when the ticks table's answer (``stored_time``) is later than that whole day."""
        rows = self._archive_rows("SELECT day_ms, file, ticks, last_time FROM tick_archive WHERE symbol = ? "
                                  "AND first_time < ? ORDER BY day_ms DESC LIMIT 1", (symbol, time))
        if not rows:
            return None
        (d, f, n, last), = rows
        if stored_time is not None and stored_time > last:
            return None
        c = _read_columns(self._listed_file(_Day(symbol, d, self._archive_root() / f, n)))
        i = int(np.searchsorted(c.time, time)) - 1
        return None if i < 0 else (int(c.time[i]), int(c.agg_id[i]), float(c.price[i]))

    def _archived_first_time(self, symbol: str, start: int, *, stored_time: int | None = None) -> int | None:
        """Trade time of the oldest archived tick of ``symbol`` at or after ``start`` (the manifest
        answers unless ``start`` falls inside an archived day). None, and no file read, when the
        ticks table's answer (``stored_time``) is ``start`` itself."""
        rows = self._archive_rows("SELECT day_ms, file, ticks, first_time FROM tick_archive WHERE symbol = ? "
                                  "AND last_time >= ? ORDER BY day_ms LIMIT 1", (symbol, start))
        if not rows:
            return None
        (d, f, n, first), = rows
        if first >= start:  # the manifest knows
            return int(first)
        if stored_time is not None and stored_time <= start:  # nothing can come sooner
            return None
        c = _read_columns(self._listed_file(_Day(symbol, d, self._archive_root() / f, n)))
        i = int(np.searchsorted(c.time, start))
        return int(c.time[i]) if i < len(c) else None

    def _with_archive(self, days: list[_Day], lo: int, hi: int,
                      stored: Callable[[int, int], Iterator[Tick]]) -> Iterator[Tick]:
        """Ticks of ``[lo, hi)`` in (time, agg_id) order: ``stored(a, b)`` (the ticks table) between
        the archived ``days``, merged with it inside them."""
        at = lo
        for d in days:
            a, b = max(lo, d.start), min(hi, d.end)
            yield from stored(at, a)
            yield from merge_ticks(self._day_ticks(d, a, b), stored(a, b))
            at = b
        yield from stored(at, hi)

    def _archived_count(self, symbol: str, lo: int, hi: int) -> int:
        """Archived ticks of ``symbol`` with ``lo <= time < hi`` that the ticks table lacks."""
        n = 0
        for d in self._archived_days(symbol, lo, hi):
            a, b = max(lo, d.start), min(hi, d.end)
            both = self._db.execute("SELECT 1 FROM ticks WHERE symbol = ? AND time >= ? AND time < ? LIMIT 1",
                                    (symbol, a, b)).fetchone()
            if (a, b) == (d.start, d.end) and not both:
                n += d.ticks  # the common case: the manifest knows
                continue
            c = _read_columns(d.file)
            keep = (c.time >= a) & (c.time < b)
            if both:
                stored = np.fromiter((r[0] for r in self._db.execute(
                    "SELECT agg_id FROM ticks WHERE symbol = ? AND time >= ? AND time < ?", (symbol, a, b))),
                    dtype=np.int64)
                keep &= ~np.isin(c.agg_id, stored)
            n += int(keep.sum())
        return n

    def _archived_spans(self) -> dict[str, tuple[int, int, int, int]]:
        """symbol -> (first time, last time, days, max exchange agg_id) of the archive."""
        return {s: (int(a), int(b), int(n), int(m)) for s, a, b, n, m in self._archive_rows(
            "SELECT symbol, MIN(first_time), MAX(last_time), COUNT(*), MAX(max_agg_id) FROM tick_archive "
            "GROUP BY symbol ORDER BY symbol")}

    def _archived_ids(self, symbol: str | None) -> set[tuple[str, int]]:
        ids: set[tuple[str, int]] = set()
        syms = [symbol] if symbol is not None else list(self._archived_spans())
        for s in syms:
            for d in self._archived_days(s, -(2**62), 2**62):
                ids.update((s, int(i)) for i in _read_columns(d.file).agg_id.tolist())
        return ids

    # -- export ------------------------------------------------------------------------------------
    def archive_ticks(
        self, archive_dir: str | os.PathLike[str], *, older_than_days: int, now_ms: int | None = None
    ) -> Iterator[ArchivedDay]:
        """Move the ticks of every whole UTC day that ended ``older_than_days`` days before
        ``now_ms`` (default: now) or earlier into ``archive_dir``, one day at a time; yields each
        day once its file is written, verified and its rows are deleted (one transaction).

        A day already archived is rewritten with its new ticks merged in, never duplicated.
        """
        if isinstance(older_than_days, bool) or not isinstance(older_than_days, int) or older_than_days < 1:
            raise ValueError(f"older_than_days must be a whole number of at least 1, got {older_than_days!r}")
        root = Path(archive_dir).resolve()
        self._claim_archive_dir(root)
        cutoff = archive_cutoff(int(time.time() * 1000) if now_ms is None else now_ms, older_than_days)
        for symbol in [r[0] for r in self._db.execute("SELECT DISTINCT symbol FROM ticks ORDER BY symbol")]:
            if not _SAFE_SYMBOL.match(symbol):
                log.warning("not archiving ticks of %r: not usable as a directory name", symbol)
                continue
            since = -(2**62)
            while True:  # the days holding ticks, by index seeks (no scan of the table)
                row = self._db.execute("SELECT MIN(time) FROM ticks WHERE symbol = ? AND time >= ? AND time < ?",
                                       (symbol, since, cutoff)).fetchone()
                if row[0] is None:
                    break
                start = int(row[0]) // DAY_MS * DAY_MS
                yield self._archive_day(root, symbol, start)
                since = start + DAY_MS

    def _claim_archive_dir(self, root: Path) -> None:
        """Record ``root`` as this database's archive; refuse another while days are archived."""
        current = self.archive_dir()
        if current is not None and current.resolve() != root and self._archive_rows(
                "SELECT 1 FROM tick_archive LIMIT 1"):
            raise StoreError(f"{self.path}: its ticks are archived in {current}, not {root}; "
                             f"set storage.archive_dir (or --archive-dir) to {current}")
        try:
            rel = root.relative_to(self.path.resolve().parent)
        except ValueError:
            rel = root
        try:
            with self._db:
                self._db.executescript(ARCHIVE_SCHEMA)
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('archive_dir', ?)", (str(rel),))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot record the archive: {exc}") from None

    def _archive_day(self, root: Path, symbol: str, start: int) -> ArchivedDay:
        """Write, verify, then commit one symbol-day (see the module docstring for the crash cases)."""
        end = start + DAY_MS
        stored = self._stored_columns(symbol, start, end)
        old = self._archived_days(symbol, start, end)
        cols = _sorted_unique(_concat([*(_read_columns(d.file) for d in old if d.file.is_file()), stored]))
        rel = Path(symbol) / f"{_day_name(start)}.parquet"
        final = root / rel
        tmp = final.with_name(f".{final.name}.tmp")
        final.parent.mkdir(parents=True, exist_ok=True)
        digest = _checksum(cols)
        _write_file(tmp, symbol, cols)
        back = _read_columns(tmp)
        if len(back) != len(cols) or _checksum(back) != digest:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"{tmp}: the Parquet file read back differs from the ticks written; "
                             f"nothing of {symbol} {_day_name(start)} was deleted")
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        ids = cols.agg_id[cols.agg_id >= 0]
        row = (symbol, start, rel.as_posix(), len(cols), int(cols.time[0]), int(cols.time[-1]),
               int(ids.max()) if len(ids) else -1, digest)
        try:
            with self._db:  # the commit point: the day's rows go, its manifest row comes, together
                self._db.executemany("DELETE FROM ticks WHERE symbol = ? AND agg_id = ?",
                                     ((symbol, i) for i in stored.agg_id.tolist()))
                self._db.execute("INSERT OR REPLACE INTO tick_archive VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: archiving {symbol} {_day_name(start)} failed, its ticks kept "
                             f"in the database: {exc}") from None
        return ArchivedDay(symbol, _day_name(start), len(cols), len(stored), final, final.stat().st_size)

    def _stored_columns(self, symbol: str, start: int, end: int) -> _Columns:
        cur = self._db.execute("SELECT time, agg_id, price, qty, buyer_maker FROM ticks "
                               "WHERE symbol = ? AND time >= ? AND time < ? ORDER BY time, agg_id",
                               (symbol, start, end))
        parts = []
        while rows := cur.fetchmany(_BATCH):
            t, i, p, q, m = zip(*rows, strict=True)
            parts.append(_Columns(np.array(t, np.int64), np.array(i, np.int64), np.array(p, np.float64),
                                  np.array(q, np.float64), np.array(m, np.int8)))
        return _concat(parts) if parts else _Columns(*(np.empty(0, d) for d in (
            np.int64, np.int64, np.float64, np.float64, np.int8)))


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

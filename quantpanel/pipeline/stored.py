"""What the dashboard reads from and uploads into this run's database.

Reads block (call them from a worker thread, or the ``a``-prefixed coroutines): each opens its own
read-only connection, which WAL lets read while the writer writes. Every write goes through the
writer thread, so an upload never contends with live ticks for SQLite's write lock.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pandas as pd

from quantpanel.config import Config
from quantpanel.errors import StoreError
from quantpanel.models import BAR_COLUMNS, Bar
from quantpanel.pipeline.history import load_bars, load_closes, require_series, stored_series
from quantpanel.pipeline.import_bars import ImportBars
from quantpanel.storage.importer import ImportResult, import_file, unpack_agg_trades
from quantpanel.storage.ohlc import OhlcSeries, store_ohlc
from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

__all__ = ["StoredData"]


class StoredData:
    """This run's database, for the analytics views, the Offline and the Replay tabs."""

    def __init__(self, cfg: Config, db_path: Path, writer: StoreWriter | None) -> None:
        self.config, self.db_path, self._writer = cfg, db_path, writer

    def _writes(self) -> StoreWriter:
        if self._writer is None:
            raise StoreError(f"{self.db_path} is opened read-only here: uploads go to the process that writes it")
        return self._writer

    def _read(self) -> Store:
        return Store(self.db_path, readonly=True)

    # -- reads (blocking) ------------------------------------------------------------------------
    def load_closes(self, symbols: list[str], timeframe: str, *, last: int | None = None) -> pd.DataFrame:
        """Stored closes of closed bars (``history.load_closes``)."""
        with self._read() as store:
            return load_closes(store, symbols, timeframe, last=last, grace_ms=self.config.bars.close_grace_ms)

    def load_bars(self, symbols: list[str], timeframe: str) -> dict[str, list[Bar]]:
        """Every stored closed bar of each symbol, after checking the database holds them
        (``history.require_series``: the error lists what it does hold)."""
        grace = self.config.bars.close_grace_ms
        with self._read() as store:
            for sym in symbols:
                require_series(store, sym, timeframe)
            return {s: load_bars(store, s, timeframe, include_forming=False, grace_ms=grace) for s in symbols}

    def stored_series(self) -> tuple[list[str], list[tuple[str, str]]]:
        """What the database can serve to the analytics (``history.stored_series``)."""
        with self._read() as store:
            return stored_series(store)

    def ohlc_series(self) -> list[tuple[str, str, int, int, int]]:
        with self._read() as store:
            return store.ohlc_series()

    def read_ohlc(self, symbol: str, timeframe: str) -> pd.DataFrame:
        """Imported bars of one series: time (UTC) and BAR_COLUMNS, NaN where the file did not say."""
        with self._read() as store:
            bars = store.read_ohlc(symbol, timeframe)
        df = pd.DataFrame([[getattr(b, c) for c in BAR_COLUMNS] for b in bars], columns=list(BAR_COLUMNS))
        df["time"] = pd.to_datetime(df["time"].astype("int64"), unit="ms").astype("datetime64[ns]")
        return df

    def tick_spans(self, symbols: list[str]) -> list[tuple[str, int, int, int]]:
        """(symbol, first, last, ticks) stored of ``symbols``: what a replay of stored ticks can play."""
        with self._read() as store:
            return [row for row in store.tick_spans() if row[0] in symbols]

    # -- writes (through the writer) ---------------------------------------------------------------
    async def store_ohlc(self, series: list[OhlcSeries]) -> int:
        """Store validated OHLC series in one transaction."""
        fut = self._writes().call(lambda store: store_ohlc(store, series))
        return cast(int, await asyncio.wrap_future(fut))

    async def import_trades(self, name: str, data: bytes,
                            progress: Callable[[int, int], None] | None = None) -> ImportResult:
        """Store an uploaded aggTrades ``.csv`` / ``.zip`` (or NDJSON), all or nothing (live ticks
        wait in the writer's queue meanwhile). ``progress(rows read, rows in the file)``."""
        cap = int(self.config.storage.max_upload_mb * 2**20)
        csv_name, csv = await asyncio.to_thread(unpack_agg_trades, name, data, max_bytes=cap)
        total = max(1, csv.count(b"\n") + (not csv.endswith(b"\n")))
        with tempfile.TemporaryDirectory(prefix="quantpanel-import-") as tmp:
            path = Path(tmp) / csv_name
            await asyncio.to_thread(path.write_bytes, csv)
            report = (lambda n: progress(n, total)) if progress else None
            bars = ImportBars(self.config.timeframes, grace_ms=self.config.bars.close_grace_ms)
            fut = self._writes().call(lambda store: import_file(store, path, progress=report, bars=bars))
            return cast(ImportResult, await asyncio.wrap_future(fut))

"""Recorded trades read in chunks of columns (``models.TickColumns``): what an import stores.

A data.binance.vision aggTrades CSV (plain, ``.gz`` or a one-file ``.zip``) is parsed by pyarrow's
streaming CSV reader straight into typed arrays, block by block, and validated vectorised: column
count, integer ids and times, decimal prices and sizes, ``true``/``false`` sides, epoch times of
1990..2100 in any unit (per row, as ``trade_files.read_agg_trades_csv`` reads them). pyarrow parses
decimals correctly rounded, as Python's ``float`` does, so the values are the row reader's to the
bit. Where a block does not pass, the row reader takes over at that block's first row: it either
names the bad line and column in its usual words or reads what pyarrow was too strict for (a side
written ``" TRUE"``), so messages and results never depend on which reader ran.

NDJSON ticks and WebSocket captures are validated line by line by their row readers (each line is
its own JSON document) and gathered into columns here.
"""

from __future__ import annotations

import gzip
import io
import itertools
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, cast

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from quantpanel.epochs import EPOCH_UNITS
from quantpanel.errors import ImportFileError
from quantpanel.feeds.binance_futures import RecordedTrade
from quantpanel.feeds.trade_files import (
    CSV_COLUMNS,
    FileKind,
    file_kind,
    read_agg_trades_csv,
    read_capture,
    read_tick_ndjson,
    symbol_for_csv,
)
from quantpanel.models import SIDE_UNKNOWN, TickColumns

__all__ = ["CHUNK_ROWS", "read_trade_columns", "columns_of", "estimate_rows"]

CHUNK_ROWS = 100_000  # rows per chunk from the row readers (NDJSON, captures, a CSV's slow path)
_BLOCK_BYTES = 6 << 20  # pyarrow's CSV block: ~100k aggTrades rows, a progress report each
_TYPES = {"agg_trade_id": pa.int64(), "price": pa.float64(), "quantity": pa.float64(),
          "first_trade_id": pa.int64(), "last_trade_id": pa.int64(), "transact_time": pa.int64(),
          "is_buyer_maker": pa.bool_()}
_EARLIEST_MS, _LATEST_MS = 631_152_000_000, 4_102_444_800_000  # 1990..2100, as quantpanel.epochs


class _SlowPath(Exception):
    """A block the vectorised checks refuse: the row reader reads it (and says why, if it is bad)."""


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    if path.suffix == ".zip":
        zf = zipfile.ZipFile(path)
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if len(names) != 1:
            raise ImportFileError(f"{path}: expected one file inside the zip, found {len(names)}")
        return zf.open(names[0])
    return open(path, "rb")


def estimate_rows(path: Path) -> int | None:
    """About how many lines ``path`` holds (for a progress bar's ETA), from its unpacked size and
    its first 64 KiB; None when that cannot be told cheaply."""
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                size = sum(i.file_size for i in zf.infolist() if not i.is_dir())
        elif path.suffix == ".gz":
            with open(path, "rb") as fh:  # the gzip trailer: the unpacked size mod 2**32
                fh.seek(-4, io.SEEK_END)
                size = int.from_bytes(fh.read(4), "little")
        else:
            size = path.stat().st_size
        with _open_binary(path) as fh:
            head = fh.read(1 << 16)
    except (OSError, EOFError, zipfile.BadZipFile, ImportFileError):
        return None
    lines = head.count(b"\n")
    if not lines:
        return None
    return max(lines, round(size / (len(head) / lines)))


def _epoch_ms(v: np.ndarray) -> np.ndarray:
    """Each epoch number as ms, its unit told by its magnitude (``epochs.epoch_to_ms`` per row)."""
    out = np.full(len(v), -1, dtype="int64")
    for _name, per_ms in EPOCH_UNITS:
        t = v * per_ms
        hit = (out < 0) & (t >= _EARLIEST_MS) & (t < _LATEST_MS)
        if per_ms >= 1:
            out[hit] = v[hit] * round(per_ms)
        else:
            out[hit] = v[hit] // round(1 / per_ms)
    if (out < 0).any():
        raise _SlowPath
    return out


def _csv_block(batch: pa.RecordBatch) -> TickColumns:
    if any(batch.column(i).null_count for i in range(batch.num_columns)):
        raise _SlowPath  # an empty cell
    col = {name: batch.column(i).to_numpy(zero_copy_only=False) for i, name in enumerate(CSV_COLUMNS)}
    time = _epoch_ms(col["transact_time"])
    side = col["is_buyer_maker"].astype("int8")  # buyer maker true -> 1, false -> 0
    return TickColumns(time, col["agg_trade_id"].astype("int64"), col["price"], col["quantity"], side)


def _agg_trades_csv(path: Path, symbol: str) -> Iterator[TickColumns]:
    """The fast path, and the row reader from the first block it refuses."""
    done = 0  # data rows yielded by the fast path
    try:
        with _open_binary(path) as fh:
            header = fh.readline().split(b",", 1)[0].strip() == b"agg_trade_id"
        with _open_binary(path) as fh:
            reader = pacsv.open_csv(
                fh,
                read_options=pacsv.ReadOptions(column_names=list(CSV_COLUMNS), skip_rows=int(header),
                                               block_size=_BLOCK_BYTES),
                convert_options=pacsv.ConvertOptions(
                    column_types=_TYPES, true_values=["true", "True", "TRUE"],
                    false_values=["false", "False", "FALSE"], strings_can_be_null=False,
                    quoted_strings_can_be_null=False))
            for batch in reader:
                cols = _csv_block(batch)
                yield cols
                done += len(cols)
            return
    except (pa.ArrowInvalid, _SlowPath, UnicodeDecodeError):
        pass
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ImportFileError(f"{path}: cannot read aggTrades CSV: {exc}") from None
    rows = itertools.islice(read_agg_trades_csv(path, symbol), done, None)
    for chunk in _chunks(rows):
        yield columns_of(chunk)[symbol]


def _chunks(rows: Iterable[RecordedTrade]) -> Iterator[list[RecordedTrade]]:
    it = iter(rows)
    while chunk := list(itertools.islice(it, CHUNK_ROWS)):
        yield chunk


def columns_of(trades: list[RecordedTrade]) -> dict[str, TickColumns]:
    """Recorded trades as columns per symbol, in their order."""
    by: dict[str, list[RecordedTrade]] = {}
    for t in trades:
        by.setdefault(t.symbol, []).append(t)
    out = {}
    for sym, ts in by.items():
        out[sym] = TickColumns(
            np.fromiter((t.time for t in ts), "int64", len(ts)),
            np.fromiter((t.agg_id for t in ts), "int64", len(ts)),
            np.fromiter((float(t.price) for t in ts), "float64", len(ts)),
            np.fromiter((float(t.qty) for t in ts), "float64", len(ts)),
            np.fromiter((SIDE_UNKNOWN if t.buyer_maker is None else int(t.buyer_maker) for t in ts), "int8",
                        len(ts)))
    return out


def read_trade_columns(path: Path, symbol: str | None = None, counts: Counter[str] | None = None,
                       ) -> tuple[FileKind, Iterator[tuple[str, TickColumns]]]:
    """``path``'s kind (``trade_files.file_kind``) and its trades as (symbol, columns) chunks in
    file order. ``symbol`` is for an aggTrades CSV (the other kinds name theirs); ``counts``
    collects what a capture or NDJSON file skipped. A bad row raises ``ImportFileError`` naming
    the file, line and column, as the row readers do."""
    kind = file_kind(path)
    if kind == "agg_trades_csv":
        sym = symbol_for_csv(path, symbol)
        return kind, ((sym, cols) for cols in _agg_trades_csv(path, sym))
    rows = read_tick_ndjson(path, counts) if kind == "tick_ndjson" else read_capture(path, counts)
    return kind, (item for chunk in _chunks(rows) for item in columns_of(chunk).items())

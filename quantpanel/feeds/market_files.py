"""Readers for data.binance.vision USD-M dumps other than trades: monthly ``fundingRate`` and daily
``bookTicker`` files (one CSV, zipped or not), told apart by their header line.

``fundingRate``: ``calc_time,funding_interval_hours,last_funding_rate`` -> ``FundingEvent``s with
mark NaN (the file has none; the backtest then prices funding at the bar close, ANALYTICS.md
"Perpetual-futures funding"). ``funding_interval_hours`` is not stored, so it is not checked.
``bookTicker``: ``update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,
transaction_time,event_time`` -> ``Quote``s timed by the transaction time, as the live stream's.
Times are epoch numbers whose unit ``quantpanel.epochs`` tells by magnitude. The symbol comes from
the file name (``BTCUSDT-fundingRate-2024-08.zip``, ``BTCUSDT-bookTicker-2024-03-01.zip``) unless
given. A bad row raises ``ImportFileError`` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

from quantpanel.epochs import EpochError, epoch_to_ms
from quantpanel.errors import ImportFileError
from quantpanel.models import FundingEvent, Quote

__all__ = ["MarketFileKind", "FUNDING_RATE_COLUMNS", "BOOK_TICKER_COLUMNS", "market_file_kind",
           "read_funding_rate_csv", "read_book_ticker_csv"]

MarketFileKind = Literal["funding_rate", "book_ticker"]
FUNDING_RATE_COLUMNS = ("calc_time", "funding_interval_hours", "last_funding_rate")
BOOK_TICKER_COLUMNS = ("update_id", "best_bid_price", "best_bid_qty", "best_ask_price", "best_ask_qty",
                       "transaction_time", "event_time")
_HEADERS: dict[tuple[str, ...], MarketFileKind] = {FUNDING_RATE_COLUMNS: "funding_rate",
                                                   BOOK_TICKER_COLUMNS: "book_ticker"}
_NAME = re.compile(r"(?<![A-Za-z0-9])([A-Za-z0-9]{2,30})-(fundingRate|bookTicker)(?![A-Za-z])", re.IGNORECASE)
_NAME_KINDS: dict[str, MarketFileKind] = {"fundingrate": "funding_rate", "bookticker": "book_ticker"}
_WHAT = {"funding_rate": "fundingRate", "book_ticker": "bookTicker"}


def _open_text(path: Path) -> IO[str]:
    """The text of a plain, ``.gz`` or one-file ``.zip`` file."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    if path.suffix == ".zip":
        zf = zipfile.ZipFile(path)
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if len(names) != 1:
            zf.close()
            raise ImportFileError(f"{path}: a zip must hold exactly one CSV, it holds {len(names)} files")
        return io.TextIOWrapper(zf.open(names[0]), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _header(line: str) -> tuple[str, ...]:
    return tuple(c.strip().strip('"').lower() for c in line.strip().split(","))


def market_file_kind(path: Path) -> MarketFileKind | None:
    """What ``path`` holds, by its header line, or (a header-less dump) by its name; None: neither,
    so another importer's."""
    try:
        with _open_text(path) as fh:
            first = fh.readline(4096)
    except (OSError, UnicodeDecodeError, EOFError, zipfile.BadZipFile, ImportFileError):
        first = ""
    kind = _HEADERS.get(_header(first))
    if kind is not None:
        return kind
    m = _NAME.search(path.name)
    return _NAME_KINDS[m.group(2).lower()] if m else None


def _symbol(path: Path, symbol: str | None, kind: MarketFileKind) -> str:
    if symbol:
        return symbol.strip().upper()
    m = _NAME.search(path.name)
    if not m:
        raise ImportFileError(f"{path}: cannot tell the symbol from the file name; name it like "
                              f"BTCUSDT-{_WHAT[kind]}-2024-08.csv or pass --symbol")
    return m.group(1).upper()


def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each data row; the header line, if any, and blank lines skipped."""
    try:
        with _open_text(path) as fh:
            for lineno, row in enumerate(csv.reader(fh), 1):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if lineno == 1 and _header(",".join(row)) == columns:
                    continue
                if len(row) != len(columns):
                    raise ImportFileError(f"{path}:{lineno}: expected {len(columns)} columns "
                                          f"{','.join(columns)}, got {len(row)}")
                yield lineno, row
    except (OSError, UnicodeDecodeError, EOFError, zipfile.BadZipFile, csv.Error) as exc:
        raise ImportFileError(f"{path}: cannot read: {exc}") from None


def _number(text: str, *, positive: bool = False) -> float:
    x = float(text)
    if not math.isfinite(x) or (positive and x <= 0) or x < 0:
        raise ValueError(text)
    return x


def _bad(path: Path, lineno: int, column: str, text: str, exc: ValueError) -> ImportFileError:
    why = f": {exc}" if isinstance(exc, EpochError) else ""
    return ImportFileError(f"{path}:{lineno}: column {column!r} has a bad value {text!r}{why}")


def read_funding_rate_csv(path: str | Path, symbol: str | None = None) -> Iterator[FundingEvent]:
    """The funding events of a ``fundingRate`` file, mark NaN."""
    path = Path(path)
    sym = _symbol(path, symbol, "funding_rate")
    for lineno, row in _rows(path, FUNDING_RATE_COLUMNS):
        col = 0
        try:
            t = epoch_to_ms(int(row[0]))
            col = 2
            rate = float(row[2])
            if not math.isfinite(rate):
                raise ValueError(row[2])
        except ValueError as exc:
            raise _bad(path, lineno, FUNDING_RATE_COLUMNS[col], row[col], exc) from None
        yield FundingEvent(sym, t, rate, math.nan)


def read_book_ticker_csv(path: str | Path, symbol: str | None = None) -> Iterator[Quote]:
    """The quotes of a ``bookTicker`` file, in file order; prices positive, quantities >= 0."""
    path = Path(path)
    sym = _symbol(path, symbol, "book_ticker")
    for lineno, row in _rows(path, BOOK_TICKER_COLUMNS):
        col = 0
        try:
            u = int(row[0])
            col = 5
            t = epoch_to_ms(int(row[5]))
            col = 6
            epoch_to_ms(int(row[6]))
            col = 1
            bid = _number(row[1], positive=True)
            col = 2
            bid_qty = _number(row[2])
            col = 3
            ask = _number(row[3], positive=True)
            col = 4
            ask_qty = _number(row[4])
        except ValueError as exc:
            raise _bad(path, lineno, BOOK_TICKER_COLUMNS[col], row[col], exc) from None
        yield Quote(sym, t, u, bid, bid_qty, ask, ask_qty)

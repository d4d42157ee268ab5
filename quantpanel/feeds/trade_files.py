"""Readers for recorded market data: WebSocket captures, data.binance.vision aggTrades CSV and a
browser collector's NDJSON trade ticks, each read into ``binance_futures.RecordedTrade``s.

Prices and quantities stay the exchange's exact strings here, so the local exchange can replay
byte-identical values; ``recording.to_tick`` converts at the boundary. Capture lines may carry a
prefix (hftbacktest: ``<recv ns> <frame>``; cryptofeed: ``<ts>: <frame>``) or be a bare frame.
``trade`` frames (hftbacktest recordings carry no aggTrade stream) become one aggTrade per trade
with ``a = f = l = t``: every value is real, only the id space is the trade id's. Every aggTrade
or trade frame is checked by ``binance_futures.agg_trade_tick``, the live stream's own validator.
``read_book_tickers`` reads a capture's bookTicker frames the same way, each checked by
``binance_market.book_ticker_quote`` and kept as ``binance_market.RecordedQuote``'s exact strings.

NDJSON ticks (``{"symbol","ts","price","size"}`` per line, e.g. the Gemscap assignment's browser
collector) have neither trade ids nor sides: ``read_tick_ndjson`` gives each trade the stable key
``synthetic_agg_id(time, nth)`` (``nth``: earlier rows of that symbol and millisecond, in file order),
so importing a file twice stores it once, and ``buyer_maker`` None.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Literal

import orjson

from quantpanel.epochs import check_ms, epoch_to_ms
from quantpanel.errors import FrameError, ImportFileError
from quantpanel.feeds.binance_futures import RecordedTrade, agg_trade_tick
from quantpanel.feeds.binance_market import RecordedQuote, recorded_quote
from quantpanel.models import synthetic_agg_id

__all__ = [
    "FileKind",
    "file_kind",
    "looks_like_tick_ndjson",
    "read_capture",
    "read_book_tickers",
    "read_agg_trades_csv",
    "read_tick_ndjson",
    "read_trades",
    "symbol_for_csv",
    "CSV_COLUMNS",
]

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "transact_time",
    "is_buyer_maker",
)
_SYMBOL_IN_NAME = re.compile(r"([A-Z0-9]{2,30})-aggTrades-", re.IGNORECASE)
_NDJSON_FIELDS = ("symbol", "ts", "price", "size")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

#: What a file is, by name (aggTrades CSV) or content (NDJSON ticks); anything else is a capture.
FileKind = Literal["agg_trades_csv", "tick_ndjson", "capture"]


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    if path.suffix == ".zip":
        zf = zipfile.ZipFile(path)
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if len(names) != 1:
            raise ImportFileError(f"{path}: expected one file inside the zip, found {len(names)}")
        return io.TextIOWrapper(zf.open(names[0]), encoding="utf-8")
    return open(path, encoding="utf-8", newline="")


def read_capture(path: str | Path, counts: Counter[str] | None = None) -> Iterator[RecordedTrade]:
    """Yield the aggTrades (and converted trades) of a JSON-lines WebSocket capture.

    Other event kinds are counted in ``counts`` under their name; lines that are not a frame are
    counted as ``"malformed"`` and logged with their line number, never raised: a capture with a
    torn last line is still usable.
    """
    path = Path(path)
    counts = counts if counts is not None else Counter()
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                start = line.find("{")
                if start < 0:
                    counts["no_frame"] += 1
                    continue
                try:
                    msg = orjson.loads(line[start:])
                    data = msg.get("data", msg)
                    event = data.get("e")
                    if event == "aggTrade":
                        tk = agg_trade_tick(data)
                        first, last = int(data["f"]), int(data["l"])
                    elif event == "trade" and data.get("X") == "NA":  # price 0, size 0: no trade
                        counts["trade_na"] += 1
                        continue
                    elif event == "trade":  # the same checks, with the trade id as the agg id
                        tk = agg_trade_tick({**data, "a": data["t"]})
                        first = last = tk.agg_id
                    else:
                        counts[str(event) if event else "other"] += 1
                        continue
                    yield RecordedTrade(tk.symbol, tk.time, tk.agg_id, first, last, str(data["p"]),
                                        str(data["q"]), tk.buyer_maker, int(data.get("E", tk.time)))
                    counts[event] += 1
                except (orjson.JSONDecodeError, FrameError, AttributeError, KeyError, TypeError,
                        ValueError) as exc:
                    counts["malformed"] += 1
                    log.warning("%s:%d: skipped malformed frame (%s)", path, lineno, exc)
    except (OSError, UnicodeDecodeError, EOFError, zipfile.BadZipFile) as exc:
        raise ImportFileError(f"{path}: cannot read capture: {exc}") from None


def read_book_tickers(path: str | Path, counts: Counter[str] | None = None) -> Iterator[RecordedQuote]:
    """Yield the bookTicker frames of a JSON-lines WebSocket capture, in file order.

    Counted like ``read_capture``: other event kinds under their name, torn or invalid frames as
    ``"malformed"`` (logged with their line number, never raised).
    """
    path = Path(path)
    counts = counts if counts is not None else Counter()
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                start = line.find("{")
                if start < 0:
                    counts["no_frame"] += 1
                    continue
                try:
                    msg = orjson.loads(line[start:])
                    data = msg.get("data", msg)
                    event = data.get("e")
                    if event != "bookTicker":
                        counts[str(event) if event else "other"] += 1
                        continue
                    yield recorded_quote(data)
                    counts["bookTicker"] += 1
                except (orjson.JSONDecodeError, FrameError, AttributeError) as exc:
                    counts["malformed"] += 1
                    log.warning("%s:%d: skipped malformed frame (%s)", path, lineno, exc)
    except (OSError, UnicodeDecodeError, EOFError, zipfile.BadZipFile) as exc:
        raise ImportFileError(f"{path}: cannot read capture: {exc}") from None


def _symbol_from_name(path: Path) -> str | None:
    m = _SYMBOL_IN_NAME.search(path.name)
    return m.group(1).upper() if m else None


def symbol_for_csv(path: Path, symbol: str | None) -> str:
    """``symbol``, else the one in an aggTrades file's name (``BTCUSDT-aggTrades-2024-08-08.zip``)."""
    symbol = symbol or _symbol_from_name(path)
    if not symbol:
        raise ImportFileError(
            f"{path}: cannot tell the symbol from the file name; name it like "
            "BTCUSDT-aggTrades-2024-08-08.csv or pass the symbol"
        )
    return symbol


def read_agg_trades_csv(path: str | Path, symbol: str | None = None) -> Iterator[RecordedTrade]:
    """Yield the rows of a data.binance.vision futures aggTrades CSV (zipped or not, header or not).

    ``symbol`` defaults to the one in the file name (``BTCUSDT-aggTrades-2024-08-08.zip``). A bad
    row raises ``ImportFileError`` naming the file, line and column.
    """
    path = Path(path)
    symbol = symbol_for_csv(path, symbol)
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh)
            for lineno, row in enumerate(reader, 1):
                if lineno == 1 and row and row[0].strip() == "agg_trade_id":
                    continue
                if not row:
                    continue
                if len(row) != 7:
                    raise ImportFileError(
                        f"{path}:{lineno}: expected 7 columns {','.join(CSV_COLUMNS)}, got {len(row)}"
                    )
                col = 0
                try:
                    a, f, l_ = (int(row[i]) for i in (0, 3, 4))
                    col = 5
                    t = epoch_to_ms(int(row[5]))  # ms in futures dumps, µs in spot dumps from 2025
                    col = 1
                    float(row[1])
                    col = 2
                    float(row[2])
                    col = 6
                    m = row[6].strip().lower()
                    if m not in ("true", "false"):
                        raise ValueError(row[6])
                except ValueError:
                    raise ImportFileError(
                        f"{path}:{lineno}: column {CSV_COLUMNS[col]!r} has a bad value in {row!r}"
                    ) from None
                yield RecordedTrade(symbol, t, a, f, l_, row[1], row[2], m == "true", t)
    except (OSError, UnicodeDecodeError, EOFError, zipfile.BadZipFile, csv.Error) as exc:
        raise ImportFileError(f"{path}: cannot read aggTrades CSV: {exc}") from None


def is_agg_trades_csv(path: Path) -> bool:
    name = path.name.lower()
    return ".csv" in name or (name.endswith(".zip") and "aggtrades" in name)


def looks_like_tick_ndjson(line: str | bytes) -> bool:
    """A line that is an NDJSON tick: a JSON object with symbol/ts/price/size and no event type."""
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(row, dict) and "e" not in row and all(k in row for k in _NDJSON_FIELDS)


def _first_line(path: Path) -> str:
    """The first non-empty line (stripped); "" when there is none or the file cannot be read (the
    reader chosen then names the problem)."""
    try:
        with _open_text(path) as fh:
            for line in fh:
                if line.strip():
                    return line.strip()
    except (OSError, UnicodeDecodeError, EOFError, zipfile.BadZipFile, ImportFileError):
        pass
    return ""


def file_kind(path: Path) -> FileKind:
    """aggTrades CSV by name (``.csv``, or a ``.zip`` named aggTrades), NDJSON ticks by content (the
    first non-empty line, whatever the name), else a WebSocket capture."""
    if is_agg_trades_csv(path):
        return "agg_trades_csv"
    return "tick_ndjson" if looks_like_tick_ndjson(_first_line(path)) else "capture"


def _ndjson_time(ts: object) -> int:
    """``ts`` as ms: ISO-8601 (no zone = UTC, as the OHLC importer reads it) or an epoch number
    (its unit told by magnitude, ``quantpanel.epochs``), 1990..2100."""
    if isinstance(ts, str):
        dt = datetime.fromisoformat(ts)  # its ValueError names the text
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return check_ms((dt - _EPOCH) // _MS, ts)
    if isinstance(ts, float) and ts.is_integer():
        ts = int(ts)
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise ValueError(f"{ts!r} is neither an ISO-8601 time nor a whole epoch number")
    return epoch_to_ms(ts)


def _ndjson_amount(v: object) -> str:
    """A finite positive price or size, as its exact text."""
    if v.__class__ is bool or not isinstance(v, (int, float, str)):
        raise ValueError(f"{v!r} is not a number")
    x = float(v)
    if not 0 < x < math.inf:
        raise ValueError(f"{v!r} is not a finite positive number")
    return v.strip() if isinstance(v, str) else repr(v)


def read_tick_ndjson(path: str | Path, counts: Counter[str] | None = None) -> Iterator[RecordedTrade]:
    """Yield the rows of an NDJSON tick file (``{"symbol","ts","price","size"}`` per line).

    No ids and no sides in the file: ``agg_id = first_id = last_id = synthetic_agg_id(time, nth)``
    (``nth`` counts earlier rows of that symbol and ms, in file order: a stable key, so a second
    import stores nothing) and ``buyer_maker`` None. Symbols are upper-cased like stream names.
    A row with price and size both 0 is no trade: Binance's USD-M ``@trade`` stream pushes such
    ``"X":"NA"`` placeholders and the collector kept them without ``X``; they are counted in
    ``counts["zero_trade"]`` and skipped. Any other bad row raises ``ImportFileError`` naming the
    file, line and field.
    """
    path = Path(path)
    counts = counts if counts is not None else Counter()
    nth: Counter[tuple[str, int]] = Counter()
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                trade = _ndjson_trade(path, lineno, line, nth)
                if trade is None:
                    counts["zero_trade"] += 1
                    continue
                yield trade
    except (OSError, UnicodeDecodeError, EOFError, zipfile.BadZipFile) as exc:
        raise ImportFileError(f"{path}: cannot read NDJSON ticks: {exc}") from None


def _is_zero(v: object) -> bool:
    """A JSON number or numeric string equal to 0 (not ``false``)."""
    try:
        return v.__class__ is not bool and isinstance(v, (int, float, str)) and float(v) == 0
    except ValueError:
        return False


def _ndjson_trade(path: Path, lineno: int, line: str, nth: Counter[tuple[str, int]],
                  ) -> RecordedTrade | None:
    """One row as a trade; None for a price-0 size-0 placeholder (no trade)."""
    where = f"{path}:{lineno}"
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ImportFileError(f"{where}: not JSON ({exc})") from None
    if not isinstance(row, dict):
        raise ImportFileError(f"{where}: expected a JSON object with {', '.join(_NDJSON_FIELDS)}, "
                              f"got {type(row).__name__}")
    missing = [k for k in _NDJSON_FIELDS if k not in row]
    if missing:
        raise ImportFileError(f"{where}: no field {missing[0]!r} (a tick needs {', '.join(_NDJSON_FIELDS)})")
    key = "symbol"
    try:
        sym = row["symbol"]
        if not isinstance(sym, str) or not sym.strip():
            raise ValueError(f"{sym!r} is not a symbol")
        key = "ts"
        ms = _ndjson_time(row["ts"])
        if _is_zero(row["price"]) and _is_zero(row["size"]):
            return None
        key = "price"
        price = _ndjson_amount(row["price"])
        key = "size"
        size = _ndjson_amount(row["size"])
        sym = sym.strip().upper()
        key = "ts"
        k = nth[sym, ms]
        agg_id = synthetic_agg_id(ms, k)
    except ValueError as exc:
        raise ImportFileError(f"{where}: field {key!r}: {exc}") from None
    nth[sym, ms] = k + 1
    return RecordedTrade(sym, ms, agg_id, agg_id, agg_id, price, size, None, ms)


def read_trades(path: Path, symbol: str | None = None, counts: Counter[str] | None = None,
                ) -> tuple[FileKind, Iterator[RecordedTrade]]:
    """The reader for ``path``'s kind (``file_kind``) and that kind. ``symbol`` is for aggTrades
    CSV (the other kinds name their symbols); ``counts`` collects what was skipped: a capture's
    other events and malformed lines, NDJSON placeholder rows."""
    kind = file_kind(path)
    if kind == "agg_trades_csv":
        return kind, read_agg_trades_csv(path, symbol)
    if kind == "tick_ndjson":
        return kind, read_tick_ndjson(path, counts)
    return kind, read_capture(path, counts)

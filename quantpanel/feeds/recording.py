"""Readers for recorded market data: WebSocket captures and data.binance.vision aggTrades CSV.

Prices and quantities stay the exchange's exact strings here, so the local exchange can replay
byte-identical values; ``to_tick`` converts at the boundary. Capture lines may carry a prefix
(hftbacktest: ``<recv ns> <frame>``; cryptofeed: ``<ts>: <frame>``) or be a bare frame.
``trade`` frames (hftbacktest recordings carry no aggTrade stream) become one aggTrade per trade
with ``a = f = l = t``: every value is real, only the id space is the trade id's.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from quantpanel.errors import ImportFileError
from quantpanel.models import Tick

__all__ = [
    "RecordedTrade",
    "Recording",
    "read_capture",
    "read_agg_trades_csv",
    "load_recording",
    "recording_from_ticks",
    "to_tick",
]

log = logging.getLogger(__name__)

_CSV_COLUMNS = (
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "transact_time",
    "is_buyer_maker",
)
_SYMBOL_IN_NAME = re.compile(r"([A-Z0-9]{2,30})-aggTrades-", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RecordedTrade:
    """One aggregate trade as the exchange reported it (price/qty as its exact strings)."""

    symbol: str
    time: int
    agg_id: int
    first_id: int
    last_id: int
    price: str
    qty: str
    buyer_maker: bool
    event_time: int


@dataclass(frozen=True)
class Recording:
    """Trades of one or more symbols, sorted by (time, symbol, agg_id), ready to replay."""

    trades: tuple[RecordedTrade, ...]
    source: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted({t.symbol for t in self.trades}))

    def id_spans(self) -> dict[str, tuple[int, int]]:
        """Per symbol, the (lowest, highest) id in the recording, trade ids included."""
        spans: dict[str, tuple[int, int]] = {}
        for t in self.trades:
            lo, hi = spans.get(t.symbol, (t.first_id, t.last_id))
            spans[t.symbol] = (min(lo, t.first_id, t.agg_id), max(hi, t.last_id, t.agg_id))
        return spans

    def span_ms(self) -> int:
        """Time one pass takes, with a 1 s gap before the next pass of a loop."""
        return self.trades[-1].time - self.trades[0].time + 1_000


def to_tick(t: RecordedTrade) -> Tick:
    return Tick(t.symbol, t.time, t.agg_id, float(t.price), float(t.qty), t.buyer_maker)


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
                        yield RecordedTrade(
                            data["s"], int(data["T"]), int(data["a"]), int(data["f"]),
                            int(data["l"]), str(data["p"]), str(data["q"]), bool(data["m"]),
                            int(data.get("E", data["T"])),
                        )
                    elif event == "trade":
                        tid = int(data["t"])
                        yield RecordedTrade(
                            data["s"], int(data["T"]), tid, tid, tid, str(data["p"]),
                            str(data["q"]), bool(data["m"]), int(data.get("E", data["T"])),
                        )
                    else:
                        counts[str(event) if event else "other"] += 1
                        continue
                    counts[event] += 1
                except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
                    counts["malformed"] += 1
                    log.warning("%s:%d: skipped malformed frame (%s)", path, lineno, exc)
    except (OSError, UnicodeDecodeError, EOFError, zipfile.BadZipFile) as exc:
        raise ImportFileError(f"{path}: cannot read capture: {exc}") from None


def _symbol_from_name(path: Path) -> str | None:
    m = _SYMBOL_IN_NAME.search(path.name)
    return m.group(1).upper() if m else None


def read_agg_trades_csv(path: str | Path, symbol: str | None = None) -> Iterator[RecordedTrade]:
    """Yield the rows of a data.binance.vision futures aggTrades CSV (zipped or not, header or not).

    ``symbol`` defaults to the one in the file name (``BTCUSDT-aggTrades-2024-08-08.zip``). A bad
    row raises ``ImportFileError`` naming the file, line and column.
    """
    path = Path(path)
    symbol = symbol or _symbol_from_name(path)
    if not symbol:
        raise ImportFileError(
            f"{path}: cannot tell the symbol from the file name; name it like "
            "BTCUSDT-aggTrades-2024-08-08.csv or pass the symbol"
        )
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
                        f"{path}:{lineno}: expected 7 columns {','.join(_CSV_COLUMNS)}, got {len(row)}"
                    )
                col = 0
                try:
                    a, f, l_, t = (int(row[i]) for i in (0, 3, 4, 5))
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
                        f"{path}:{lineno}: column {_CSV_COLUMNS[col]!r} has a bad value in {row!r}"
                    ) from None
                yield RecordedTrade(symbol, t, a, f, l_, row[1], row[2], m == "true", t)
    except (OSError, UnicodeDecodeError, EOFError, zipfile.BadZipFile, csv.Error) as exc:
        raise ImportFileError(f"{path}: cannot read aggTrades CSV: {exc}") from None


def is_agg_trades_csv(path: Path) -> bool:
    name = path.name.lower()
    return ".csv" in name or (name.endswith(".zip") and "aggtrades" in name)


def recording_from_ticks(ticks: Iterable[Tick], source: str) -> Recording:
    """Stored ticks as a recording to replay. The store keeps no trade ids, so ``f = l = a``;
    prices and quantities are the stored floats' shortest exact strings."""
    trades = [RecordedTrade(t.symbol, t.time, t.agg_id, t.agg_id, t.agg_id, repr(t.price), repr(t.qty),
                            t.buyer_maker, t.time) for t in ticks]
    trades.sort(key=lambda t: (t.time, t.symbol, t.agg_id))
    return Recording(tuple(trades), source, dict(Counter(t.symbol for t in trades)))


def load_recording(path: str | Path) -> Recording:
    """Load a capture or an aggTrades CSV into a sorted ``Recording``."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: no such recording file")
    counts: Counter[str] = Counter()
    trades = list(read_agg_trades_csv(path) if is_agg_trades_csv(path) else read_capture(path, counts))
    if not trades:
        raise ImportFileError(f"{path}: holds no aggTrade or trade frames (saw {dict(counts)})")
    trades.sort(key=lambda t: (t.time, t.symbol, t.agg_id))
    return Recording(tuple(trades), str(path), dict(counts))

"""Import recorded trades into the store: data.binance.vision aggTrades CSV, WebSocket captures or
NDJSON trade ticks (a browser collector's ``{"symbol","ts","price","size"}`` lines).

A file is stored in one transaction, streamed row by row from the reader: a bad row anywhere
raises ``ImportFileError`` (naming the file and line) and rolls the whole file back, so the store
holds all of a file or none of it. Storing is idempotent, so re-importing never duplicates (NDJSON
ticks have no ids: their stable synthetic keys make that hold too). A file that yields no trade at
all is an error naming what it held, never a silent success; ``ImportResult.synthesised`` says in
plain words what a file lacked and how it was filled in.

``import_market_file`` does the same for data.binance.vision ``fundingRate`` files (funding events)
and ``bookTicker`` files (raw quotes plus their quote bars, in one transaction).
"""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from quantpanel.errors import ImportFileError
from quantpanel.feeds.market_files import MarketFileKind, read_book_ticker_csv, read_funding_rate_csv
from quantpanel.feeds.recording import to_tick
from quantpanel.feeds.trade_files import looks_like_tick_ndjson, read_trades
from quantpanel.models import FundingEvent, Quote, QuoteBar, Tick
from quantpanel.storage.store import Store

__all__ = ["import_file", "ImportResult", "unpack_agg_trades", "import_market_file", "MarketImportResult",
           "QuoteBarSink"]

PROGRESS_EVERY = 10_000  # rows between progress callbacks
#: What an NDJSON tick file lacks, and what the import puts in its place (ImportResult.synthesised).
NDJSON_SYNTHESISED = (
    "agg_id: stable keys from trade time and file order (the file has no trade ids)",
    "side: unknown (the file has no buyer-maker flag), so buy_volume is NaN",
)
_TICK_SUFFIXES = (".ndjson", ".jsonl")
_SKIPPED_WORDS = {"no_frame": "lines without a JSON frame", "malformed": "malformed frames",
                  "other": "messages without an event type",
                  "zero_trade": "rows with price and size 0 (Binance's X=NA placeholders)",
                  "trade_na": "trade frames of type NA (price and size 0)"}


@dataclass
class ImportResult:
    path: Path
    read: int = 0
    stored: int = 0
    symbols: set[str] = field(default_factory=set)
    skipped: dict[str, int] = field(default_factory=dict)  # other events, malformed lines, placeholders
    synthesised: list[str] = field(default_factory=list)  # what the file lacked, filled in; [] for aggTrades


def import_file(store: Store, path: Path, *, symbol: str | None = None,
                progress: Callable[[int], None] | None = None) -> ImportResult:
    """Store the trades of one file, all or nothing; ``progress(rows read)`` every few thousand rows.

    ``symbol`` names an aggTrades CSV's symbol (other kinds name their own). Raises
    ``ImportFileError`` when the file holds no trade (a file already stored is not an error:
    ``read`` > 0, ``stored`` 0).
    """
    res = ImportResult(path)
    counts: Counter[str] = Counter()
    kind, rows = read_trades(path, symbol, counts)
    if kind == "tick_ndjson":
        res.synthesised = list(NDJSON_SYNTHESISED)

    def ticks() -> Iterator[Tick]:
        for rec in rows:
            res.read += 1
            res.symbols.add(rec.symbol)
            if progress is not None and res.read % PROGRESS_EVERY == 0:
                progress(res.read)
            yield to_tick(rec)

    res.stored = store.insert_ticks(ticks())
    res.skipped = {k: v for k, v in counts.items() if k not in ("aggTrade", "trade")}
    if res.read == 0:
        raise ImportFileError(_why_empty(path, kind, res.skipped))
    return res


class QuoteBarSink(Protocol):
    """What turns imported quotes into quote bars: ``pipeline.quote_bars.QuoteBarBuilder``, passed
    in by the caller, since storage sits below the pipeline and may not import it."""

    timeframes: tuple[str, ...]
    out_of_order: int

    def add(self, quotes: Iterable[Quote]) -> list[QuoteBar]: ...

    def close_until(self, time_ms: int) -> list[QuoteBar]: ...


@dataclass
class MarketImportResult:
    path: Path
    kind: MarketFileKind
    read: int = 0
    stored: int = 0  # funding events added (or whose unknown mark was filled), or quotes added
    symbols: set[str] = field(default_factory=set)
    quote_bars: int = 0  # bars written (a re-import rewrites the same bars)
    out_of_order: int = 0  # quotes older than their symbol's forming bar: stored, but in no bar
    timeframes: tuple[str, ...] = ()


_Row = TypeVar("_Row", FundingEvent, Quote)
_QUOTE_CHUNK = 10_000  # quotes handed to the bar builder at a time
_MARKET_WORDS = {"funding_rate": "funding rates", "book_ticker": "quotes"}


def _counted(rows: Iterable[_Row], res: MarketImportResult,
             progress: Callable[[int], None] | None) -> Iterator[_Row]:
    for row in rows:
        res.read += 1
        res.symbols.add(row.symbol)
        if progress is not None and res.read % PROGRESS_EVERY == 0:
            progress(res.read)
        yield row


def import_market_file(store: Store, path: Path, kind: MarketFileKind, *, symbol: str | None = None,
                       quote_bars: QuoteBarSink | None = None,
                       progress: Callable[[int], None] | None = None) -> MarketImportResult:
    """Store one ``fundingRate`` or ``bookTicker`` file (``feeds.market_files.market_file_kind``),
    all or nothing. A bookTicker file's quote bars are built by ``quote_bars`` and closed at the end
    of the file (it is history); they are stored with the quotes, in the same transaction.
    Raises ``ImportFileError`` for a bad row (naming file, line, column) or a file with no row."""
    res = MarketImportResult(path, kind)
    if kind == "funding_rate":
        res.stored = store.insert_funding(_counted(read_funding_rate_csv(path, symbol), res, progress))
    else:
        if quote_bars is None:
            raise ValueError("a bookTicker import needs quote_bars, the builder of its quote bars")
        builder, closed = quote_bars, []

        def quotes() -> Iterator[Quote]:
            chunk: list[Quote] = []
            for q in _counted(read_book_ticker_csv(path, symbol), res, progress):
                chunk.append(q)
                yield q
                if len(chunk) == _QUOTE_CHUNK:
                    closed.extend(builder.add(chunk))
                    chunk = []
            closed.extend(builder.add(chunk))

        res.stored, res.quote_bars = store.store_quote_history(
            quotes(), lambda: closed + builder.close_until(2**62))
        res.out_of_order, res.timeframes = builder.out_of_order, builder.timeframes
    if res.read == 0:
        what = "the file is empty" if path.stat().st_size == 0 else "no data rows (blank, or a header line only)"
        raise ImportFileError(f"{path}: holds no {_MARKET_WORDS[kind]}: {what}")
    return res


def _why_empty(path: Path, kind: str, skipped: dict[str, int]) -> str:
    """Why a file gave no trade, in words: an import that stores nothing must say why."""
    if path.stat().st_size == 0:
        return f"{path}: the file is empty, no trades to import"
    if kind == "agg_trades_csv":
        return f"{path}: holds no trades: no data rows (blank, or a header line only)"
    seen = ", ".join(f"{_SKIPPED_WORDS.get(k, k)}: {n:,}" for k, n in sorted(skipped.items())) or "no line"
    return f"{path}: holds no trades: saw {seen}"


def unpack_agg_trades(name: str, data: bytes, *, max_bytes: int) -> tuple[str, bytes]:
    """An uploaded data.binance.vision aggTrades file (``.csv`` or a one-CSV ``.zip``) or NDJSON
    ticks (``.ndjson`` / ``.jsonl``) as (file name, bytes); the size cap applies unpacked."""
    if not data:
        raise ImportFileError(f"{name}: the file is empty")
    if name.lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise ImportFileError(f"{name}: a zip must hold exactly one CSV, it holds {len(members)} files")
                if members[0].file_size > max_bytes:
                    raise ImportFileError(f"{name}: unpacked it is {members[0].file_size:,} bytes, more than "
                                          f"the upload cap of {max_bytes:,} bytes")
                return Path(members[0].filename).name, zf.read(members[0])
        except (zipfile.BadZipFile, EOFError) as exc:
            raise ImportFileError(f"{name}: not a readable zip file: {exc}") from None
    if len(data) > max_bytes:
        raise ImportFileError(f"{name}: {len(data):,} bytes is more than the upload cap of {max_bytes:,} bytes")
    if name.lower().endswith(_TICK_SUFFIXES):
        first = next((ln for ln in data.splitlines() if ln.strip()), b"")
        if not looks_like_tick_ndjson(first):
            raise ImportFileError(f"{name}: expected NDJSON ticks, one JSON object with symbol, ts, price "
                                  f"and size per line; the first line is {first[:80]!r}")
        return Path(name).name, data
    if ".csv" not in name.lower():
        raise ImportFileError(f"{name}: expected a data.binance.vision aggTrades .csv or .zip, "
                              "or NDJSON ticks (.ndjson / .jsonl)")
    return Path(name).name, data

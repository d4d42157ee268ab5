"""Import recorded trades into the store: data.binance.vision aggTrades CSV, WebSocket captures or
NDJSON trade ticks (a browser collector's ``{"symbol","ts","price","size"}`` lines).

A file is stored in one transaction, streamed chunk by chunk of columns from the reader, with the
bars of the span it covers: a bad row anywhere raises ``ImportFileError`` (naming the file and
line) and rolls the whole file back, so the store holds all of a file or none of it, and never its
ticks without their bars. Storing is idempotent, so re-importing never duplicates (NDJSON
ticks have no ids: their stable synthetic keys make that hold too). A file that yields no trade at
all is an error naming what it held, never a silent success; ``ImportResult.synthesised`` says in
plain words what a file lacked and how it was filled in.

``import_market_file`` does the same for data.binance.vision ``fundingRate`` files (funding events)
and ``bookTicker`` files (raw quotes plus their quote bars, in one transaction).
"""

from __future__ import annotations

import io
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from quantpanel.errors import ImportFileError
from quantpanel.feeds.market_files import MarketFileKind, read_book_ticker_csv, read_funding_rate_csv
from quantpanel.feeds.trade_columns import read_trade_columns
from quantpanel.feeds.trade_files import looks_like_tick_ndjson
from quantpanel.models import FundingEvent, Quote, QuoteBar, TickColumns
from quantpanel.storage.store import Store

__all__ = ["import_file", "ImportResult", "TradeBarSink", "unpack_agg_trades", "import_market_file",
           "MarketImportResult", "QuoteBarSink"]

PROGRESS_EVERY = 10_000  # rows between progress callbacks of a market file
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
    bars: dict[str, int] = field(default_factory=dict)  # bars written per symbol, every timeframe
    already_imported: bool = False  # imported whole before (``resume``): not read again
    seconds: float = 0.0


class TradeBarSink(Protocol):
    """What builds the bars of imported trades: ``pipeline.import_bars.ImportBars``, passed in by
    the caller, since storage sits below the pipeline and may not import it. ``add`` sees each
    chunk after it is inserted, ``finish`` writes the bars, both inside the file's transaction."""

    def add(self, store: Store, symbol: str, cols: TickColumns, added: int) -> None: ...

    def finish(self, store: Store) -> dict[str, int]: ...


def import_file(store: Store, path: Path, *, symbol: str | None = None, bars: TradeBarSink | None = None,
                progress: Callable[[int], None] | None = None, resume: bool = False) -> ImportResult:
    """Store the trades of one file and their bars, all or nothing, in one transaction;
    ``progress(rows read)`` after each chunk.

    Chunks of columns (``feeds.trade_columns``) go to SQLite by ``executemany`` and to ``bars``
    (every configured timeframe, rebuilt over the span the file covers). ``symbol`` names an
    aggTrades CSV's symbol (other kinds name their own). With ``resume`` a file the database
    notes as imported whole (same path, size and mtime) is not read again: a rerun of a long
    import after a crash goes on where it stopped. Raises ``ImportFileError`` when the file holds
    no trade (a file already stored is not an error: ``read`` > 0, ``stored`` 0).
    """
    started = time.perf_counter()
    res = ImportResult(path)
    key = None
    if resume:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        done = store.imported(*key)
        if done is not None:
            res.read, res.symbols, res.already_imported = done[0], set(done[1]), True
            return res
    counts: Counter[str] = Counter()
    kind, chunks = read_trade_columns(path, symbol, counts)
    if kind == "tick_ndjson":
        res.synthesised = list(NDJSON_SYNTHESISED)
    with store.transaction():
        for sym, cols in chunks:
            added = store.insert_tick_columns(sym, cols)
            res.read += len(cols)
            res.stored += added
            res.symbols.add(sym)
            if bars is not None:
                bars.add(store, sym, cols, added)
            if progress is not None:
                progress(res.read)
        res.skipped = {k: v for k, v in counts.items() if k not in ("aggTrade", "trade")}
        if res.read == 0:
            raise ImportFileError(_why_empty(path, kind, res.skipped))
        if bars is not None:
            res.bars = bars.finish(store)
        if key is not None:
            store.record_import(*key, res.read, sorted(res.symbols), int(time.time() * 1000))
    res.seconds = time.perf_counter() - started
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

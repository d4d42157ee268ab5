"""Import recorded trades into the store: data.binance.vision aggTrades CSV or WebSocket captures.

A file is stored in one transaction, streamed row by row from the reader: a bad row anywhere
raises ``ImportFileError`` (naming the file and line) and rolls the whole file back, so the store
holds all of a file or none of it. Storing is idempotent, so re-importing never duplicates.
"""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from quantpanel.feeds.recording import (
    RecordedTrade,
    is_agg_trades_csv,
    read_agg_trades_csv,
    read_capture,
    to_tick,
)
from quantpanel.errors import ImportFileError
from quantpanel.models import Tick
from quantpanel.storage.store import Store

__all__ = ["import_file", "ImportResult", "unpack_agg_trades"]

PROGRESS_EVERY = 10_000  # rows between progress callbacks


@dataclass
class ImportResult:
    path: Path
    read: int = 0
    stored: int = 0
    symbols: set[str] = field(default_factory=set)
    skipped: dict[str, int] = field(default_factory=dict)  # other events / malformed lines


def import_file(store: Store, path: Path, *, symbol: str | None = None,
                progress: Callable[[int], None] | None = None) -> ImportResult:
    """Store the trades of one file, all or nothing; ``progress(rows read)`` every few thousand rows."""
    res = ImportResult(path)
    counts: Counter[str] = Counter()
    rows: Iterator[RecordedTrade] = (
        read_agg_trades_csv(path, symbol) if is_agg_trades_csv(path) else read_capture(path, counts)
    )

    def ticks() -> Iterator[Tick]:
        for rec in rows:
            res.read += 1
            res.symbols.add(rec.symbol)
            if progress is not None and res.read % PROGRESS_EVERY == 0:
                progress(res.read)
            yield to_tick(rec)

    res.stored = store.insert_ticks(ticks())
    res.skipped = {k: v for k, v in counts.items() if k not in ("aggTrade", "trade")}
    return res


def unpack_agg_trades(name: str, data: bytes, *, max_bytes: int) -> tuple[str, bytes]:
    """An uploaded data.binance.vision aggTrades file (``.csv`` or a one-CSV ``.zip``) as
    (CSV file name, CSV bytes); the size cap applies to the unpacked CSV."""
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
    if ".csv" not in name.lower():
        raise ImportFileError(f"{name}: expected a data.binance.vision aggTrades .csv or .zip")
    return Path(name).name, data

"""Import recorded trades into the store: data.binance.vision aggTrades CSV or WebSocket captures.

A file is stored in one transaction, streamed row by row from the reader: a bad row anywhere
raises ``ImportFileError`` (naming the file and line) and rolls the whole file back, so the store
holds all of a file or none of it. Storing is idempotent, so re-importing never duplicates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from quantpanel.feeds.recording import (
    RecordedTrade,
    is_agg_trades_csv,
    read_agg_trades_csv,
    read_capture,
    to_tick,
)
from quantpanel.models import Tick
from quantpanel.storage.store import Store

__all__ = ["import_file", "ImportResult"]


@dataclass
class ImportResult:
    path: Path
    read: int = 0
    stored: int = 0
    symbols: set[str] = field(default_factory=set)
    skipped: dict[str, int] = field(default_factory=dict)  # other events / malformed lines


def import_file(store: Store, path: Path, *, symbol: str | None = None) -> ImportResult:
    """Store the trades of one file, all or nothing."""
    res = ImportResult(path)
    counts: Counter[str] = Counter()
    rows: Iterator[RecordedTrade] = (
        read_agg_trades_csv(path, symbol) if is_agg_trades_csv(path) else read_capture(path, counts)
    )

    def ticks() -> Iterator[Tick]:
        for rec in rows:
            res.read += 1
            res.symbols.add(rec.symbol)
            yield to_tick(rec)

    res.stored = store.insert_ticks(ticks())
    res.skipped = {k: v for k, v in counts.items() if k not in ("aggTrade", "trade")}
    return res

"""Import recorded trades into the store: data.binance.vision aggTrades CSV or WebSocket captures.

A file is validated while it is read and stored in chunks, each its own transaction; storing is
idempotent, so re-running an import after an error never duplicates anything.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from quantpanel.feeds.recording import is_agg_trades_csv, read_agg_trades_csv, read_capture, to_tick
from quantpanel.storage.store import Store

__all__ = ["import_file", "ImportResult"]

_CHUNK = 50_000


@dataclass
class ImportResult:
    path: Path
    read: int = 0
    stored: int = 0
    symbols: set[str] = field(default_factory=set)
    skipped: dict[str, int] = field(default_factory=dict)  # other events / malformed lines


def import_file(store: Store, path: Path, *, symbol: str | None = None) -> ImportResult:
    """Store the trades of one file. ``ImportFileError`` names the file and line of a bad row."""
    res = ImportResult(path)
    counts: Counter[str] = Counter()
    rows = read_agg_trades_csv(path, symbol) if is_agg_trades_csv(path) else read_capture(path, counts)
    chunk = []
    for rec in rows:
        chunk.append(to_tick(rec))
        if len(chunk) >= _CHUNK:
            res.stored += store.insert_ticks(chunk)
            res.read += len(chunk)
            res.symbols.update(t.symbol for t in chunk)
            chunk = []
    if chunk:
        res.stored += store.insert_ticks(chunk)
        res.read += len(chunk)
        res.symbols.update(t.symbol for t in chunk)
    res.skipped = {k: v for k, v in counts.items() if k not in ("aggTrade", "trade")}
    return res

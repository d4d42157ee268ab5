"""Import throughput (issue 18): ``storage.importer.import_file`` on a data.binance.vision
aggTrades CSV against a floor measured in the same run.

The CSV is built here from the bundled real BTCUSDT trades, repeated with shifted times and ids
(as the exchange's loop does) up to the row count. The floor is the least any import of it could
cost: ``pandas.read_csv`` and one ``executemany`` into a bare SQLite table with the store's key
``(symbol, agg_id)`` WITHOUT ROWID, its ``(symbol, time)`` index, WAL and synchronous NORMAL. The
import stores the same rows and builds their 1s/1m/5m bars. Nothing here asserts a threshold.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from quantpanel.feeds.binance_futures import RecordedTrade
from quantpanel.feeds.recording import load_recording
from quantpanel.feeds.trade_files import CSV_COLUMNS

__all__ = ["run_import_bench", "format_import", "TradeBlock", "write_agg_trades_csv"]

SOURCE = "real BTCUSDT trades repeated with shifted times and ids"
_TFS = ("1s", "1m", "5m")
_FLOOR_SCHEMA = (
    ("CREATE TABLE ticks (symbol TEXT NOT NULL, agg_id INTEGER NOT NULL, time INTEGER NOT NULL, "
     "price REAL NOT NULL, qty REAL NOT NULL, buyer_maker INTEGER NOT NULL, "
     "PRIMARY KEY (symbol, agg_id)) WITHOUT ROWID"),
    "CREATE INDEX ticks_symbol_time ON ticks (symbol, time)",
)


@dataclass(frozen=True)
class TradeBlock:
    """One symbol's recorded trades as columns: the unit that is repeated. ``period_ms`` and
    ``id_step`` shift one repetition after the previous; ``stretch`` spreads the trades' times
    out (1: as recorded) for a lower density over a longer span."""

    time: np.ndarray  # int64 ms, rising
    agg_id: np.ndarray
    first_id: np.ndarray
    last_id: np.ndarray
    price: np.ndarray  # float64
    qty: np.ndarray
    buyer_maker: np.ndarray  # bool
    id_step: int

    @classmethod
    def of(cls, trades: Sequence[RecordedTrade]) -> TradeBlock:
        ids = [i for t in trades for i in (t.agg_id, t.first_id, t.last_id)]
        return cls(np.array([t.time for t in trades], dtype="int64"),
                   np.array([t.agg_id for t in trades], dtype="int64"),
                   np.array([t.first_id for t in trades], dtype="int64"),
                   np.array([t.last_id for t in trades], dtype="int64"),
                   np.array([float(t.price) for t in trades]), np.array([float(t.qty) for t in trades]),
                   np.array([t.buyer_maker for t in trades], dtype=bool), max(ids) - min(ids) + 1)

    def repeated(self, start_ms: int, end_ms: int, *, origin_ms: int, period_ms: int,
                 stretch: int = 1, t0: int | None = None) -> pa.Table:
        """The trades of every repetition ``k`` (time ``origin_ms + stretch * (t - t0) + k *
        period_ms``, ``t0`` by default the block's first trade) with ``start_ms <= time < end_ms``,
        as the aggTrades CSV's columns."""
        rel = (self.time - (self.time[0] if t0 is None else t0)) * stretch
        k0 = max(0, (start_ms - origin_ms - int(rel[-1])) // period_ms)
        k1 = max(0, (end_ms - origin_ms) // period_ms + 1)
        parts = []
        for k in range(k0, k1):
            t = origin_ms + rel + k * period_ms
            keep = (t >= start_ms) & (t < end_ms)
            if not keep.any():
                continue
            d = k * self.id_step
            parts.append(pa.table({
                "agg_trade_id": self.agg_id[keep] + d, "price": self.price[keep], "quantity": self.qty[keep],
                "first_trade_id": self.first_id[keep] + d, "last_trade_id": self.last_id[keep] + d,
                "transact_time": t[keep], "is_buyer_maker": self.buyer_maker[keep]}))
        return pa.concat_tables(parts) if parts else pa.table({c: pa.array([], pa.int64()) for c in CSV_COLUMNS})


def write_agg_trades_csv(table: pa.Table, path: Path) -> int:
    """``table`` as a data.binance.vision aggTrades CSV (its header line, unquoted). Returns rows."""
    with path.open("wb") as fh:
        fh.write((",".join(CSV_COLUMNS) + "\n").encode())
        pacsv.write_csv(table.select(list(CSV_COLUMNS)), fh,
                        write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return table.num_rows


def _btc_block(data: Path) -> TradeBlock:
    rec = load_recording(data)
    return TradeBlock.of([t for t in rec.trades if t.symbol == "BTCUSDT"])


def _csv(block: TradeBlock, rows: int, path: Path) -> int:
    """``rows`` trades of ``block`` repeated back to back (1 ms after the block's last trade)."""
    period = int(block.time[-1] - block.time[0]) + 1
    reps = -(-rows // len(block.time))
    table = block.repeated(int(block.time[0]), int(block.time[0]) + reps * period,
                           origin_ms=int(block.time[0]), period_ms=period)
    return write_agg_trades_csv(table.slice(0, rows), path)


def _floor(csv: Path, db: Path) -> float:
    """Seconds to read the CSV with pandas and store it in a bare table with the store's key."""
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_csv(csv)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    for sql in _FLOOR_SCHEMA:
        con.execute(sql)
    rows = zip(["BTCUSDT"] * len(df), df.agg_trade_id.tolist(), df.transact_time.tolist(), df.price.tolist(),
               df.quantity.tolist(), df.is_buyer_maker.astype(int).tolist(), strict=True)
    with con:
        con.executemany("INSERT INTO ticks VALUES (?,?,?,?,?,?)", rows)
    con.close()
    return time.perf_counter() - t0


def _import(csv: Path, db: Path) -> tuple[float, int, int]:
    """(seconds, rows stored, bars written) of ``import_file`` into a fresh store."""
    from quantpanel.pipeline.import_bars import ImportBars
    from quantpanel.storage.importer import import_file
    from quantpanel.storage.store import Store

    t0 = time.perf_counter()
    with Store(db) as store:
        res = import_file(store, csv, bars=ImportBars(_TFS))
    return time.perf_counter() - t0, res.stored, sum(res.bars.values())


def _drop(db: Path) -> None:
    for f in db.parent.glob(db.name + "*"):
        f.unlink()


def run_import_bench(data: Path, *, rows: int, runs: int) -> dict[str, Any]:
    """``import_file`` of a ``rows``-row aggTrades CSV vs the read_csv + bare SQLite floor, each
    the median of ``runs`` runs (floor then import, each into a fresh database)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qp-bench-import-") as d:
        tmp = Path(d)
        csv = tmp / "BTCUSDT-aggTrades-2024-08-08.csv"
        n = _csv(_btc_block(data), rows, csv)
        floors, imports = [], []
        stored = bars = 0
        for _ in range(runs):
            floors.append(_floor(csv, tmp / "floor.db"))
            _drop(tmp / "floor.db")
            secs, stored, bars = _import(csv, tmp / "import.db")
            _drop(tmp / "import.db")
            imports.append(secs)
        size = csv.stat().st_size
    floor, imp = statistics.median(floors), statistics.median(imports)
    return {"import": {
        "rows": n, "stored": stored, "csv_mib": round(size / 2**20, 1), "runs": runs,
        "floor_seconds": round(floor, 3), "floor_rows_per_s": round(n / floor),
        "import_seconds": round(imp, 3), "rows_per_s": round(n / imp), "vs_floor": round(imp / floor, 3),
        "bars": bars, "timeframes": list(_TFS), "source": SOURCE,
        "floor": "pandas.read_csv + executemany into a bare SQLite table, key (symbol, agg_id) "
                 "WITHOUT ROWID, index (symbol, time), WAL, synchronous NORMAL",
        "section_seconds": round(time.perf_counter() - started, 1)}}


def format_import(r: dict[str, Any]) -> str:
    i = r["import"]
    return (f"import ({i['source']}): {i['rows']:,} rows of aggTrades CSV ({i['csv_mib']} MiB), "
            f"bars at {'/'.join(i['timeframes'])}\n"
            f"  import_file         {i['import_seconds']:>7.2f} s  {i['rows_per_s']:>10,} rows/s  "
            f"{i['bars']:,} bars\n"
            f"  floor               {i['floor_seconds']:>7.2f} s  {i['floor_rows_per_s']:>10,} rows/s  "
            f"(read_csv + bare SQLite)\n"
            f"  vs_floor            {i['vs_floor']:>7.2f} x")

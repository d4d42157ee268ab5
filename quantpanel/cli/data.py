"""``quantpanel import`` and ``quantpanel bars``: data into the database, and bars out as CSV."""

from __future__ import annotations

import argparse
import csv
import glob
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

from quantpanel.config import load_config
from quantpanel.errors import ImportFileError
from quantpanel.models import BAR_COLUMNS, TIME_FORMAT

__all__ = ["run_bars", "run_import"]


def run_import(args: argparse.Namespace) -> int:
    """Import each file in order (one JSON line per file), each with its bars in its own
    transaction, then one line per symbol with the bars written; a file imported whole before is
    not read again (a rerun after a crash goes on where it stopped). An OHLC CSV is stored as the
    series it is; a data.binance.vision fundingRate or bookTicker file (told by its header) as
    funding events, or quotes and their quote bars."""
    from quantpanel.feeds.market_files import market_file_kind
    from quantpanel.pipeline.import_bars import ImportBars
    from quantpanel.pipeline.quote_bars import QuoteBarBuilder
    from quantpanel.storage.importer import import_file, import_market_file
    from quantpanel.storage.ohlc import is_ohlc_file, parse_ohlc_csv, read_file_bytes, store_ohlc
    from quantpanel.storage.store import Store

    cfg = load_config(args.config, {"storage.db_path": args.db})
    cap = int(cfg.storage.max_upload_mb * 2**20)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    with Store(cfg.storage.db_path) as store:
        bars_written: Counter[str] = Counter()
        for f in _expand(args.files):
            market = market_file_kind(Path(f))
            if market is not None:  # before the trade readers: any .csv would look like aggTrades there
                mres = import_market_file(store, Path(f), market, symbol=args.symbol,
                                          quote_bars=QuoteBarBuilder(cfg.timeframes))
                out: dict[str, object] = {"file": f, "kind": market, "read": mres.read,
                                          "symbols": sorted(mres.symbols)}
                if market == "funding_rate":
                    out |= {"funding_events": mres.stored, "already_stored": mres.read - mres.stored}
                else:
                    out |= {"quotes": mres.stored, "already_stored": mres.read - mres.stored,
                            "quote_bars": mres.quote_bars, "timeframes": list(mres.timeframes),
                            "quotes_out_of_order": mres.out_of_order}
                print(json.dumps(out), flush=True)
                continue
            if is_ohlc_file(Path(f)):  # an OHLC CSV: validated whole, then stored in one transaction
                series = parse_ohlc_csv(read_file_bytes(Path(f), max_bytes=cap), name=f, symbol=args.symbol,
                                        timeframe=args.timeframe, max_bytes=cap)
                stored = store_ohlc(store, series)
                print(json.dumps({"file": f, "kind": "ohlc", "stored": stored,
                                  "series": [{"symbol": s.symbol, "timeframe": s.timeframe, "bars": len(s.frame)}
                                             for s in series]}), flush=True)
                continue
            with _progress_bar(Path(f), show) as report:
                res = import_file(store, Path(f), symbol=args.symbol, progress=report, resume=True,
                                  bars=ImportBars(cfg.timeframes, grace_ms=cfg.bars.close_grace_ms))
            bars_written.update(dict.fromkeys(res.symbols, 0) | res.bars)
            print(json.dumps({"file": f, "read": res.read, "stored": res.stored,
                              "already_stored": res.read - res.stored,
                              "symbols": sorted(res.symbols), "skipped": res.skipped,
                              "synthesised": res.synthesised, "already_imported": res.already_imported,
                              "bars": sum(res.bars.values()), "seconds": round(res.seconds, 3),
                              "rows_per_s": round(res.read / res.seconds) if res.seconds else None}), flush=True)
        for sym in sorted(bars_written):
            print(json.dumps({"symbol": sym, "bars_rebuilt": bars_written[sym]}), flush=True)
    return 0


def _expand(files: list[str]) -> list[str]:
    """The files in the order given; a pattern the shell did not expand (quoted, or on Windows)
    is expanded here, in name order (a month of daily files runs day by day)."""
    out: list[str] = []
    for f in files:
        if not Path(f).exists() and glob.has_magic(f):
            hits = sorted(glob.glob(f))
            if not hits:
                raise ImportFileError(f"{f}: no file matches this pattern")
            out += hits
        else:
            out.append(f)
    return out


@contextmanager
def _progress_bar(path: Path, show: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr (rows, rows/s and ETA, from the file's estimated row count)."""
    if not show:
        yield None
        return
    from tqdm import tqdm

    from quantpanel.feeds.trade_columns import estimate_rows

    with tqdm(total=estimate_rows(path), unit=" rows", unit_scale=True, file=sys.stderr, desc=path.name,
              mininterval=0.5, dynamic_ncols=True) as bar:
        def report(rows: int) -> None:
            if bar.total is not None and rows > bar.total:
                bar.total = rows
            bar.update(rows - bar.n)

        yield report
        bar.total = bar.n  # the estimate was an estimate
        bar.refresh()


def run_bars(args: argparse.Namespace) -> int:
    """Bars of one stored series as CSV (``BAR_COLUMNS``), to stdout or ``--out``."""
    from quantpanel.pipeline.history import load_bars, require_series
    from quantpanel.storage.store import Store

    cfg = load_config(args.config, {"storage.db_path": args.db})
    symbol = args.symbol.upper()
    with Store(cfg.storage.db_path, readonly=True) as store:
        require_series(store, symbol, args.timeframe)
        bars = load_bars(store, symbol, args.timeframe, args.start, args.end,
                         grace_ms=cfg.bars.close_grace_ms)
    with open(args.out, "w", newline="", encoding="utf-8") if args.out else nullcontext(sys.stdout) as out:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(BAR_COLUMNS)
        for b in bars:  # what the data does not say (NaN) is an empty cell
            w.writerow([_iso(b.time), *(("" if v != v else v) for v in (
                getattr(b, c) for c in BAR_COLUMNS[1:]))])
    if args.out:
        print(f"wrote {len(bars)} bars to {args.out}", file=sys.stderr)
    return 0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(TIME_FORMAT)

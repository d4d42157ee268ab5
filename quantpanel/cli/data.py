"""``quantpanel import`` and ``quantpanel bars``: data into the database, and bars out as CSV."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

from quantpanel.config import load_config
from quantpanel.models import BAR_COLUMNS, TIME_FORMAT

__all__ = ["run_bars", "run_import"]


def run_import(args: argparse.Namespace) -> int:
    """Import each file (one JSON line per file), then rebuild the bars of the symbols whose
    trades it added; an OHLC CSV is stored as the series it is; a data.binance.vision fundingRate
    or bookTicker file (told by its header) as funding events, or quotes and their quote bars."""
    from quantpanel.feeds.market_files import market_file_kind
    from quantpanel.pipeline.history import rebuild_bars
    from quantpanel.pipeline.quote_bars import QuoteBarBuilder
    from quantpanel.storage.importer import import_file, import_market_file
    from quantpanel.storage.ohlc import is_ohlc_file, parse_ohlc_csv, read_file_bytes, store_ohlc
    from quantpanel.storage.store import Store

    cfg = load_config(args.config, {"storage.db_path": args.db})
    cap = int(cfg.storage.max_upload_mb * 2**20)
    with Store(cfg.storage.db_path) as store:
        touched: set[str] = set()
        for f in args.files:
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
            res = import_file(store, Path(f), symbol=args.symbol)
            touched.update(res.symbols)
            print(json.dumps({"file": f, "read": res.read, "stored": res.stored,
                              "already_stored": res.read - res.stored,
                              "symbols": sorted(res.symbols), "skipped": res.skipped,
                              "synthesised": res.synthesised}), flush=True)
        for sym in sorted(touched):
            n = rebuild_bars(store, sym, cfg.timeframes)
            print(json.dumps({"symbol": sym, "bars_rebuilt": n}), flush=True)
    return 0


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

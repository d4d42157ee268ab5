"""Stored history at scale (issue 18): 30 days of a pair's ticks, imported as daily aggTrades
CSVs, then what a person waits for: ``quantpanel analyze`` over the 30 days of 1m bars (in
process and as the command), the dashboard's warm-up and ``load_bars`` of 30 days of 1m.

The ticks are the bundled real BTCUSDT and ETHUSDT trades, their times stretched (a lower density
than recorded, so 30 days stay affordable) and repeated with shifted times and ids, split into one
file per symbol and UTC day as data.binance.vision serves them, and imported by
``storage.importer.import_file`` with the config's bar timeframes. Nothing here asserts a threshold.
"""

from __future__ import annotations

import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from quantpanel.bench.importing import TradeBlock, write_agg_trades_csv
from quantpanel.config import Config, find_config_path, load_config
from quantpanel.feeds.recording import load_recording

__all__ = ["run_history_bench", "format_history", "PAIR"]

PAIR = ("BTCUSDT", "ETHUSDT")
DAY_MS = 86_400_000
#: Recorded times spread out this much: ~178k BTCUSDT and ~118k ETHUSDT trades per day.
STRETCH = 30
_ROOT = Path(__file__).resolve().parents[2]
_T = TypeVar("_T")


def _source(days: int) -> str:
    return (f"real BTCUSDT and ETHUSDT trades, times stretched x{STRETCH} and repeated with shifted "
            f"times and ids to fill {days} days")


def _timed(fn: Callable[[], _T], runs: int) -> tuple[float, _T]:
    """Median seconds of ``runs`` calls, and the last call's result."""
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out  # type: ignore[return-value]


def build_history_db(data: Path, db: Path, tmp: Path, *, days: int, cfg: Config) -> dict[str, Any]:
    """``days`` UTC days of both legs, one aggTrades CSV per symbol and day, imported into ``db``
    (the days end at the recording's UTC midnight). The figures of the build."""
    from quantpanel.pipeline.import_bars import ImportBars
    from quantpanel.storage.importer import import_file
    from quantpanel.storage.store import Store

    started = time.perf_counter()
    rec = load_recording(data)
    blocks = {s: TradeBlock.of([t for t in rec.trades if t.symbol == s]) for s in PAIR}
    t0 = min(int(b.time[0]) for b in blocks.values())
    period = STRETCH * rec.span_ms()  # one pass of the stretched recording, then the next
    first_day = t0 // DAY_MS * DAY_MS - days * DAY_MS
    ticks = bars = 0
    import_s = 0.0
    with Store(db) as store:
        for d in range(days):
            lo = first_day + d * DAY_MS
            date = datetime.fromtimestamp(lo / 1000, UTC).strftime("%Y-%m-%d")
            for sym, block in blocks.items():
                csv = tmp / f"{sym}-aggTrades-{date}.csv"
                write_agg_trades_csv(block.repeated(lo, lo + DAY_MS, origin_ms=first_day, period_ms=period,
                                                    stretch=STRETCH, t0=t0), csv)
                res = import_file(store, csv, bars=ImportBars(cfg.timeframes, grace_ms=cfg.bars.close_grace_ms))
                csv.unlink()
                ticks += res.stored
                bars += sum(res.bars.values())
                import_s += res.seconds
    return {"days": days, "start_ms": first_day, "end_ms": first_day + days * DAY_MS, "ticks": ticks,
            "bars_written": bars, "build_seconds": round(time.perf_counter() - started, 2),
            "import_seconds": round(import_s, 2), "import_rows_per_s": round(ticks / import_s)}


def _analyze_argv(db: Path, config: Path | None) -> list[str]:
    return ["analyze", "--pair", *PAIR, "--timeframe", "1m", "--db", str(db), "--json",
            *(["--config", str(config)] if config else [])]


def _analyze_in_process(db: Path, cfg: Config) -> dict[str, Any]:
    """What ``quantpanel analyze --json`` computes (``cli.pair.run_analyze``, config defaults),
    called directly: the bench sits below the CLI and may not import it."""
    from quantpanel.analytics import pair_report
    from quantpanel.pipeline.history import pair_closes
    from quantpanel.storage.store import Store

    with Store(db, readonly=True) as store:
        y, x = pair_closes(store, *PAIR, "1m", grace_ms=cfg.bars.close_grace_ms)
    report = pair_report(y, x, window=cfg.windows.zscore, lookback=cfg.windows.lookback or None,
                         adf_maxlag=cfg.windows.adf_maxlag, hurst_max_lag=cfg.windows.hurst_max_lag)
    out: dict[str, Any] = json.loads(json.dumps(report.as_json()))  # as the command prints it
    return out


def _analyze_cli(argv: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "quantpanel", *argv], capture_output=True, text=True,
                          cwd=_ROOT, check=True, timeout=600)
    return json.loads(proc.stdout)


def run_history_bench(data: Path, *, days: int, runs: int) -> dict[str, Any]:
    """Build ``days`` of the pair's history, then time each figure: ``analyze`` once in process
    and once as the command, the sub-second readers the median of ``runs`` runs."""
    from quantpanel.pipeline.history import load_bars, pair_closes, warm_start
    from quantpanel.storage.store import Store

    started = time.perf_counter()
    config = find_config_path(None)
    cfg = load_config(config, {})
    with tempfile.TemporaryDirectory(prefix="qp-bench-history-") as d:
        tmp = Path(d)
        db = tmp / "history.db"
        r = build_history_db(data, db, tmp, days=days, cfg=cfg)
        argv = _analyze_argv(db, config)
        for mod in ("quantpanel.analytics",):  # loaded before the clock
            importlib.import_module(mod)  # starts: start-up is the command's figure, not this one's
        # seconds-long figures: one run each
        r["analyze_30d_seconds"], report = _timed(lambda: _analyze_in_process(db, cfg), 1)
        r["analyze_cli_seconds"], cli_report = _timed(lambda: _analyze_cli(argv), 1)
        r["analyze_bars"] = report["n"]
        r["analyze_same_in_cli"] = report == cli_report
        grace = cfg.bars.close_grace_ms
        with Store(db, readonly=True) as store:
            r["pair_closes_seconds"], _ = _timed(lambda: pair_closes(store, *PAIR, "1m", grace_ms=grace), runs)
            r["load_bars_1m_30d_seconds"], bars = _timed(
                lambda: load_bars(store, PAIR[0], "1m", r["start_ms"], r["end_ms"], grace_ms=grace), runs)
            r["bars_1m_per_symbol"] = len(bars)
        with Store(db) as store:
            r["warm_start_seconds"], warm = _timed(
                lambda: warm_start(store, PAIR, cfg.timeframes, bars=cfg.dashboard.buffer_bars, grace_ms=grace),
                runs)
        r["warm_start_series"] = len(warm.history)
        r["warm_start_bars"] = cfg.dashboard.buffer_bars
        r["db_mib"] = round(sum(f.stat().st_size for f in tmp.glob("history.db*")) / 2**20, 1)
    for k in ("analyze_30d_seconds", "analyze_cli_seconds", "pair_closes_seconds", "load_bars_1m_30d_seconds",
              "warm_start_seconds"):
        r[k] = round(r[k], 3)
    r.update(runs=runs, timeframes=list(cfg.timeframes), pair=list(PAIR), source=_source(days),
             section_seconds=round(time.perf_counter() - started, 1))
    return {"history": r}


def format_history(r: dict[str, Any]) -> str:
    h = r["history"]
    return (f"history ({h['source']}): {h['ticks']:,} ticks, {h['bars_written']:,} bars at "
            f"{'/'.join(h['timeframes'])}, {h['db_mib']} MiB\n"
            f"  build (CSV + import)   {h['build_seconds']:>7.2f} s  import {h['import_rows_per_s']:,} rows/s\n"
            f"  analyze, in process    {h['analyze_30d_seconds']:>7.3f} s  {h['analyze_bars']:,} aligned 1m bars "
            f"(reading them: {h['pair_closes_seconds']:.3f} s)\n"
            f"  analyze, command       {h['analyze_cli_seconds']:>7.3f} s\n"
            f"  warm-up                {h['warm_start_seconds']:>7.3f} s  {h['warm_start_series']} series x "
            f"{h['warm_start_bars']} bars\n"
            f"  load_bars, 1m          {h['load_bars_1m_30d_seconds']:>7.3f} s  "
            f"{h['bars_1m_per_symbol']:,} bars of {PAIR[0]} ({h['days']} days)")

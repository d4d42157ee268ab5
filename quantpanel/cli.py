"""The ``quantpanel`` command: serve, exchange, record, import, bars, analyze, backtest, sweep, bench.

Every command reads config.yaml (``--config``) and its flags override the config. Errors the user
can fix (bad config, bad file, unreachable DB) print one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime, UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantpanel.config import Config, load_config
from quantpanel.errors import ConfigError, QuantPanelError
from quantpanel.models import TIME_FORMAT

if TYPE_CHECKING:
    import pandas as pd

    from quantpanel.storage.store import Store

__all__ = ["main", "app_options", "parse_time"]

log = logging.getLogger("quantpanel")


def parse_time(text: str) -> int:
    """ISO-8601 (naive = UTC) or epoch milliseconds -> epoch ms."""
    t = text.strip()
    if t.lstrip("-").isdigit():
        return int(t)
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not ISO-8601 (2024-08-08T23:55:00Z) or epoch milliseconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(TIME_FORMAT)


def _config(args: argparse.Namespace, overrides: dict[str, Any]) -> Config:
    return load_config(args.config, overrides)


def _symbols(text: str | None) -> list[str] | None:
    return [s for s in text.replace(",", " ").split()] if text else None


def _timeframe(text: str) -> str:
    """argparse type of ``--timeframe``: any timeframe a stored series can have (built from
    trades or imported); whether the database holds it is checked against the database."""
    from quantpanel.models import SERIES_TIMEFRAMES

    if text not in SERIES_TIMEFRAMES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a timeframe; expected one of "
                                         f"{', '.join(SERIES_TIMEFRAMES)}")
    return text


# -- serve --------------------------------------------------------------------------------------
def websocket_max_message_bytes(cfg: Config) -> int:
    """The server's websocket message cap: an upload travels base64-encoded in one message, so
    let ``storage.max_upload_mb`` through (never below Bokeh's default, 20 MiB)."""
    return max(20 * 2**20, int(cfg.storage.max_upload_mb * 2**20 * 4 / 3) + 2**20)


def _serve(args: argparse.Namespace) -> int:
    import panel as pn

    from quantpanel.dashboard.app import create_app
    from quantpanel.dashboard.hub import get_hub

    cfg = _config(args, {
        "server.host": args.host, "server.port": args.port, "source": args.source,
        "feed.ws_url": args.ws_url, "replay.speed": args.speed,
        "server.allow_websocket_origin": args.allow_websocket_origin, **_db_dir(args.db_dir),
    })
    origins = list(cfg.server.allow_websocket_origin) or [
        f"{h}:{cfg.server.port}" for h in ("localhost", "127.0.0.1", cfg.server.host)]
    print(f"quantpanel serving on http://{cfg.server.host}:{cfg.server.port} "
          f"(source {cfg.source})", flush=True)
    max_message = websocket_max_message_bytes(cfg)
    server = pn.serve(lambda: create_app(cfg), address=cfg.server.host, port=cfg.server.port,
                      websocket_origin=origins, show=False, title="quantpanel",
                      websocket_max_message_size=max_message, start=False)
    # ingestion starts with the server (it records with no browser open), not with the first tab
    server.io_loop.add_callback(lambda: get_hub(cfg))
    server.start()
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        print("quantpanel stopped", flush=True)
    return 0


def app_options(argv: Sequence[str] | None = None) -> tuple[Config, str | None]:
    """Options of ``panel serve app.py --args ...`` (and QUANTPANEL_* environment variables)."""
    import os

    p = argparse.ArgumentParser(prog="app.py", add_help=False)
    p.add_argument("--config")
    p.add_argument("--source", choices=["auto", "live", "replay"])
    p.add_argument("--db-dir")
    ns, _ = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    source = ns.source or os.environ.get("QUANTPANEL_SOURCE") or None
    return load_config(ns.config, {"source": source, **_db_dir(ns.db_dir)}), source


def _db_dir(directory: str | None) -> dict[str, str]:
    """``--db-dir D``: both databases in D (a container's volume)."""
    if not directory:
        return {}
    return {"storage.db_path": str(Path(directory) / "quantpanel.db"),
            "storage.replay_db_path": str(Path(directory) / "replay.db")}


# -- exchange -----------------------------------------------------------------------------------
def _exchange(args: argparse.Namespace) -> int:
    from quantpanel.feeds.exchange import Exchange, Faults
    from quantpanel.feeds.recording import load_recording

    cfg = _config(args, {})
    data = Path(args.data) if args.data else cfg.replay.data
    recording = load_recording(data)

    try:
        faults = Faults(drop_every=args.drop_every, garbage_every=args.garbage_every,
                        every=args.faults_every, kinds=tuple(k for k in args.fault_kinds.split(",") if k),
                        seed=args.fault_seed, stall_s=args.stall_s, rest_fail_every=args.rest_fail_every)
    except ValueError as exc:
        raise ConfigError(f"--fault-kinds: {exc}") from None

    async def run() -> None:
        ex = Exchange(
            recording, speed=args.speed, loop=args.loop, rebase_to_now=args.rebase_to_now,
            host=args.host, port=args.port, pause_when_idle=not args.free_run,
            faults=faults,
            sent_log=Path(args.sent_log) if args.sent_log else None,
        )
        await ex.start()
        print(f"exchange listening on {ex.url} replaying {len(recording.trades)} trades of "
              f"{','.join(recording.symbols)} from {data}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waits = [asyncio.ensure_future(stop.wait())]
        if args.exit_when_done:
            waits.append(asyncio.ensure_future(ex.done.wait()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if args.exit_when_done and ex.done.is_set():
            await asyncio.sleep(args.linger)
        await ex.stop()
        print(json.dumps({"frames_sent": ex.stats.frames_sent, "drops": ex.stats.drops,
                          "garbage_sent": ex.stats.garbage_sent,
                          "connections": ex.stats.connections}), flush=True)

    asyncio.run(run())
    return 0


# -- record -------------------------------------------------------------------------------------
async def record(cfg: Config, duration: float | None) -> dict[str, Any]:
    """Headless ingest: feed -> pipeline (store + bars) for ``duration`` s or until a signal."""
    from quantpanel.feeds.connection import FeedConnection
    from quantpanel.pipeline.backfilling import make_backfill
    from quantpanel.pipeline.graph import Pipeline
    from quantpanel.pipeline.history import warm_start
    from quantpanel.alerts.rules import inactive_reason
    from quantpanel.config import alert_rules
    from quantpanel.storage.store import Store
    from quantpanel.storage.writer import StoreWriter

    inactive = [{"name": r.name, "reason": why} for r in alert_rules(cfg)
                if (why := inactive_reason(r, cfg.symbols, cfg.timeframes)) is not None]
    for rule in inactive:
        log.warning("alert rule %r is inactive: %s", rule["name"], rule["reason"])
    db = cfg.storage.db_path
    writer = StoreWriter(db)
    with Store(db) as store:
        warm = warm_start(store, cfg.symbols, cfg.timeframes, bars=0, grace_ms=cfg.bars.close_grace_ms)
        last_ids = {s: store.max_agg_id(s) for s in cfg.symbols}
    writer.put_bars(warm.recovered)
    pipeline = Pipeline(warm.state, writer)
    f = cfg.feed
    backfill = make_backfill(cfg, pipeline.emit, writer, last_ids)
    feed = FeedConnection(f.ws_url, cfg.symbols, backfill.on_batch, batch_max_ticks=f.batch_max_ticks,
                          batch_interval_ms=f.batch_interval_ms, silence_timeout_s=f.silence_timeout_s,
                          connect_timeout_s=f.connect_timeout_s, backoff_initial_s=f.backoff_initial_s,
                          backoff_max_s=f.backoff_max_s,
                          max_connection_age_s=f.max_connection_age_s)
    feed.on_connect = backfill.probe
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    task = loop.create_task(feed.run())
    try:
        await asyncio.wait_for(stop.wait(), duration)
    except TimeoutError:
        pass
    await feed.stop()
    await task
    await backfill.drain(30)
    await asyncio.to_thread(writer.flush)
    writer.close()
    st, bf = feed.stats, backfill.stats
    return {
        "db": str(db), "seconds": round(time.monotonic() - started, 3), "ticks_received": st.ticks,
        "ticks_stored": writer.stats.ticks_written, "duplicates_ignored": writer.stats.ticks_ignored,
        "bars_stored": writer.stats.bars_written, "frames": st.frames, "malformed": st.malformed,
        "other_events": dict(st.other_events), "connects": st.connects,
        "reconnects": st.reconnects, "store_errors": writer.stats.errors,
        "gaps": bf.gaps, "trades_backfilled": bf.trades_filled, "gaps_unfilled": bf.gaps_unfilled,
        "rest_requests": backfill.rest.stats.requests if backfill.rest else 0,
        "rest_retries": backfill.rest.stats.retries if backfill.rest else 0,
        "backfill_holds": bf.holds, "longest_hold_s": round(bf.longest_hold_s, 3),
        "watchdog_reconnects": st.watchdog_reconnects, "alert_rules_inactive": inactive,
    }


def _record(args: argparse.Namespace) -> int:
    cfg = _config(args, {"symbols": _symbols(args.symbols), "storage.db_path": args.db,
                         "feed.ws_url": args.ws_url, "feed.rest_url": args.rest_url})
    print(f"recording {','.join(cfg.symbols)} from {cfg.feed.ws_url} into {cfg.storage.db_path}",
          file=sys.stderr, flush=True)
    summary = asyncio.run(record(cfg, args.duration))
    print(json.dumps(summary), flush=True)
    return 0


# -- import -------------------------------------------------------------------------------------
def _import(args: argparse.Namespace) -> int:
    from quantpanel.pipeline.history import rebuild_bars
    from quantpanel.storage.importer import import_file
    from quantpanel.storage.store import Store

    from quantpanel.storage.ohlc import is_ohlc_file, parse_ohlc_csv, read_file_bytes, store_ohlc

    cfg = _config(args, {"storage.db_path": args.db})
    cap = int(cfg.storage.max_upload_mb * 2**20)
    with Store(cfg.storage.db_path) as store:
        touched: set[str] = set()
        for f in args.files:
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


# -- bars ---------------------------------------------------------------------------------------
def _bars(args: argparse.Namespace) -> int:
    from quantpanel.pipeline.history import load_bars, require_series
    from quantpanel.storage.store import Store

    cfg = _config(args, {"storage.db_path": args.db})
    symbol = args.symbol.upper()
    with Store(cfg.storage.db_path, readonly=True) as store:
        require_series(store, symbol, args.timeframe)
        bars = load_bars(store, symbol, args.timeframe, args.start, args.end,
                         grace_ms=cfg.bars.close_grace_ms)
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
    try:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["time", "open", "high", "low", "close", "volume", "trades", "vwap", "buy_volume"])
        for b in bars:  # what the data does not say (NaN) is an empty cell
            w.writerow([_iso(b.time), *(("" if v != v else v) for v in (
                b.open, b.high, b.low, b.close, b.volume, b.trades, b.vwap, b.buy_volume))])
    finally:
        if args.out:
            out.close()
    if args.out:
        print(f"wrote {len(bars)} bars to {args.out}", file=sys.stderr)
    return 0


# -- analyze ------------------------------------------------------------------------------------
def pair_closes(store: "Store", a: str, b: str, timeframe: str, start: int | None,
                end: int | None, *, grace_ms: int = 250) -> tuple["pd.Series", "pd.Series"]:
    """Closes of both legs' closed bars, inner-joined on bar time (ANALYTICS.md pair inputs).

    A pair of one symbol with itself, or a leg the database has no bars of, is an error."""
    from quantpanel.analytics import align
    from quantpanel.pipeline.history import load_closes, require_series

    if a == b:
        raise ConfigError(f"--pair {a} {b}: a pair needs two different symbols")
    for leg in (a, b):
        require_series(store, leg, timeframe)
    closes = load_closes(store, [a, b], timeframe, start, end, grace_ms=grace_ms)
    return align(closes[a].dropna(), closes[b].dropna())


def _analyze(args: argparse.Namespace) -> int:
    from quantpanel.analytics import pair_report
    from quantpanel.storage.store import Store

    cfg = _config(args, {"storage.db_path": args.db})
    a, b = (s.upper() for s in args.pair)
    with Store(cfg.storage.db_path, readonly=True) as store:
        y, x = pair_closes(store, a, b, args.timeframe, args.start, args.end, grace_ms=cfg.bars.close_grace_ms)
    window = args.window or cfg.windows.zscore
    report = pair_report(y, x, window=window, lookback=args.lookback or cfg.windows.lookback or None,
                         adf_maxlag=args.adf_maxlag if args.adf_maxlag is not None else cfg.windows.adf_maxlag,
                         hurst_max_lag=cfg.windows.hurst_max_lag)
    for key, why in report.errors.items():
        print(f"quantpanel analyze: {key}: {why}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_json()))
        return 0
    print(f"{a} (y) vs {b} (x), {args.timeframe} bars, {report.n} aligned, window {window}")
    for k, v in report.as_json().items():
        print(f"  {k:<13} {'—' if v is None else (f'{v:.6g}' if isinstance(v, float) else v)}")
    print(report.verdict)
    return 0


# -- backtest / sweep ----------------------------------------------------------------------------
def _grid(text: str) -> list[float]:
    """argparse type of ``--entry-grid`` / ``--exit-grid``."""
    from quantpanel.analytics.backtest import parse_grid

    try:
        return parse_grid(text).tolist()
    except QuantPanelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _signal(args: argparse.Namespace, cfg: Config) -> tuple["pd.Series", "pd.Series", Any, float]:
    """Aligned closes, the signal the backtest trades on, bars per year."""
    from quantpanel.analytics.backtest import pair_signal
    from quantpanel.models import timeframe_ms
    from quantpanel.storage.store import Store

    a, b = (s.upper() for s in args.pair)
    with Store(cfg.storage.db_path, readonly=True) as store:
        y, x = pair_closes(store, a, b, args.timeframe, args.start, args.end, grace_ms=cfg.bars.close_grace_ms)
    sig = pair_signal(y, x, mode=args.beta, window=args.window or cfg.windows.zscore,
                      lookback=args.lookback or None, delta=cfg.kalman.delta, ve=cfg.kalman.ve)
    return y, x, sig, 365 * 86_400_000 / timeframe_ms(args.timeframe)


def _clean(v: Any) -> Any:
    import math

    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_clean(i) for i in v]
    return v


def _backtest(args: argparse.Namespace) -> int:
    from quantpanel.analytics.backtest import backtest, trades_frame

    cfg = _config(args, {"storage.db_path": args.db})
    y, x, sig, per_year = _signal(args, cfg)
    bt = cfg.backtest
    r = backtest(y, x, sig.z, sig.beta, entry=_pick(args.entry, bt.entry), exit=_pick(args.exit, bt.exit),
                 stop=_pick(args.stop, bt.stop), fee_bps=_pick(args.fee_bps, bt.fee_bps),
                 slippage_bps=_pick(args.slippage_bps, bt.slippage_bps), bars_per_year=per_year)
    if args.trades_csv:
        trades_frame(r, y.index).to_csv(args.trades_csv, index=False, date_format=TIME_FORMAT)
    out = {"total_pnl": r.total_pnl, "n_trades": r.n_trades, "win_rate": r.win_rate,
           "avg_trade": r.avg_trade, "max_drawdown": r.max_drawdown, "sharpe": r.sharpe, "fees": r.fees,
           "pair": [s.upper() for s in args.pair], "timeframe": args.timeframe, "beta_mode": args.beta,
           "window": args.window or cfg.windows.zscore, "entry": r.entry, "exit": r.exit, "stop": r.stop,
           "fee_bps": r.fee_bps, "slippage_bps": r.slippage_bps, "bars": len(y)}
    if args.json:
        print(json.dumps({k: _clean(v) for k, v in out.items()}))
    else:
        for k, v in out.items():
            print(f"  {k:<13} {'—' if _clean(v) is None else v}")
    return 0


def _pick(flag: Any, default: Any) -> Any:
    return default if flag is None else flag


def _sweep(args: argparse.Namespace) -> int:
    from quantpanel.analytics.backtest import sweep

    cfg = _config(args, {"storage.db_path": args.db})
    y, x, sig, per_year = _signal(args, cfg)
    bt = cfg.backtest
    r = sweep(y, x, sig.z, sig.beta, entries=args.entry_grid, exits=args.exit_grid,
              stop=_pick(args.stop, bt.stop), fee_bps=_pick(args.fee_bps, bt.fee_bps),
              slippage_bps=_pick(args.slippage_bps, bt.slippage_bps), bars_per_year=per_year)
    i, j = divmod(int(r.total_pnl.argmax()), len(r.exits))
    out = {"entries": r.entries.tolist(), "exits": r.exits.tolist(),
           "total_pnl": _clean(r.total_pnl.tolist()), "sharpe": _clean(r.sharpe.tolist()),
           "max_drawdown": _clean(r.max_drawdown.tolist()), "n_trades": r.n_trades.tolist(),
           "best": {"entry": float(r.entries[i]), "exit": float(r.exits[j]),
                    "total_pnl": float(r.total_pnl[i, j])},
           "pair": [s.upper() for s in args.pair], "timeframe": args.timeframe, "beta_mode": args.beta,
           "window": args.window or cfg.windows.zscore, "bars": len(y)}
    if args.json:
        print(json.dumps(out))
    else:
        print("total P&L (rows: entry, columns: exit)")
        print("        " + "".join(f"{e:>10g}" for e in r.exits))
        for e, row in zip(r.entries, r.total_pnl, strict=True):
            print(f"{e:>8g}" + "".join(f"{v:>10.4g}" for v in row))
        print(f"best: entry {out['best']['entry']:g}, exit {out['best']['exit']:g}")
    return 0


# -- bench --------------------------------------------------------------------------------------
def _bench(args: argparse.Namespace) -> int:
    from quantpanel.bench import main as bench_main

    cfg = _config(args, {})
    soak = args.soak_minutes if args.soak_minutes is not None else (30.0 if args.soak else 0.0)
    return bench_main(Path(args.data) if args.data else cfg.replay.data, quick=args.quick,
                      as_json=args.json, push=not args.no_push, soak_minutes=soak)


# -- parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from quantpanel.feeds.exchange import FAULT_KINDS

    def global_options(parser: argparse.ArgumentParser, default: Any) -> argparse.ArgumentParser:
        """--config and -v: accepted before the command and after it, with the same meaning (a
        subcommand's copy defaults to SUPPRESS, so it never undoes one given before)."""
        parser.add_argument("--config", default=default if default is argparse.SUPPRESS else None,
                            help="config file (default: $QUANTPANEL_CONFIG or ./config.yaml)")
        parser.add_argument("-v", "--verbose", action="store_true",
                            default=default if default is argparse.SUPPRESS else False, help="debug logging")
        return parser

    p = global_options(argparse.ArgumentParser(prog="quantpanel", description=__doc__.split("\n")[0]), None)
    common = global_options(argparse.ArgumentParser(add_help=False), argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    s = command("serve", help="run the dashboard", description="Serve the dashboard.")
    s.add_argument("--host", help="address to bind (config server.host)")
    s.add_argument("--port", type=int, help="port (config server.port)")
    s.add_argument("--source", choices=["auto", "live", "replay"], help="where ticks come from")
    s.add_argument("--ws-url", help="Binance-compatible combined-stream URL (config feed.ws_url)")
    s.add_argument("--speed", type=float, help="replay speed factor, 0 = as fast as possible")
    s.add_argument("--allow-websocket-origin", action="append", help="allowed browser origin host:port")
    s.add_argument("--db-dir", help="directory for both databases (overrides storage.*_path)")
    s.set_defaults(func=_serve)

    e = command("exchange", help="run the local Binance-compatible exchange",
                       description="Replay recorded aggTrades over a Binance-compatible WebSocket.")
    e.add_argument("--data", help="recording: JSON-lines capture (.gz ok) or aggTrades CSV/zip")
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    e.add_argument("--speed", type=float, default=1.0, help="x real time; 0 = as fast as possible")
    e.add_argument("--loop", action=argparse.BooleanOptionalAction, default=False,
                   help="loop forever, shifting times and ids each pass")
    e.add_argument("--rebase-to-now", action=argparse.BooleanOptionalAction, default=False,
                   help="shift times so the replay starts now")
    e.add_argument("--free-run", action="store_true",
                   help="keep the timeline running while no client is connected")
    e.add_argument("--drop-every", type=int, default=0, help="close a connection every N frames")
    e.add_argument("--garbage-every", type=int, default=0, help="send a garbage frame every N frames")
    e.add_argument("--faults-every", type=int, default=0,
                   help="inject one fault of a random kind every N frames sent to a connection")
    e.add_argument("--fault-kinds", default=",".join(FAULT_KINDS),
                   help=f"comma-separated kinds to draw from ({','.join(FAULT_KINDS)})")
    e.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws")
    e.add_argument("--stall-s", type=float, default=2.0, help="how long a stall keeps a connection silent")
    e.add_argument("--rest-fail-every", type=int, default=0,
                   help="answer every Nth REST request with 429 or 503, alternately")
    e.add_argument("--sent-log", help="append 'SYMBOL agg_id' of every frame sent to this file")
    e.add_argument("--exit-when-done", action="store_true", help="exit once the recording is played")
    e.add_argument("--linger", type=float, default=1.0, help="seconds to wait before exiting when done")
    e.set_defaults(func=_exchange)

    r = command("record", help="headless ingest into the DB",
                       description="Ingest aggTrades into the DB for --duration s or until Ctrl-C.")
    r.add_argument("--symbols", help="comma-separated symbols (config symbols)")
    r.add_argument("--db", help="SQLite file (config storage.db_path)")
    r.add_argument("--ws-url", help="Binance-compatible combined-stream URL (config feed.ws_url)")
    r.add_argument("--rest-url", help="Binance-compatible REST base URL for gap backfill (config feed.rest_url)")
    r.add_argument("--duration", type=float, help="seconds to record (default: until Ctrl-C)")
    r.set_defaults(func=_record)

    i = command("import", help="import aggTrades CSVs, WebSocket captures or OHLC CSVs",
                       description="Import data.binance.vision aggTrades CSV/zip files or "
                                   "JSON-lines WebSocket captures (bars are rebuilt), or OHLC CSVs "
                                   "(a time column and open/high/low/close; timeframe from the data).")
    i.add_argument("files", nargs="+", help="files to import")
    i.add_argument("--db", help="SQLite file (config storage.db_path)")
    i.add_argument("--symbol", help="symbol of a CSV whose name does not say it")
    i.add_argument("--timeframe", help="OHLC CSV: the expected bar interval (checked against the data)")
    i.set_defaults(func=_import)

    b = command("bars", help="print or write bars as CSV",
                       description="Bars of one symbol as CSV (time in ISO-8601 UTC).")
    b.add_argument("--symbol", required=True)
    b.add_argument("--timeframe", default="1m", type=_timeframe,
                   help="1s, 1m, 5m, 15m, 1h, 4h, 1d, or an imported series' own")
    b.add_argument("--start", type=parse_time, help="ISO-8601 or epoch ms, inclusive")
    b.add_argument("--end", type=parse_time, help="ISO-8601 or epoch ms, exclusive")
    b.add_argument("--db", help="SQLite file (config storage.db_path)")
    b.add_argument("--out", help="write to this file instead of stdout")
    b.set_defaults(func=_bars)

    def pair_args(sp: argparse.ArgumentParser) -> None:
        """The options every pair command shares: legs, timeframe, windows, range, DB, output."""
        sp.add_argument("--pair", nargs=2, required=True, metavar=("A", "B"), help="leg A (y) and leg B (x)")
        sp.add_argument("--timeframe", default="1m", type=_timeframe,
                        help="1s, 1m, 5m, 15m, 1h, 4h, 1d, or an imported series' own")
        sp.add_argument("--window", type=int, help="z-score / correlation window in bars (config windows.zscore)")
        sp.add_argument("--lookback", type=int, help="OLS over the last N aligned bars (default: all)")
        sp.add_argument("--start", type=parse_time, help="ISO-8601 or epoch ms, inclusive")
        sp.add_argument("--end", type=parse_time, help="ISO-8601 or epoch ms, exclusive")
        sp.add_argument("--db", help="SQLite file (config storage.db_path)")
        sp.add_argument("--json", action="store_true", help="one JSON object; NaN/inf as null")

    def strategy_args(sp: argparse.ArgumentParser) -> None:
        pair_args(sp)
        sp.add_argument("--beta", choices=["ols", "kalman"], default="ols",
                        help="static OLS beta and rolling z, or Kalman beta_t and Kalman z")
        sp.add_argument("--stop", type=float, help="close when |z| exceeds this")
        sp.add_argument("--fee-bps", type=float, help="fee per leg and trade (config backtest.fee_bps)")
        sp.add_argument("--slippage-bps", type=float, help="slippage per leg and trade")

    an = command("analyze", help="static pair analytics over the stored range",
                        description="OLS hedge, spread tests, last z-score and correlation of a pair "
                                    "(y = first symbol) over stored closed bars.")
    pair_args(an)
    an.add_argument("--adf-maxlag", type=int, help="ADF maxlag (config windows.adf_maxlag)")
    an.set_defaults(func=_analyze)

    bt = command("backtest", help="mean-reversion backtest of a pair over stored bars",
                        description="Trade the pair's spread on its z-score (ANALYTICS.md rules).")
    strategy_args(bt)
    bt.add_argument("--entry", type=float, help="enter when |z| > entry (config backtest.entry)")
    bt.add_argument("--exit", type=float, help="exit when z crosses back to ±exit (config backtest.exit)")
    bt.add_argument("--trades-csv", help="write the trades to this CSV file")
    bt.set_defaults(func=_backtest)

    sw = command("sweep", help="backtest over an entry x exit grid",
                        description="Total P&L, Sharpe, drawdown and trades for every grid cell.")
    strategy_args(sw)
    sw.add_argument("--entry-grid", type=_grid, default=_grid("1:3:0.25"), help="start:stop:step")
    sw.add_argument("--exit-grid", type=_grid, default=_grid("0:1:0.25"), help="start:stop:step")
    sw.set_defaults(func=_sweep)

    be = command("bench", help="measure throughput, push latency, analytics and memory",
                        description="Ingest and loopback throughput beside their ceilings, "
                                    "tick-to-browser latency with 1/5/20 sessions, analytics "
                                    "costs, and (--soak) memory over 30 minutes; each against "
                                    "its target.")
    be.add_argument("--data", help="recording to use (config replay.data)")
    be.add_argument("--quick", action="store_true", help="small inputs, one run (a smoke test)")
    be.add_argument("--json", action="store_true", help="one JSON object")
    be.add_argument("--no-push", action="store_true", help="skip the push-latency sessions")
    be.add_argument("--soak", action="store_true", help="also a 30-minute memory soak at ~2k ticks/s")
    be.add_argument("--soak-minutes", type=float, help="the soak's length (implies --soak)")
    be.set_defaults(func=_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except QuantPanelError as exc:
        print(f"quantpanel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

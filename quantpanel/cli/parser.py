"""The ``quantpanel`` command: serve, exchange, record, import, bars, archive, analyze, backtest, sweep, bench.

The argparse parser of every command (this docstring's first line is its description) and the
argument types that turn a bad flag into argparse's usage error (status 2) before a command runs.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from quantpanel.cli.archive import run_archive
from quantpanel.cli.bench import run_bench
from quantpanel.cli.data import run_bars, run_import
from quantpanel.cli.exchange import add_market_options, run_exchange
from quantpanel.cli.ingest import run_ingest
from quantpanel.cli.pair import run_analyze, run_backtest, run_sweep
from quantpanel.cli.record import run_record
from quantpanel.cli.serve import run_serve
from quantpanel.errors import QuantPanelError
from quantpanel.models import SERIES_TIMEFRAMES, TIMEFRAMES

__all__ = ["build_parser", "parse_time"]


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


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return n


def _timeframe(text: str) -> str:
    """argparse type of ``--timeframe``: any timeframe a stored series can have (built from
    trades or imported); whether the database holds it is checked against the database."""
    if text not in SERIES_TIMEFRAMES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a timeframe; expected one of "
                                         f"{', '.join(SERIES_TIMEFRAMES)}")
    return text


def _grid(text: str) -> list[float]:
    """argparse type of ``--entry-grid`` / ``--exit-grid``."""
    from quantpanel.analytics.backtest import parse_grid

    try:
        return parse_grid(text).tolist()
    except QuantPanelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _timeframe_option(parser: argparse.ArgumentParser) -> None:
    """``--timeframe`` of ``bars`` and the pair commands; its help lists the builder's timeframes."""
    parser.add_argument("--timeframe", default="1m", type=_timeframe,
                        help=f"{', '.join(TIMEFRAMES)}, or an imported series' own")


def _range_options(parser: argparse.ArgumentParser) -> None:
    """``--start`` / ``--end``: the half-open range of bar times a command reads."""
    parser.add_argument("--start", type=parse_time, help="ISO-8601 or epoch ms, inclusive")
    parser.add_argument("--end", type=parse_time, help="ISO-8601 or epoch ms, exclusive")


def build_parser() -> argparse.ArgumentParser:
    """Every command, its flags and its ``func`` (the ``run_*`` that ``main`` calls)."""
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
    s.add_argument("--broker", help="redis://HOST:PORT/DB: serve what `quantpanel ingest --broker` publishes, "
                                    "with no feed of its own (config broker.url)")
    s.add_argument("--workers", type=_positive_int, help="N dashboard processes sharing the port, one ingest "
                                                         "process and a private redis-server, in one command")
    s.set_defaults(func=run_serve)

    g = command("ingest", help="headless ingest publishing to a broker",
                description="Feed, store, bars, pair analytics and alerts, published to Redis Streams for "
                            "`quantpanel serve --broker` processes.")
    g.add_argument("--broker", help="redis://HOST:PORT/DB (config broker.url)")
    g.add_argument("--source", choices=["auto", "live", "replay"], help="where ticks come from")
    g.add_argument("--ws-url", help="Binance-compatible combined-stream URL (config feed.ws_url)")
    g.add_argument("--speed", type=float, help="replay speed factor, 0 = as fast as possible")
    g.add_argument("--db-dir", help="directory for both databases (overrides storage.*_path)")
    g.set_defaults(func=run_ingest)

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
    e.add_argument("--sent-log", help="append 'SYMBOL agg_id' of every trade sent to this file, and "
                                      "'=KIND FRAME' of every quote, mark and liquidation frame")
    e.add_argument("--exit-when-done", action="store_true", help="exit once the recording is played")
    e.add_argument("--linger", type=float, default=1.0, help="seconds to wait before exiting when done")
    add_market_options(e)
    e.set_defaults(func=run_exchange)

    r = command("record", help="headless ingest into the DB",
                       description="Ingest aggTrades into the DB for --duration s or until Ctrl-C.")
    r.add_argument("--symbols", help="comma-separated symbols (config symbols)")
    r.add_argument("--db", help="SQLite file (config storage.db_path)")
    r.add_argument("--ws-url", help="Binance-compatible combined-stream URL of the market route (config feed.ws_url)")
    r.add_argument("--public-ws-url",
                   help="combined-stream URL of the public route, for bookTicker (config feed.public_ws_url)")
    r.add_argument("--streams", help="comma-separated stream kinds (config feed.streams), e.g. aggTrade,bookTicker")
    r.add_argument("--spot-symbols",
                   help='spot twins to follow, comma-separated; "" for none (config feed.spot_symbols)')
    r.add_argument("--spot-ws-url", help="Binance spot combined-stream URL (config feed.spot_ws_url)")
    r.add_argument("--rest-url", help="Binance-compatible REST base URL for gap backfill (config feed.rest_url)")
    r.add_argument("--duration", type=float, help="seconds to record (default: until Ctrl-C)")
    r.set_defaults(func=run_record)

    i = command("import", help="import aggTrades CSVs, WebSocket captures or OHLC CSVs",
                       description="Import data.binance.vision aggTrades CSV/zip files, NDJSON ticks or "
                                   "JSON-lines WebSocket captures (each file with its bars, all or nothing; "
                                   "files imported before are skipped), or OHLC CSVs "
                                   "(a time column and open/high/low/close; timeframe from the data).")
    i.add_argument("files", nargs="+", help="files to import")
    i.add_argument("--db", help="SQLite file (config storage.db_path)")
    i.add_argument("--symbol", help="symbol of a CSV whose name does not say it")
    i.add_argument("--timeframe", help="OHLC CSV: the expected bar interval (checked against the data)")
    i.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar on stderr (rows/s, ETA); default: when stderr is a terminal")
    i.set_defaults(func=run_import)

    b = command("bars", help="print or write bars as CSV",
                       description="Bars of one symbol as CSV (time in ISO-8601 UTC).")
    b.add_argument("--symbol", required=True)
    _timeframe_option(b)
    _range_options(b)
    b.add_argument("--db", help="SQLite file (config storage.db_path)")
    b.add_argument("--out", help="write to this file instead of stdout")
    b.set_defaults(func=run_bars)

    ar = command("archive", help="move old ticks to Parquet day files",
                 description="Move the ticks of whole UTC days older than N days into Parquet files, one "
                             "per symbol and day; bars, analyze and the dashboard read them back as if stored.")
    ar.add_argument("--db", help="SQLite file (config storage.db_path)")
    ar.add_argument("--older-than-days", type=_positive_int, metavar="N",
                    help="archive days that ended N days ago or earlier (config storage.archive_after_days)")
    ar.add_argument("--archive-dir", help="where the Parquet files go (config storage.archive_dir)")
    ar.set_defaults(func=run_archive)

    def pair_args(sp: argparse.ArgumentParser) -> None:
        """The options every pair command shares: legs, timeframe, windows, range, DB, output."""
        sp.add_argument("--pair", nargs=2, required=True, metavar=("A", "B"), help="leg A (y) and leg B (x)")
        _timeframe_option(sp)
        sp.add_argument("--window", type=int, help="z-score / correlation window in bars (config windows.zscore)")
        sp.add_argument("--lookback", type=int,
                        help="OLS over the last N aligned bars (config windows.lookback; 0 = all)")
        _range_options(sp)
        sp.add_argument("--db", help="SQLite file (config storage.db_path)")
        sp.add_argument("--json", action="store_true", help="one JSON object; NaN/inf as null")

    def strategy_args(sp: argparse.ArgumentParser) -> None:
        pair_args(sp)
        sp.add_argument("--beta", choices=["ols", "kalman"], default="ols",
                        help="static OLS beta and rolling z, or Kalman beta_t and Kalman z")
        sp.add_argument("--stop", type=float, help="close when |z| exceeds this")
        sp.add_argument("--fee-bps", type=float, help="fee per leg and trade (config backtest.fee_bps)")
        sp.add_argument("--slippage-bps", type=float, help="slippage per leg and trade")
        sp.add_argument("--slippage-model", choices=["fixed", "half_spread"],
                        help="fixed: --slippage-bps; half_spread: half the stored quoted spread of each "
                             "fill's bar (config backtest.slippage_model)")
        sp.add_argument("--funding", choices=["auto", "off"],
                        help="auto: charge funding when both legs have stored funding events "
                             "(config backtest.funding)")

    an = command("analyze", help="static pair analytics over the stored range",
                        description="OLS hedge, spread tests, last z-score and correlation of a pair "
                                    "(y = first symbol) over stored closed bars.")
    pair_args(an)
    an.add_argument("--adf-maxlag", type=int, help="ADF maxlag (config windows.adf_maxlag)")
    an.set_defaults(func=run_analyze)

    bt = command("backtest", help="mean-reversion backtest of a pair over stored bars",
                        description="Trade the pair's spread on its z-score (ANALYTICS.md rules).")
    strategy_args(bt)
    bt.add_argument("--entry", type=float, help="enter when |z| > entry (config backtest.entry)")
    bt.add_argument("--exit", type=float, help="exit when z crosses back to ±exit (config backtest.exit)")
    bt.add_argument("--trades-csv", help="write the trades to this CSV file")
    bt.set_defaults(func=run_backtest)

    sw = command("sweep", help="backtest over an entry x exit grid",
                        description="Total P&L, Sharpe, drawdown and trades for every grid cell.")
    strategy_args(sw)
    sw.add_argument("--entry-grid", type=_grid, default=_grid("1:3:0.25"), help="start:stop:step")
    sw.add_argument("--exit-grid", type=_grid, default=_grid("0:1:0.25"), help="start:stop:step")
    sw.set_defaults(func=run_sweep)

    be = command("bench", help="measure throughput, push latency, analytics and memory",
                        description="Ingest and loopback throughput beside their ceilings, "
                                    "tick-to-browser latency with 1/5/20 sessions, analytics "
                                    "costs, and (--soak) memory over 30 minutes; each against "
                                    "its target.")
    be.add_argument("--data", help="recording to use (config replay.data)")
    be.add_argument("--quick", action="store_true", help="small inputs, one run (a smoke test)")
    be.add_argument("--json", action="store_true", help="one JSON object")
    be.add_argument("--no-push", action="store_true", help="skip the push-latency sessions")
    be.add_argument("--no-broker", action="store_true",
                    help="skip the broker section (ingest + serve over Redis vs in-process; --workers 2)")
    be.add_argument("--soak", action="store_true", help="also a 30-minute memory soak at ~2k ticks/s")
    be.add_argument("--soak-minutes", type=float, help="the soak's length (implies --soak)")
    be.set_defaults(func=run_bench)
    return p

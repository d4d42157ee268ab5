"""Throughput of the ingest path, each figure beside its ceiling.

Measured on the bundled real trades: their two symbols copied under five names each (10 symbols,
5 pairs of a BTC and an ETH copy), repeated with shifted times and ids (as the exchange's loop
does) to get volume. Each figure is the median of several runs; ratios to a ceiling measured in
the same run stay meaningful on a noisy machine. Nothing here asserts a threshold: the numbers
are for people (README, issue notes), CI only smoke-tests that the command runs.
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import orjson
from websockets.asyncio.client import connect

from quantpanel.bench.procs import spawn
from quantpanel.feeds.binance_futures import (
    RecordedTrade,
    is_agg_trade_frame,
    parse_frame,
    parse_trade_frames,
    render_agg_trade,
)
from quantpanel.feeds.binance_market import RecordedQuote, render_book_ticker
from quantpanel.feeds.connection import FeedConnection
from quantpanel.feeds.recording import Recording, load_recording
from quantpanel.models import MarketBatch, Quote, Tick, TickBatch
from quantpanel.pipeline.bars import build_bars, initial_state
from quantpanel.pipeline.graph import Pipeline
from quantpanel.pipeline.interpreter import tune_interpreter
from quantpanel.pipeline.pairs import PairSpec
from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

__all__ = ["run_bench", "repeat_recording", "widen_recording", "bench_pairs"]

_BATCH = 500
_TFS = ("1s", "1m", "5m")


def repeat_recording(rec: Recording, passes: int) -> Recording:
    """The recording played ``passes`` times back to back, times and ids shifted per pass
    (quotes too: times, and update ids by their span)."""
    span, ids = rec.span_ms(), rec.id_spans()
    du = max((q.update_id for q in rec.quotes), default=0) - min((q.update_id for q in rec.quotes), default=0) + 1
    out: list[RecordedTrade] = []
    quotes: list[RecordedQuote] = []
    for k in range(passes):
        for t in rec.trades:
            lo, hi = ids[t.symbol]
            da = k * (hi - lo + 1)
            out.append(replace(t, time=t.time + k * span, event_time=t.event_time + k * span,
                               agg_id=t.agg_id + da, first_id=t.first_id + da, last_id=t.last_id + da))
        quotes.extend(replace(q, time=q.time + k * span, event_time=q.event_time + k * span,
                              update_id=q.update_id + k * du) for q in rec.quotes)
    return Recording(tuple(out), f"{rec.source} x{passes}", quotes=tuple(quotes))


def widen_recording(rec: Recording, copies: int) -> Recording:
    """The recording's symbols under ``copies`` names each (BTCUSDT, BTC1USDT, ...): same
    trades, more symbols, as the pipeline would see them from a wider subscription."""
    def name(sym: str, c: int) -> str:
        return sym if c == 0 else f"{sym[:-4]}{c}{sym[-4:]}"
    out = [replace(t, symbol=name(t.symbol, c)) for t in rec.trades for c in range(copies)]
    quotes = [replace(q, symbol=name(q.symbol, c)) for q in rec.quotes for c in range(copies)]
    return Recording(tuple(out), f"{rec.source} x{copies} symbols", quotes=tuple(quotes))


def bench_pairs(rec: Recording) -> list[PairSpec]:
    """One live pair per BTC copy and the ETH copy of the same number, on 1s bars."""
    syms = rec.symbols
    return [PairSpec(a, a.replace("BTC", "ETH"), "1s", window=60)
            for a in syms if a.startswith("BTC") and a.replace("BTC", "ETH") in syms]


def _median_rate(n: int, fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def _loads_all(frames: list[str]) -> None:
    """The ceiling: decode every frame and drop it (keeping them would time the GC instead)."""
    loads = orjson.loads
    for f in frames:
        loads(f)


def _parse_all(frames: list[str]) -> list[Tick]:
    ticks = []
    for f in frames:
        r = parse_frame(f)
        if r.__class__ is tuple:  # an aggTrade (quotes and marks are NamedTuples)
            ticks.append(cast("tuple[Tick, int]", r)[0])
    return ticks


async def _ingest_once(frames: list[str], db: Path, pairs: list[PairSpec]) -> int:
    """parse -> micro-batches -> Pipeline (bars, live pair analytics, quote bars) -> StoreWriter;
    returns ticks stored. Frames are parsed as the feed connection parses them: aggTrade frames a
    micro-batch at a time (``parse_trade_frames``), others one by one."""
    writer = StoreWriter(db)
    pipeline = Pipeline(initial_state(_TFS), writer)
    for spec in pairs:
        pipeline.pairs.watch(spec)
    raws: list[str] = []
    quotes: list[Quote] = []

    def emit_trades() -> None:
        parsed = parse_trade_frames(raws)
        assert parsed is not None, "the bench's frames are real aggTrade frames"
        pipeline.emit(TickBatch(tuple(parsed[0]), 0, 0))
        raws.clear()

    for f in frames:
        if is_agg_trade_frame(f):
            raws.append(f)
            if len(raws) >= _BATCH:
                emit_trades()
            continue
        r = parse_frame(f)
        if isinstance(r, Quote):  # the all-streams run: quote bars per micro-batch
            quotes.append(r)
            if len(quotes) >= _BATCH:
                pipeline.emit(MarketBatch(tuple(quotes)))
                quotes = []
    if raws:
        emit_trades()
    if quotes:
        pipeline.emit(MarketBatch(tuple(quotes)))
    pipeline.market.flush()
    await asyncio.to_thread(writer.flush)
    writer.close()
    return writer.stats.ticks_written


@contextmanager
def _exchange(capture: Path) -> Iterator[str]:
    """`quantpanel exchange` at full speed in its own process (as in a deployment, the exchange
    does not share the client's core); yields its stream URL. Its timeline starts when the
    first client connects."""
    ex = spawn("-m", "quantpanel", "exchange", "--data", str(capture), "--speed", "0")
    try:
        yield ex.wait_line(r"exchange listening on (\S+)", 120).group(1)
    finally:
        ex.stop()


async def _loopback_once(url: str, symbols: tuple[str, ...], n: int, db: Path,
                         pairs: list[PairSpec]) -> tuple[float, int]:
    """Exchange process -> FeedConnection -> Pipeline (bars, pairs) + store: (seconds, received)."""
    writer = StoreWriter(db)
    pipeline = Pipeline(initial_state(_TFS), writer)
    for spec in pairs:
        pipeline.pairs.watch(spec)
    feed = FeedConnection(url, symbols, pipeline.emit, batch_max_ticks=_BATCH)
    t0 = time.perf_counter()
    task = asyncio.get_running_loop().create_task(feed.run())
    deadline = t0 + 300
    while feed.stats.ticks < n and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - t0
    await feed.stop()
    await task
    await asyncio.to_thread(writer.flush)
    writer.close()
    return elapsed, feed.stats.ticks


async def _bare_receive_once(url: str, symbols: tuple[str, ...], n: int) -> float:
    """The ceiling: a bare websockets client counting frames from an exchange process."""
    url = f"{url}?streams=" + "/".join(f"{s.lower()}@aggTrade" for s in symbols)
    got = 0
    t0 = time.perf_counter()
    async with connect(url, max_size=2**20, compression=None) as ws:
        async for _ in ws:
            got += 1
            if got == n:
                break
    return time.perf_counter() - t0


def _with_quotes(frames: list[str], rec: Recording) -> list[str]:
    """The trade frames with the recording's bookTicker frames merged in by time, as one
    connection per route would deliver them to one process."""
    timed = [(t.time, f) for t, f in zip(rec.trades, frames, strict=True)]
    timed += [(q.time, render_book_ticker(q, 0, 0)) for q in rec.quotes]
    timed.sort(key=lambda tf: tf[0])
    return [f for _, f in timed]


def _ingest_all_streams(frames: list[str], rec: Recording, pairs: list[PairSpec], runs: int, tmp: str,
                        trades_only_per_s: float) -> dict[str, Any]:
    """Ingest with trades and every quote (real bookTicker frames) through one pipeline."""
    merged = _with_quotes(frames, rec)
    n_ticks, n_quotes = len(frames), len(rec.quotes)
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        asyncio.run(_ingest_once(merged, Path(tmp) / f"q{i}.db", pairs))
        times.append(time.perf_counter() - t0)
    with Store(Path(tmp) / "q0.db") as s:
        quote_bars = s.market_counts().get("quote_bars", 0)
    t = statistics.median(times)
    return {"frames": len(merged), "ticks": n_ticks, "quotes": n_quotes,
            "events_per_s": len(merged) / t, "ticks_per_s": n_ticks / t, "quotes_per_s": n_quotes / t,
            "quote_bars_stored": quote_bars, "ticks_vs_trades_only": n_ticks / t / trades_only_per_s}


def run_bench(data: Path, *, passes: int = 2, runs: int = 3, copies: int = 5,
              head: int | None = None, quotes: Path | None = None) -> dict[str, Any]:
    """Ingest and loopback figures over the recording (its first ``head`` trades), widened to
    ``copies`` names per symbol and repeated ``passes`` times; with ``quotes`` (a bookTicker
    capture of the same minutes) ingest with every stream on too."""
    real = load_recording(data, quotes=quotes)
    if head:
        end = real.trades[head - 1].time
        real = Recording(real.trades[:head], real.source,
                         quotes=tuple(q for q in real.quotes if q.time <= end))
    rec = repeat_recording(widen_recording(real, copies), passes)
    pairs = bench_pairs(rec)
    frames = [render_agg_trade(t, 0, 0) for t in rec.trades]
    n = len(frames)
    ticks = _parse_all(frames)
    tune_interpreter()  # as an ingesting process runs (its inputs frozen like a startup heap)
    res: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_start": os.getloadavg()},
        "frames": n, "runs": runs, "data": str(data), "passes": passes,
        "symbols": len(rec.symbols), "pairs": len(pairs),
    }
    res["orjson_loads_per_s"] = _median_rate(n, lambda: _loads_all(frames), runs)
    res["parse_frame_per_s"] = _median_rate(n, lambda: _parse_all(frames), runs)
    res["bars_only_ticks_per_s"] = _median_rate(n, lambda: build_bars(ticks, _TFS), runs)

    with tempfile.TemporaryDirectory(prefix="qp-bench-") as tmp:
        def store_only() -> None:
            db = Path(tmp) / f"s{time.monotonic_ns()}.db"
            with Store(db) as s:
                for i in range(0, n, _BATCH):
                    s.insert_ticks(ticks[i:i + _BATCH])
        res["store_only_ticks_per_s"] = _median_rate(n, store_only, runs)

        ingest_times, stored = [], 0
        for i in range(runs):
            db = Path(tmp) / f"i{i}.db"
            t0 = time.perf_counter()
            stored = asyncio.run(_ingest_once(frames, db, pairs))
            ingest_times.append(time.perf_counter() - t0)
            with Store(db) as s:
                assert s.tick_count() == n, f"ingest stored {s.tick_count()} of {n} ticks"
        res["ingest_ticks_per_s"] = n / statistics.median(ingest_times)
        res["ingest_stored_all"] = stored == n
        if rec.quotes:
            res["ingest_all_streams"] = _ingest_all_streams(frames, rec, pairs, runs, tmp,
                                                            res["ingest_ticks_per_s"])

        capture = Path(tmp) / "frames.jsonl"
        capture.write_text("\n".join(frames) + "\n")
        loop_times, losses, bare = [], [], []
        for i in range(max(1, runs - 1)):  # each run starts two exchange processes
            with _exchange(capture) as url:
                elapsed, got = asyncio.run(_loopback_once(url, rec.symbols, n, Path(tmp) / f"l{i}.db", pairs))
            loop_times.append(elapsed)
            losses.append(n - got)
            with _exchange(capture) as url:
                bare.append(asyncio.run(_bare_receive_once(url, rec.symbols, n)))
        res["loopback_msgs_per_s"] = n / statistics.median(loop_times)
        res["loopback_lost"] = max(losses)
        res["bare_ws_msgs_per_s"] = n / statistics.median(bare)

    res["ingest_vs_orjson"] = res["ingest_ticks_per_s"] / res["orjson_loads_per_s"]
    res["ingest_vs_store_only"] = res["ingest_ticks_per_s"] / res["store_only_ticks_per_s"]
    res["loopback_vs_bare_ws"] = res["loopback_msgs_per_s"] / res["bare_ws_msgs_per_s"]
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["machine"]["loadavg_end"] = os.getloadavg()
    return res


def format_table(r: dict[str, Any]) -> str:
    rows = [
        ("orjson.loads (ceiling)", r["orjson_loads_per_s"], "frames/s", ""),
        ("parse_frame", r["parse_frame_per_s"], "frames/s", ""),
        ("bars only (3 timeframes)", r["bars_only_ticks_per_s"], "ticks/s", ""),
        ("store only (SQLite, 500/tx)", r["store_only_ticks_per_s"], "ticks/s", ""),
        ("ingest: parse -> store -> bars", r["ingest_ticks_per_s"], "ticks/s",
         f"{r['ingest_vs_orjson']:.0%} of orjson, {r['ingest_vs_store_only']:.0%} of store only"),
        *([("ingest, every stream: ticks", r["ingest_all_streams"]["ticks_per_s"], "ticks/s",
            f"{r['ingest_all_streams']['ticks_vs_trades_only']:.0%} of trades only"),
           ("ingest, every stream: + quotes", r["ingest_all_streams"]["quotes_per_s"], "quotes/s",
            f"{r['ingest_all_streams']['events_per_s']:,.0f} events/s")] if "ingest_all_streams" in r else []),
        ("bare websockets receive (ceiling)", r["bare_ws_msgs_per_s"], "msgs/s", ""),
        ("loopback: exchange -> pipeline", r["loopback_msgs_per_s"], "msgs/s",
         f"{r['loopback_vs_bare_ws']:.0%} of bare, lost {r['loopback_lost']}"),
    ]
    lines = [(f"{r['frames']:,} real aggTrade frames ({r['passes']} passes), median of {r['runs']} runs, "
              f"{r['machine']['cores']} cores, Python {r['machine']['python']}, "
              f"load {r['machine']['loadavg_start'][0]:.2f}")]
    lines += [f"  {name:<36} {val:>12,.0f} {unit:<9} {note}" for name, val, unit, note in rows]
    lines.append(f"  {'peak RSS':<36} {r['peak_rss_mib']:>12,.0f} MiB")
    return "\n".join(lines)

#!/usr/bin/env python
"""Throughput of quantpanel's ingest path on real Binance trades, each figure beside its ceiling.

    .venv/bin/python scripts/bench.py [--json] [--quick] [--passes N] [--runs N]

Input: the bundled 35,389 real BTCUSDT+ETHUSDT aggTrades, played ``--passes`` times back to back
with times shifted by the recording's span and ids by each symbol's id span per pass (what the
exchange's loop does), so no (symbol, agg_id) repeats. Frames are the exact text Binance sends
(``render_agg_trade``).

Figures (each the median of ``--runs`` runs, time.perf_counter):

* parse ceiling: bare ``orjson.loads`` per frame, and ``parse_frame``; results are dropped, as
  the ingest path drops the dicts.
* bars only (``build_bars`` in 500-tick batches), pipeline only (the streamz graph, no store),
  store only (``Store.insert_ticks``, 500 ticks a transaction): the stages on their own.
* ingest: parse -> 500-tick ``TickBatch`` -> real ``Pipeline`` -> real ``StoreWriter`` thread
  on a fresh SQLite file, from the first frame until ``writer.flush()`` returns (all on disk);
  the stored count must equal the ticks emitted.
* loopback: the local ``Exchange`` (speed 0) on 127.0.0.1 -> ``FeedConnection`` -> Pipeline with
  store, from connect to the last tick handed to the pipeline, beside a bare ``websockets``
  receive loop against the same exchange; nothing may be lost. Done twice: exchange in this
  process (as ``source: replay`` runs it, sharing one GIL with the client), and exchange in a
  forked child process (the client's own capacity, as against a remote exchange).
* peak RSS of this process (``resource.getrusage``).

The fixtures (recording, frames, ticks) are built first and ``gc.freeze()``-d so the collector
does not rescan them during every measurement. Nothing asserts a timing; the exit status is 1
if a correctness check (stored count, zero loss) failed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import multiprocessing as mp
import os
import platform
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson
import websockets
from websockets.asyncio.client import connect

from quantpanel.config import load_config
from quantpanel.feeds.binance_futures import agg_trade_stream, parse_frame
from quantpanel.feeds.connection import FeedConnection
from quantpanel.feeds.exchange import Exchange, render_agg_trade
from quantpanel.feeds.recording import RecordedTrade, Recording, load_recording
from quantpanel.models import Tick, TickBatch
from quantpanel.pipeline.bars import build_bars, initial_state
from quantpanel.pipeline.graph import Pipeline
from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

DATA = ROOT / "data" / "replay" / "binance-usdm-btcusdt-ethusdt-2024-08-08.trades.gz"
CFG = load_config(ROOT / "config.yaml")
TFS = tuple(CFG.timeframes)
BATCH = CFG.feed.batch_max_ticks  # 500: the feed's micro-batch size
BATCH_INTERVAL_MS = CFG.feed.batch_interval_ms
_loadavgs: list[tuple[str, float]] = []
_marks: list[tuple[str, float]] = []


def _load(label: str) -> None:
    """Note the 1-min load average and the time at the end of a section."""
    _loadavgs.append((label, os.getloadavg()[0]))
    _marks.append((label, time.perf_counter()))


# -- fixtures -----------------------------------------------------------------------------------
def shifted_frames(rec: Recording, passes: int) -> list[str]:
    """The recording's frames ``passes`` times, times/ids shifted per pass like the exchange loop."""
    span, ids = rec.span_ms(), rec.id_spans()
    frames: list[str] = []
    for k in range(passes):
        da = {s: k * (hi - lo + 1) for s, (lo, hi) in ids.items()}
        frames.extend(render_agg_trade(t, k * span, da[t.symbol]) for t in rec.trades)
    return frames


def repeated_recording(rec: Recording, passes: int) -> Recording:
    """The same passes as one Recording, for an ``Exchange(loop=False)`` to serve."""
    span, ids = rec.span_ms(), rec.id_spans()
    out: list[RecordedTrade] = []
    for k in range(passes):
        dt = k * span
        da = {s: k * (hi - lo + 1) for s, (lo, hi) in ids.items()}
        for t in rec.trades:
            d = da[t.symbol]
            out.append(RecordedTrade(t.symbol, t.time + dt, t.agg_id + d, t.first_id + d,
                                     t.last_id + d, t.price, t.qty, t.buyer_maker, t.event_time + dt))
    return Recording(tuple(out), f"{rec.source} x{passes}")


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- measurement helpers ------------------------------------------------------------------------
def _median_seconds(fn: Callable[[], Any], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _rate(n: int, times: list[float]) -> float:
    return n / statistics.median(times)


# -- 1. parse -----------------------------------------------------------------------------------
def _orjson_all(frames: list[str]) -> None:
    loads = orjson.loads
    for f in frames:
        loads(f)


def _parse_all(frames: list[str]) -> None:
    for f in frames:
        parse_frame(f)


def _ticks_of(frames: list[str]) -> list[Tick]:
    ticks = []
    for f in frames:
        r = parse_frame(f)
        if isinstance(r, str):
            raise TypeError(f"not an aggTrade frame: {f[:80]}")
        ticks.append(r[0])
    return ticks


# -- 2. ingest and its stages -------------------------------------------------------------------
def _count_ticks(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT COUNT(*) FROM ticks").fetchone()[0])


async def _ingest_once(frames: list[str], db: Path) -> dict[str, Any]:
    """parse -> TickBatch(500) -> Pipeline (bars) + StoreWriter; timed until all is on disk."""
    writer = StoreWriter(db)
    pipeline = Pipeline(initial_state(TFS), writer)
    emitted = 0
    t0 = time.perf_counter()
    batch: list[Tick] = []
    max_event = 0
    for f in frames:
        r = parse_frame(f)
        if isinstance(r, str):
            continue
        tick, event_ms = r
        batch.append(tick)
        max_event = max(max_event, event_ms)
        if len(batch) >= BATCH:
            pipeline.emit(TickBatch(tuple(batch), int(time.time() * 1000), max_event))
            emitted += len(batch)
            batch = []
    if batch:
        pipeline.emit(TickBatch(tuple(batch), int(time.time() * 1000), max_event))
        emitted += len(batch)
    t_emitted = time.perf_counter()
    written_at_emit_end = writer.stats.ticks_written  # how far the writer thread kept up
    await asyncio.to_thread(writer.flush)
    t1 = time.perf_counter()
    writer.close()
    return {"seconds": t1 - t0, "emit_seconds": t_emitted - t0, "emitted": emitted,
            "stored": _count_ticks(db), "store_errors": writer.stats.errors,
            "bars_written": writer.stats.bars_written, "written_at_emit_end": written_at_emit_end,
            "duplicates": pipeline.bar_state.duplicates, "late": pipeline.bar_state.late}


async def _pipeline_only_once(batches: list[TickBatch]) -> float:
    pipeline = Pipeline(initial_state(TFS))
    t0 = time.perf_counter()
    for b in batches:
        pipeline.emit(b)
    return time.perf_counter() - t0


def _store_only_once(ticks: list[Tick], db: Path) -> tuple[float, int]:
    with Store(db) as s:
        t0 = time.perf_counter()
        for i in range(0, len(ticks), BATCH):
            s.insert_ticks(ticks[i:i + BATCH])
        elapsed = time.perf_counter() - t0
        return elapsed, s.tick_count()


# -- 3. loopback --------------------------------------------------------------------------------
def _timeout_for(n: int) -> float:
    return 30.0 + n / 2_000  # generous: a hang becomes a reported loss, not a stuck benchmark


async def _feed_into_pipeline(url: str, symbols: tuple[str, ...], expected: int,
                              db: Path) -> dict[str, Any]:
    """FeedConnection -> Pipeline(+StoreWriter) until ``expected`` ticks reached the pipeline."""
    writer = StoreWriter(db)
    pipeline = Pipeline(initial_state(TFS), writer)
    got = 0
    t_last = 0.0
    done = asyncio.Event()

    def on_batch(b: TickBatch) -> None:
        nonlocal got, t_last
        pipeline.emit(b)
        got += len(b.ticks)
        if got >= expected:
            t_last = time.perf_counter()
            done.set()

    feed = FeedConnection(url, symbols, on_batch, batch_max_ticks=BATCH,
                          batch_interval_ms=BATCH_INTERVAL_MS)
    t0 = time.perf_counter()
    task = asyncio.get_running_loop().create_task(feed.run())
    try:
        await asyncio.wait_for(done.wait(), _timeout_for(expected))
    except TimeoutError:
        t_last = time.perf_counter()
    await feed.stop()
    await task
    await asyncio.to_thread(writer.flush)
    writer.close()
    st = feed.stats
    return {"seconds": t_last - t0, "received": st.ticks, "malformed": st.malformed,
            "connects": st.connects, "stored": _count_ticks(db), "store_errors": writer.stats.errors}


async def _bare_receive(url: str, expected: int) -> dict[str, Any]:
    n = 0
    t0 = time.perf_counter()
    async with connect(url, max_size=2**20) as ws:
        ext = [e.name for e in ws.protocol.extensions]

        async def count() -> None:
            nonlocal n
            async for _ in ws:
                n += 1
                if n >= expected:
                    return

        try:
            await asyncio.wait_for(count(), _timeout_for(expected))
        except TimeoutError:
            pass
        elapsed = time.perf_counter() - t0
    return {"seconds": elapsed, "received": n, "extensions": ext}


def _stream_url(base: str, symbols: tuple[str, ...]) -> str:
    return f"{base}?streams=" + "/".join(agg_trade_stream(s) for s in symbols)


async def _loopback_inproc(rec: Recording, db: Path | None) -> dict[str, Any]:
    """Exchange in this process; ``db`` None = the bare websockets client instead of the feed."""
    async with Exchange(rec, speed=0) as ex:
        n = len(rec.trades)
        if db is None:
            r = await _bare_receive(_stream_url(ex.url, rec.symbols), n)
        else:
            r = await _feed_into_pipeline(ex.url, rec.symbols, n, db)
        try:
            await asyncio.wait_for(ex.done.wait(), 5)
        except TimeoutError:
            pass
        r["sent"] = ex.stats.frames_sent
    return r


def _exchange_child(rec: Recording, conn: Any) -> None:
    """Child process: serve ``rec`` once at full speed, report the port, then frames sent."""
    async def main() -> None:
        async with Exchange(rec, speed=0) as ex:
            conn.send(ex.port)
            await ex.done.wait()
            await asyncio.to_thread(conn.recv)  # the parent says when it has everything
            conn.send(ex.stats.frames_sent)

    asyncio.run(main())


def _loopback_xproc(rec: Recording, db: Path | None) -> dict[str, Any]:
    """Exchange in a forked child (its own core and GIL); the client here. Call outside a loop."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_exchange_child, args=(rec, child), daemon=True)
    proc.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("exchange child did not report its port")
        port = parent.recv()
        base = f"ws://127.0.0.1:{port}/stream"
        n = len(rec.trades)
        if db is None:
            r = asyncio.run(_bare_receive(_stream_url(base, rec.symbols), n))
        else:
            r = asyncio.run(_feed_into_pipeline(base, rec.symbols, n, db))
        parent.send("done")
        r["sent"] = parent.recv() if parent.poll(30) else -1
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join()
    return r


# -- the run ------------------------------------------------------------------------------------
def run(passes: int, runs: int, progress: Callable[[str], None]) -> dict[str, Any]:
    t_start = time.perf_counter()
    _load("start")
    base = load_recording(DATA)
    rec = repeated_recording(base, passes)
    frames = shifted_frames(base, passes)
    n = len(frames)
    checks: dict[str, bool] = {}
    checks["frames_match_exchange_render"] = frames == [render_agg_trade(t, 0, 0) for t in rec.trades]
    checks["ids_unique"] = len({(t.symbol, t.agg_id) for t in rec.trades}) == n
    ticks = _ticks_of(frames)
    batches = [TickBatch(tuple(ticks[i:i + BATCH]), 0, 0) for i in range(0, n, BATCH)]
    gc.collect()
    gc.freeze()
    rss_fixtures = _rss_mib()
    _load("fixtures")
    res: dict[str, Any] = {
        "frames": n, "passes": passes, "runs": runs, "recording_trades": len(base.trades),
        "symbols": list(base.symbols), "timeframes": list(TFS), "batch_ticks": BATCH,
        "data": str(DATA.relative_to(ROOT)),
    }
    samples: dict[str, list[float]] = {}

    progress("parse")
    samples["orjson_loads"] = _median_seconds(lambda: _orjson_all(frames), runs)
    samples["parse_frame"] = _median_seconds(lambda: _parse_all(frames), runs)
    _load("parse")

    progress("stages")
    bars_out: list[Any] = []
    samples["bars_only"] = _median_seconds(
        lambda: bars_out.append(len(build_bars(ticks, TFS, chunk=BATCH)[0])), runs)
    samples["pipeline_only"] = [asyncio.run(_pipeline_only_once(batches)) for _ in range(runs)]
    checks["bars_built"] = min(bars_out) > 0
    with tempfile.TemporaryDirectory(prefix="qp-bench-") as tmp:
        store_runs = [_store_only_once(ticks, Path(tmp) / f"store{i}.db") for i in range(runs)]
        samples["store_only"] = [s for s, _ in store_runs]
        checks["store_only_count"] = all(c == n for _, c in store_runs)
        _load("stages")

        progress("ingest")
        ingest = [asyncio.run(_ingest_once(frames, Path(tmp) / f"ingest{i}.db")) for i in range(runs)]
        samples["ingest"] = [r["seconds"] for r in ingest]
        samples["ingest_emit"] = [r["emit_seconds"] for r in ingest]
        res["ingest_emitted"] = min(r["emitted"] for r in ingest)
        res["ingest_stored"] = min(r["stored"] for r in ingest)
        res["ingest_bars_written"] = min(r["bars_written"] for r in ingest)
        res["ingest_written_at_emit_end"] = statistics.median(r["written_at_emit_end"] / n
                                                              for r in ingest)
        checks["ingest_stored_all"] = all(r["stored"] == r["emitted"] == n and r["store_errors"] == 0
                                          and r["duplicates"] == 0 and r["late"] == 0 for r in ingest)
        checks["ingest_bars_stored"] = res["ingest_bars_written"] > 0
        _load("ingest")

        progress("loopback (exchange in this process)")
        bare = [asyncio.run(_loopback_inproc(rec, None)) for _ in range(runs)]
        feed = [asyncio.run(_loopback_inproc(rec, Path(tmp) / f"loop{i}.db")) for i in range(runs)]
        _load("loopback")
        progress("loopback (exchange in a child process)")
        bare_x = [_loopback_xproc(rec, None) for _ in range(runs)]
        feed_x = [_loopback_xproc(rec, Path(tmp) / f"loopx{i}.db") for i in range(runs)]
        _load("loopback_xproc")

    for key, bare_runs, feed_runs in (("loopback", bare, feed), ("loopback_xproc", bare_x, feed_x)):
        samples[f"{key}_bare_ws"] = [r["seconds"] for r in bare_runs]
        samples[key] = [r["seconds"] for r in feed_runs]
        lost = max([n - r["received"] for r in bare_runs + feed_runs]
                   + [r["sent"] - r["received"] for r in bare_runs + feed_runs])
        res[f"{key}_lost"] = lost
        res[f"{key}_stored"] = min(r["stored"] for r in feed_runs)
        checks[f"{key}_zero_loss"] = lost == 0 and all(r["sent"] == n for r in bare_runs + feed_runs)
        checks[f"{key}_stored_all"] = all(r["stored"] == n and r["store_errors"] == 0
                                          and r["malformed"] == 0 for r in feed_runs)
    res["ws_extensions"] = bare[0]["extensions"]

    rate = {k: _rate(n, v) for k, v in samples.items()}
    res.update({
        "orjson_loads_per_s": rate["orjson_loads"],
        "parse_frame_per_s": rate["parse_frame"],
        "parse_frame_vs_orjson": rate["parse_frame"] / rate["orjson_loads"],
        "bars_only_ticks_per_s": rate["bars_only"],
        "pipeline_only_ticks_per_s": rate["pipeline_only"],
        "store_only_ticks_per_s": rate["store_only"],
        "ingest_ticks_per_s": rate["ingest"],
        "ingest_emit_ticks_per_s": rate["ingest_emit"],
        "ingest_vs_orjson": rate["ingest"] / rate["orjson_loads"],
        "ingest_vs_parse_frame": rate["ingest"] / rate["parse_frame"],
        "bare_ws_msgs_per_s": rate["loopback_bare_ws"],
        "loopback_msgs_per_s": rate["loopback"],
        "loopback_vs_bare_ws": rate["loopback"] / rate["loopback_bare_ws"],
        "bare_ws_xproc_msgs_per_s": rate["loopback_xproc_bare_ws"],
        "loopback_xproc_msgs_per_s": rate["loopback_xproc"],
        "loopback_xproc_vs_bare_ws": rate["loopback_xproc"] / rate["loopback_xproc_bare_ws"],
        "rss_after_fixtures_mib": rss_fixtures,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "samples_seconds": samples,
        "checks": checks,
        "ok": all(checks.values()),
    })
    _load("end")
    res["machine"] = {
        "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(), "implementation": platform.python_implementation(),
        "platform": platform.platform(), "sqlite": sqlite3.sqlite_version,
        "orjson": orjson.__version__, "websockets": websockets.__version__,
        "loadavg_1min": dict(_loadavgs), "loadavg_max_1min": max(v for _, v in _loadavgs),
        "loadavg_end": list(os.getloadavg()),
    }
    res["section_seconds"] = {b[0]: round(b[1] - a[1], 2) for a, b in itertools.pairwise(_marks)}
    res["wall_seconds"] = time.perf_counter() - t_start
    return res


def format_table(r: dict[str, Any]) -> str:
    s = r["samples_seconds"]
    n = r["frames"]

    def spread(key: str) -> str:
        lo, hi = n / max(s[key]), n / min(s[key])
        return f"{lo / 1e3:,.0f}k–{hi / 1e3:,.0f}k"

    rows: list[tuple[str, str, str, str]] = [
        ("parse ceiling: orjson.loads", "orjson_loads", "frames/s", ""),
        ("parse_frame", "parse_frame", "frames/s", f"{r['parse_frame_vs_orjson']:.0%} of orjson"),
        ("bars only (build_bars, 500/batch)", "bars_only", "ticks/s", f"{len(r['timeframes'])} timeframes"),
        ("pipeline only (streamz+bars, no store)", "pipeline_only", "ticks/s", ""),
        ("store only (insert_ticks, 500/tx)", "store_only", "ticks/s", ""),
        ("ingest: parse -> store -> bars, on disk", "ingest", "ticks/s",
         (f"{r['ingest_vs_orjson']:.0%} of orjson, {r['ingest_vs_parse_frame']:.0%} of parse_frame; "
          f"stored {r['ingest_stored']:,}/{r['ingest_emitted']:,}")),
        ("  parse+emit alone (writer thread behind)", "ingest_emit", "ticks/s",
         f"{r['ingest_written_at_emit_end']:.0%} committed when the last batch was emitted"),
        ("exchange in-process: bare websockets", "loopback_bare_ws", "msgs/s",
         "ceiling; the exchange's sends share this process"),
        ("exchange in-process: feed -> pipeline", "loopback", "msgs/s",
         (f"{r['loopback_vs_bare_ws']:.0%} of bare; lost {r['loopback_lost']}, "
          f"stored {r['loopback_stored']:,}")),
        ("exchange child proc: bare websockets", "loopback_xproc_bare_ws", "msgs/s",
         "bound by the child's send loop, not the client"),
        ("exchange child proc: feed -> pipeline", "loopback_xproc", "msgs/s",
         (f"{r['loopback_xproc_vs_bare_ws']:.0%} of bare; lost {r['loopback_xproc_lost']}, "
          f"stored {r['loopback_xproc_stored']:,}")),
    ]
    m = r["machine"]
    lines = [
        (f"quantpanel bench: {n:,} real aggTrade frames ({r['recording_trades']:,} x {r['passes']} "
         f"passes, {'+'.join(r['symbols'])}), median of {r['runs']} runs"),
        (f"{m['cores']} cores, Python {m['python']}, SQLite {m['sqlite']}, websockets {m['websockets']} "
         f"({'+'.join(r['ws_extensions']) or 'no compression'}), load avg (1 min) max "
         f"{m['loadavg_max_1min']:.2f} during the run"),
        "",
        f"  {'measurement':<42} {'median':>10} {'unit':<9} {'µs/item':>8}  {'range':>13}  note",
    ]
    for name, key, unit, note in rows:
        med = n / statistics.median(s[key])
        lines.append(f"  {name:<42} {med:>10,.0f} {unit:<9} {1e6 / med:>8.2f}  {spread(key):>13}  {note}")
    lines.append(f"  {'peak RSS':<42} {r['peak_rss_mib']:>10,.0f} MiB       "
                 f"(fixtures alone {r['rss_after_fixtures_mib']:,.0f} MiB)")
    failed = [k for k, v in r["checks"].items() if not v]
    lines.append("")
    lines.append(f"checks: {'all passed' if not failed else 'FAILED ' + ', '.join(failed)} "
                 f"({len(r['checks'])}); {r['wall_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--quick", action="store_true", help="one pass of the recording (~15 s, CI smoke)")
    p.add_argument("--passes", type=int, help="passes of the recording (default 4, --quick 1)")
    p.add_argument("--runs", type=int, default=3, help="runs per measurement; the median is reported")
    args = p.parse_args(argv)
    passes = args.passes or (1 if args.quick else 4)
    if passes < 1 or args.runs < 1:
        p.error("--passes and --runs must be >= 1")

    def progress(stage: str) -> None:
        print(f"bench: {stage} ...", file=sys.stderr, flush=True)

    r = run(passes, args.runs, progress)
    print(json.dumps(r) if args.json else format_table(r), flush=True)
    if not r["ok"]:
        failed = [k for k, v in r["checks"].items() if not v]
        print(f"bench: error: correctness check failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

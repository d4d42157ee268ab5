"""`quantpanel bench`: throughput of the ingest path, each figure beside its ceiling.

Measured on the bundled real trades, repeated with shifted times and ids (as the exchange's loop
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
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect

from quantpanel.feeds.binance_futures import parse_frame
from quantpanel.feeds.connection import FeedConnection
from quantpanel.feeds.exchange import Exchange, render_agg_trade
from quantpanel.feeds.recording import Recording, load_recording
from quantpanel.models import Tick, TickBatch
from quantpanel.pipeline.bars import build_bars, initial_state
from quantpanel.pipeline.graph import Pipeline
from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

__all__ = ["run_bench", "repeat_recording"]

_BATCH = 500
_TFS = ("1s", "1m", "5m")


def repeat_recording(rec: Recording, passes: int) -> Recording:
    """The recording played ``passes`` times back to back, times and ids shifted per pass."""
    span, ids = rec.span_ms(), rec.id_spans()
    out = []
    for k in range(passes):
        for t in rec.trades:
            lo, hi = ids[t.symbol]
            da = k * (hi - lo + 1)
            out.append(replace(t, time=t.time + k * span, event_time=t.event_time + k * span,
                               agg_id=t.agg_id + da, first_id=t.first_id + da, last_id=t.last_id + da))
    return Recording(tuple(out), f"{rec.source} x{passes}")


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
        if not isinstance(r, str):
            ticks.append(r[0])
    return ticks


async def _ingest_once(frames: list[str], db: Path) -> int:
    """parse -> micro-batches -> Pipeline (bars) -> StoreWriter; returns ticks stored."""
    writer = StoreWriter(db)
    pipeline = Pipeline(initial_state(_TFS), writer)
    batch: list[Tick] = []
    for f in frames:
        r = parse_frame(f)
        if isinstance(r, str):
            continue
        batch.append(r[0])
        if len(batch) >= _BATCH:
            pipeline.emit(TickBatch(tuple(batch), 0, 0))
            batch = []
    if batch:
        pipeline.emit(TickBatch(tuple(batch), 0, 0))
    await asyncio.to_thread(writer.flush)
    writer.close()
    return writer.stats.ticks_written


async def _loopback_once(rec: Recording, db: Path) -> tuple[float, int, int]:
    """Exchange (speed 0) -> FeedConnection -> Pipeline + store: (seconds, received, sent)."""
    writer = StoreWriter(db)
    pipeline = Pipeline(initial_state(_TFS), writer)
    async with Exchange(rec, speed=0) as ex:
        feed = FeedConnection(ex.url, rec.symbols, pipeline.emit, batch_max_ticks=_BATCH)
        t0 = time.perf_counter()
        task = asyncio.get_running_loop().create_task(feed.run())
        await ex.done.wait()
        while feed.stats.ticks < ex.stats.frames_sent:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t0
        await feed.stop()
        await task
    await asyncio.to_thread(writer.flush)
    writer.close()
    return elapsed, feed.stats.ticks, ex.stats.frames_sent


async def _bare_receive_once(rec: Recording) -> tuple[float, int]:
    """The ceiling: a bare websockets client counting frames from the same exchange."""
    async with Exchange(rec, speed=0) as ex:
        url = f"{ex.url}?streams=" + "/".join(f"{s.lower()}@aggTrade" for s in rec.symbols)
        n = 0
        t0 = time.perf_counter()
        async with connect(url, max_size=2**20) as ws:
            async for _ in ws:
                n += 1
                if n == len(rec.trades):
                    break
        return time.perf_counter() - t0, n


def _seconds(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_analytics_bench(*, scale: float = 1.0, runs: int = 3) -> dict[str, Any]:
    """Issue 4's figures on a simulated cointegrated pair (labelled so): Kalman and backtest over
    1M bars, a 20x20 sweep over 100k bars, the pair scanner over 20 symbols x 2,000 bars."""
    import numpy as np
    import pandas as pd

    from quantpanel.analytics import kalman_hedge, rolling_zscore
    from quantpanel.analytics.backtest import backtest, sweep
    from quantpanel.analytics.correlation import scan_pairs

    rng = np.random.default_rng(42)
    n = int(1_000_000 * scale)
    x = 30_000 + np.cumsum(rng.normal(size=n))
    y = 0.06 * x + 500 + np.cumsum(rng.normal(scale=0.05, size=n)) * 0.01 + rng.normal(size=n)
    z = rolling_zscore(y - 0.06 * x, window=60)
    m = int(100_000 * scale)
    walks = 1_000 + np.cumsum(rng.normal(size=(int(2_000 * max(scale, 0.1)), 20)), axis=0)
    closes = pd.DataFrame(walks, columns=[f"SIM{i:02d}" for i in range(20)],
                          index=pd.date_range("2024-01-01", periods=len(walks), freq="1min"))
    return {
        "data": "simulated: random-walk x, y = 0.06 x + 500 + noise; 20 random walks for the scanner",
        "bars": n,
        "kalman_s": _seconds(lambda: kalman_hedge(y, x), runs),
        "backtest_s": _seconds(lambda: backtest(y, x, z, 0.06, entry=2.0, exit=0.0), runs),
        "sweep_20x20_s": _seconds(lambda: sweep(y[:m], x[:m], z[:m], 0.06,
                                                entries=np.linspace(1, 3, 20),
                                                exits=np.linspace(0, 1, 20)), 1),
        "sweep_bars": m,
        "scanner_20_symbols_s": _seconds(lambda: scan_pairs(closes), 1),
        "scanner_bars": len(closes),
        **_alerts_bench(z[: int(100_000 * scale)], runs),
    }


def _alerts_bench(z: Any, runs: int) -> dict[str, Any]:
    """The alert engine's cost per rule evaluation: 20 rules (every operator, hysteresis,
    persistence) over the simulated z-series, one sample per rule per bar."""
    from quantpanel.alerts.engine import Sample, evaluate
    from quantpanel.alerts.rules import Rule

    ops = [("outside", {"reset": 1.0}), (">", {"for_bars": 3}), ("<", {}), ("crosses_above", {}),
           ("crosses_below", {"cooldown_s": 60})]
    rules = {i: Rule(id=i, name=f"r{i}", metric="zscore", pair=("A", "B"), op=op,
                     threshold=(1.5 + i / 10) * (-1 if op in ("<", "crosses_below") else 1), **kw)
             for i, (op, kw) in enumerate(ops * 4)}
    samples = [Sample(i * 1000, float(v)) for i, v in enumerate(z)]
    per_rule = {rid: samples for rid in rules}
    secs = _seconds(lambda: evaluate(rules, {}, per_rule), runs)
    _, alerts = evaluate(rules, {}, per_rule)
    evals = len(rules) * len(samples)
    return {"alert_evals": evals, "alert_eval_us": secs / evals * 1e6, "alerts_fired": len(alerts)}


def run_bench(data: Path, *, passes: int = 4, runs: int = 3) -> dict[str, Any]:
    rec = repeat_recording(load_recording(data), passes)
    frames = [render_agg_trade(t, 0, 0) for t in rec.trades]
    n = len(frames)
    ticks = _parse_all(frames)
    res: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_start": os.getloadavg()},
        "frames": n, "runs": runs, "data": str(data), "passes": passes,
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
            stored = asyncio.run(_ingest_once(frames, db))
            ingest_times.append(time.perf_counter() - t0)
            with Store(db) as s:
                assert s.tick_count() == n, f"ingest stored {s.tick_count()} of {n} ticks"
        res["ingest_ticks_per_s"] = n / statistics.median(ingest_times)
        res["ingest_stored_all"] = stored == n

        loop_times, losses = [], []
        for i in range(runs):
            elapsed, got, sent = asyncio.run(_loopback_once(rec, Path(tmp) / f"l{i}.db"))
            loop_times.append(elapsed)
            losses.append(sent - got)
        res["loopback_msgs_per_s"] = n / statistics.median(loop_times)
        res["loopback_lost"] = max(losses)
        bare = [asyncio.run(_bare_receive_once(rec)) for _ in range(runs)]
        res["bare_ws_msgs_per_s"] = n / statistics.median(t for t, _ in bare)

    res["ingest_vs_orjson"] = res["ingest_ticks_per_s"] / res["orjson_loads_per_s"]
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
         f"{r['ingest_vs_orjson']:.0%} of orjson"),
        ("bare websockets receive (ceiling)", r["bare_ws_msgs_per_s"], "msgs/s", ""),
        ("loopback: exchange -> pipeline", r["loopback_msgs_per_s"], "msgs/s",
         f"{r['loopback_vs_bare_ws']:.0%} of bare, lost {r['loopback_lost']}"),
    ]
    lines = [f"{r['frames']:,} real aggTrade frames ({r['passes']} passes), median of {r['runs']} runs, "
             f"{r['machine']['cores']} cores, Python {r['machine']['python']}, "
             f"load {r['machine']['loadavg_start'][0]:.2f}"]
    lines += [f"  {name:<36} {val:>12,.0f} {unit:<9} {note}" for name, val, unit, note in rows]
    lines.append(f"  {'peak RSS':<36} {r['peak_rss_mib']:>12,.0f} MiB")
    return "\n".join(lines)


def format_analytics(a: dict[str, Any]) -> str:
    return "\n".join([
        f"analytics ({a['data']})",
        f"  {'Kalman filter, ' + format(a['bars'], ',') + ' bars':<36} {a['kalman_s']:>12.3f} s",
        f"  {'backtest, ' + format(a['bars'], ',') + ' bars':<36} {a['backtest_s']:>12.3f} s",
        f"  {'sweep 20x20, ' + format(a['sweep_bars'], ',') + ' bars':<36} {a['sweep_20x20_s']:>12.3f} s",
        f"  {'scanner, 20 symbols x ' + format(a['scanner_bars'], ',') + ' bars':<36} "
        f"{a['scanner_20_symbols_s']:>12.3f} s",
        f"  {'alert engine, per rule evaluation':<36} {a['alert_eval_us']:>12.2f} µs "
        f"({a['alert_evals']:,} evaluations, {a['alerts_fired']:,} alerts)",
    ])


def main(data: Path, *, quick: bool, as_json: bool) -> int:
    r = run_bench(data, passes=1 if quick else 4, runs=1 if quick else 3)
    r["analytics"] = run_analytics_bench(scale=0.01 if quick else 1.0, runs=1 if quick else 3)
    print(orjson.dumps(r).decode() if as_json else format_table(r) + "\n" + format_analytics(r["analytics"]))
    return 0 if r["ingest_stored_all"] and r["loopback_lost"] == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(Path(sys.argv[1]), quick="--quick" in sys.argv, as_json="--json" in sys.argv))

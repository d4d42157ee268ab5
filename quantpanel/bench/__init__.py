"""`quantpanel bench`: every performance figure of issue 8 in one run, each beside its ceiling or
target, as a table or one JSON object.

- ``throughput``: ingest (parse -> store -> bars -> live pair analytics, 10 symbols, 5 pairs) vs
  raw ``orjson.loads``; loopback (exchange process -> feed -> pipeline) vs a bare websockets loop.
- ``push``: tick-to-browser latency p50/p99 with 1, 5, 20 and 50 sessions, server CPU per
  session, server CPU to open one session, and one chart refresh against raw Bokeh streaming.
- ``analytics``: live per-closed-bar cost for 10 pairs, Run tests, Kalman, backtest, sweep,
  scanner, alerts.
- ``broker``: issue 17's Redis scale-out: tick-to-browser latency p50/p99 in process and through
  Redis (``ingest --broker`` + ``serve --broker``), and the most sessions one process and
  ``serve --workers 2`` hold within a p99 target (``--quick``: the latency only). No target of
  its own: what the broker adds is read against the in-process figures beside it.
- ``import``: issue 18's columnar import of a 2M-row aggTrades CSV (real trades repeated) against
  a ``pandas.read_csv`` + bare SQLite floor measured in the same run (``--quick``: 200k rows).
- ``history``: 30 days of a pair's ticks imported as daily files (``--quick``: 3 days), then
  ``analyze`` over the 30 days of 1m bars in process and as the command, the dashboard's warm-up
  and ``load_bars`` of 30 days of 1m.
- ``soak`` (``--soak``): server RSS over 30 minutes at ~2k ticks/s.

Ratios to a ceiling measured in the same run stay meaningful on a noisy machine. Nothing here
asserts a threshold: the numbers are for people (README, issue notes); CI smoke-tests the command.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from quantpanel.bench.analytics import format_analytics, run_analytics_bench
from quantpanel.bench.history import format_history, run_history_bench
from quantpanel.bench.importing import format_import, run_import_bench
from quantpanel.bench.throughput import format_table, run_bench

__all__ = ["main", "TARGETS", "targets"]

#: The targets on a 2-core machine (issue 8's; import and history: issue 18's): (figure, comparison, value, unit).
TARGETS: list[tuple[str, str, float, str]] = [
    ("ingest_vs_orjson", ">=", 0.40, "of raw orjson.loads"),
    ("ingest_ticks_per_s", ">=", 200_000, "ticks/s"),
    ("loopback_msgs_per_s", ">=", 50_000, "msgs/s"),
    ("loopback_lost", "==", 0, "lost"),
    ("push.sessions.1.latency_p99_ms", "<", 150, "ms"),
    ("push.sessions.20.latency_p99_ms", "<", 500, "ms"),
    ("push.max_cpu_per_session_pct", "<=", 3, "% server CPU per session"),
    ("push.refresh_vs_raw_bokeh", "<=", 3, "x raw ColumnDataSource.stream"),
    ("push.session_open_cpu_ms", "<=", 300, "ms server CPU"),
    ("ingest_vs_store_only", ">=", 0.8, "of the SQLite-only rate"),
    ("import.vs_floor", "<=", 2, "x the read_csv + bare SQLite floor"),
    ("history.analyze_30d_seconds", "<", 2, "s analyze, 30 days of 1m"),
    ("history.warm_start_seconds", "<", 1, "s dashboard warm-up"),
    ("soak.rss_growth_pct", "<", 2, "% RSS growth"),
]


def _get(r: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(r, dict) or part not in r:
            return None
        r = r[part]
    return r


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured value and whether it is met (None: not measured)."""
    ops = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
           "==": lambda a, b: a == b}
    out = []
    for key, op, want, unit in TARGETS:
        got = _get(r, key)
        out.append({"figure": key, "target": f"{op} {want:g} {unit}", "value": got,
                    "met": None if got is None else bool(ops[op](got, want))})
    return out


def main(data: Path, *, quick: bool, as_json: bool, push: bool = True, broker: bool = True,
         soak_minutes: float = 0.0, quotes: Path | None = None) -> int:
    started = time.monotonic()
    r = (run_bench(data, passes=1, runs=1, head=6_000, quotes=quotes) if quick
         else run_bench(data, quotes=quotes))
    took = {"ingest_loopback": time.monotonic() - started}
    r["analytics"] = run_analytics_bench(scale=0.01 if quick else 1.0, runs=1 if quick else 3)
    took["analytics"] = time.monotonic() - started - sum(took.values())
    r.update(run_import_bench(data, rows=200_000, runs=1) if quick else run_import_bench(data, rows=2_000_000, runs=3))
    took["import"] = time.monotonic() - started - sum(took.values())
    r.update(run_history_bench(data, days=3 if quick else 30, runs=1 if quick else 3))
    took["history"] = time.monotonic() - started - sum(took.values())
    if push:
        from quantpanel.bench.push import run_push_bench

        p = (run_push_bench(counts=(1, 3), chromium_pages=1, measure_s=6) if quick
             else run_push_bench())
        p["max_cpu_per_session_pct"] = max((s["server_cpu_per_session_pct"] for s in p["sessions"].values()),
                                           default=None)
        r["push"] = p
        took["push"] = time.monotonic() - started - sum(took.values())
    if broker:
        from quantpanel.bench.broker import run_broker_bench

        r["broker"] = (run_broker_bench(latency_counts=(1,), ladder=(), measure_s=5.0, latency_measure_s=5.0) if quick
                       else run_broker_bench())
        took["broker"] = time.monotonic() - started - sum(took.values())
    if soak_minutes:
        from quantpanel.bench.soak import run_soak

        r["soak"] = run_soak(data, minutes=soak_minutes)
        took["soak"] = time.monotonic() - started - sum(took.values())
    r["section_seconds"] = {k: round(v, 1) for k, v in took.items()}
    r["targets"] = targets(r)
    r["bench_seconds"] = round(time.monotonic() - started, 1)
    if as_json:
        print(orjson.dumps(r).decode())
    else:
        parts = [format_table(r), format_analytics(r["analytics"]), format_import(r), format_history(r)]
        if "push" in r:
            from quantpanel.bench.push import format_push

            parts.append(format_push(r["push"]))
        if "broker" in r:
            from quantpanel.bench.broker import format_broker

            parts.append(format_broker(r["broker"]))
        if "soak" in r:
            from quantpanel.bench.soak import format_soak

            parts.append(format_soak(r["soak"]))
        parts.append("targets (2-core machine):")
        parts += [f"  {'met ' if t['met'] else ('MISSED' if t['met'] is False else 'n/a   ')} "
                  f"{t['figure']:<36} {t['target']:<40} measured {t['value']}" for t in r["targets"]]
        parts.append(f"bench ran {r['bench_seconds']} s ("
                     + ", ".join(f"{k} {v:g} s" for k, v in r["section_seconds"].items()) + ")")
        print("\n".join(parts))
    return 0 if r["ingest_stored_all"] and r["loopback_lost"] == 0 else 1

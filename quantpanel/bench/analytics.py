"""Analytics costs: the live per-closed-bar path for 10 pairs, the on-demand tests, Kalman,
backtest, sweep, scanner and the alert engine.

All on *simulated* prices (labelled so in the results): random walks and a cointegrated pair,
seeded, so every run times the same work. Nothing here asserts a threshold.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from itertools import combinations
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = ["run_analytics_bench", "format_analytics"]

_Op = Literal[">", "<", "crosses_above", "crosses_below", "outside"]  # alerts.rules.Rule.op


def _seconds(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def live_pairs_bench(*, n_symbols: int = 5, bars: int = 3_000, window: int = 300,
                     warmup: int = 600) -> dict[str, Any]:
    """Cost of folding one closed bar per symbol into every pair of ``n_symbols`` (5 symbols =
    10 pairs) at ``window``: the pipeline's live pair step, measured per closed bar."""
    from quantpanel.models import Bar
    from quantpanel.pipeline.pairs import PairRegistry, PairSpec

    rng = np.random.default_rng(3)
    syms = [f"SIM{i}" for i in range(n_symbols)]
    closes = 100 + np.cumsum(rng.normal(scale=0.1, size=(bars, n_symbols)), axis=0)

    def bar(sym: str, i: int, c: float) -> Bar:
        return Bar(sym, "1s", i * 1000, c, c, c, c, 1.0, 1, c, 0.5)

    rows = [[bar(s, i, float(closes[i, j])) for j, s in enumerate(syms)] for i in range(bars)]
    reg = PairRegistry()
    pairs = list(combinations(syms, 2))
    history = [b for row in rows[:warmup] for b in row]
    for a, b in pairs:
        reg.watch(PairSpec(a, b, "1s", window=window, refit_every=60), history)
    times = []
    for row in rows[warmup:]:
        t0 = time.perf_counter()
        reg.update(row)
        times.append(time.perf_counter() - t0)
    per_bar = statistics.median(times)
    return {"live_pairs": len(pairs), "live_window": window,
            "live_per_closed_bar_us": per_bar * 1e6,
            "live_per_closed_bar_p99_us": float(np.percentile(times, 99)) * 1e6,
            "live_per_pair_us": per_bar * 1e6 / len(pairs)}


def _alerts_bench(z: Any, runs: int) -> dict[str, Any]:
    """The alert engine's cost per rule evaluation: 20 rules (every operator, hysteresis,
    persistence) over the simulated z-series, one sample per rule per bar."""
    from quantpanel.alerts.engine import Sample, evaluate
    from quantpanel.alerts.rules import Rule

    ops: list[tuple[_Op, dict[str, Any]]] = [("outside", {"reset": 1.0}), (">", {"for_bars": 3}), ("<", {}),
                                             ("crosses_above", {}), ("crosses_below", {"cooldown_s": 60})]
    rules = {i: Rule(id=i, name=f"r{i}", metric="zscore", pair=("A", "B"), op=op,
                     threshold=(1.5 + i / 10) * (-1 if op in ("<", "crosses_below") else 1), **kw)
             for i, (op, kw) in enumerate(ops * 4)}
    samples = [Sample(i * 1000, float(v)) for i, v in enumerate(z)]
    per_rule = dict.fromkeys(rules, samples)
    secs = _seconds(lambda: evaluate(rules, {}, per_rule), runs)
    _, alerts = evaluate(rules, {}, per_rule)
    evals = len(rules) * len(samples)
    return {"alert_evals": evals, "alert_eval_us": secs / evals * 1e6, "alerts_fired": len(alerts)}


def run_analytics_bench(*, scale: float = 1.0, runs: int = 3) -> dict[str, Any]:
    """Kalman and backtest over 1M bars, a 20x20 sweep over 100k bars, the on-demand tests
    (ADF, Engle-Granger, half-life, Hurst) over 10k bars, the pair scanner over 20 symbols x
    2,000 bars, the live path for 10 pairs at window 300, the alert engine."""
    from quantpanel.analytics import kalman_hedge, rolling_zscore
    from quantpanel.analytics.backtest import backtest, sweep
    from quantpanel.analytics.correlation import scan_pairs
    from quantpanel.analytics.report import pair_report

    rng = np.random.default_rng(42)
    n = int(1_000_000 * scale)
    x = 30_000 + np.cumsum(rng.normal(size=n))
    y = 0.06 * x + 500 + np.cumsum(rng.normal(scale=0.05, size=n)) * 0.01 + rng.normal(size=n)
    z = rolling_zscore(y - 0.06 * x, window=60)
    m, k = int(100_000 * scale), int(10_000 * max(scale, 0.1))
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
        # 10k bars: with statsmodels' default ADF maxlag, 100k bars take ~45 s (ANALYTICS.md)
        "tests_s": _seconds(lambda: pair_report(y[:k], x[:k]), 1),
        "tests_bars": k,
        "scanner_20_symbols_s": _seconds(lambda: scan_pairs(closes), 1),
        "scanner_bars": len(closes),
        **live_pairs_bench(bars=max(700, int(3_000 * min(1.0, scale * 10)))),
        **_alerts_bench(z[: int(100_000 * scale)], runs),
    }


def format_analytics(a: dict[str, Any]) -> str:
    return "\n".join([
        f"analytics ({a['data']})",
        (f"  {'live path, ' + str(a['live_pairs']) + ' pairs, window ' + str(a['live_window']):<36} "
         f"{a['live_per_closed_bar_us']:>12,.0f} µs per closed bar "
         f"({a['live_per_pair_us']:,.0f} µs per pair, p99 {a['live_per_closed_bar_p99_us']:,.0f} µs)"),
        (f"  {'Run tests (ADF, EG, HL, Hurst), ' + format(a['tests_bars'], ',') + ' bars':<36} "
         f"{a['tests_s']:>12.3f} s"),
        f"  {'Kalman filter, ' + format(a['bars'], ',') + ' bars':<36} {a['kalman_s']:>12.3f} s",
        f"  {'backtest, ' + format(a['bars'], ',') + ' bars':<36} {a['backtest_s']:>12.3f} s",
        f"  {'sweep 20x20, ' + format(a['sweep_bars'], ',') + ' bars':<36} {a['sweep_20x20_s']:>12.3f} s",
        (f"  {'scanner, 20 symbols x ' + format(a['scanner_bars'], ',') + ' bars':<36} "
         f"{a['scanner_20_symbols_s']:>12.3f} s"),
        (f"  {'alert engine, per rule evaluation':<36} {a['alert_eval_us']:>12.2f} µs "
         f"({a['alert_evals']:,} evaluations, {a['alerts_fired']:,} alerts)"),
    ])

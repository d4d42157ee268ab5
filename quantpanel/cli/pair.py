"""``quantpanel analyze``, ``backtest`` and ``sweep``: the pair analytics over stored bars.

All three read the pair as ``pipeline.history.pair_closes`` does for the dashboard, and take their
windows from the config unless a flag says otherwise, so the CLI and the UI agree.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING, Any

from quantpanel.config import Config, load_config
from quantpanel.models import TIME_FORMAT

if TYPE_CHECKING:
    import pandas as pd

    from quantpanel.analytics.backtest import Signal
    from quantpanel.pipeline.pair_costs import PairCosts

__all__ = ["run_analyze", "run_backtest", "run_sweep"]


def run_analyze(args: argparse.Namespace) -> int:
    """Static pair report: one JSON object, or a table and the verdict."""
    from quantpanel.analytics import pair_report

    cfg = load_config(args.config, {"storage.db_path": args.db})
    a, b = _legs(args)
    y, x = _closes(args, cfg)
    window = _window(args, cfg)
    report = pair_report(y, x, window=window, lookback=_lookback(args, cfg),
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


def run_backtest(args: argparse.Namespace) -> int:
    """One backtest: its metrics and the run's settings, as JSON or a table."""
    from quantpanel.analytics.backtest import backtest, trades_frame

    cfg = load_config(args.config, {"storage.db_path": args.db})
    y, x, sig, per_year = _signal(args, cfg)
    costs = _costs(args, cfg, y, x)
    bt = cfg.backtest
    r = backtest(y, x, sig.z, sig.beta, entry=_pick(args.entry, bt.entry), exit=_pick(args.exit, bt.exit),
                 stop=_pick(args.stop, bt.stop), fee_bps=_pick(args.fee_bps, bt.fee_bps),
                 slippage_bps=_pick(args.slippage_bps, bt.slippage_bps), bars_per_year=per_year,
                 **costs.kwargs)
    if args.trades_csv:
        trades_frame(r, y.index).to_csv(args.trades_csv, index=False, date_format=TIME_FORMAT)
    out = {"total_pnl": r.total_pnl, "n_trades": r.n_trades, "win_rate": r.win_rate,
           "avg_trade": r.avg_trade, "max_drawdown": r.max_drawdown, "sharpe": r.sharpe, "fees": r.fees,
           "funding": r.funding, "slippage": r.slippage, "slippage_model": r.slippage_model,
           "quote_fallbacks": r.quote_fallbacks, **costs.report(),
           **_run(args, cfg), "entry": r.entry, "exit": r.exit, "stop": r.stop,
           "fee_bps": r.fee_bps, "slippage_bps": r.slippage_bps, "bars": len(y),
           "trades_funding": [t.funding for t in r.trades]}
    if args.json:
        print(json.dumps({k: _clean(v) for k, v in out.items()}))
    else:
        for k, v in out.items():
            print(f"  {k:<13} {'—' if _clean(v) is None else v}")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    """Backtests over the entry x exit grid: every cell's metrics and the best cell."""
    from quantpanel.analytics.backtest import sweep

    cfg = load_config(args.config, {"storage.db_path": args.db})
    y, x, sig, per_year = _signal(args, cfg)
    costs = _costs(args, cfg, y, x)
    bt = cfg.backtest
    r = sweep(y, x, sig.z, sig.beta, entries=args.entry_grid, exits=args.exit_grid,
              stop=_pick(args.stop, bt.stop), fee_bps=_pick(args.fee_bps, bt.fee_bps),
              slippage_bps=_pick(args.slippage_bps, bt.slippage_bps), bars_per_year=per_year,
              **costs.kwargs)
    i, j = divmod(int(r.total_pnl.argmax()), len(r.exits))
    out = {"entries": r.entries.tolist(), "exits": r.exits.tolist(),
           "total_pnl": _clean(r.total_pnl.tolist()), "sharpe": _clean(r.sharpe.tolist()),
           "max_drawdown": _clean(r.max_drawdown.tolist()), "n_trades": r.n_trades.tolist(),
           "funding": _clean(r.funding.tolist()), "quote_fallbacks": r.quote_fallbacks.tolist(),
           "best": {"entry": float(r.entries[i]), "exit": float(r.exits[j]),
                    "total_pnl": float(r.total_pnl[i, j])},
           **costs.report(), "slippage_model": costs.kwargs.get("slippage_model", "fixed"),
           **_run(args, cfg), "bars": len(y)}
    if args.json:
        print(json.dumps(out))
    else:
        print("total P&L (rows: entry, columns: exit)")
        print("        " + "".join(f"{e:>10g}" for e in r.exits))
        for e, row in zip(r.entries, r.total_pnl, strict=True):
            print(f"{e:>8g}" + "".join(f"{v:>10.4g}" for v in row))
        print(f"best: entry {out['best']['entry']:g}, exit {out['best']['exit']:g}")
    return 0


def _legs(args: argparse.Namespace) -> tuple[str, str]:
    a, b = (s.upper() for s in args.pair)
    return a, b


def _closes(args: argparse.Namespace, cfg: Config) -> tuple[pd.Series, pd.Series]:
    """The pair's aligned closes over ``--start``/``--end``."""
    from quantpanel.pipeline.history import pair_closes
    from quantpanel.storage.store import Store

    with Store(cfg.storage.db_path, readonly=True) as store:
        return pair_closes(store, *_legs(args), args.timeframe, args.start, args.end,
                           grace_ms=cfg.bars.close_grace_ms)


def _costs(args: argparse.Namespace, cfg: Config, y: pd.Series, x: pd.Series) -> PairCosts:
    """Funding (``--funding``) and the quoted spreads (``--slippage-model half_spread``) of the pair."""
    from quantpanel.pipeline.pair_costs import pair_costs
    from quantpanel.storage.store import Store

    with Store(cfg.storage.db_path, readonly=True) as store:
        return pair_costs(store, *_legs(args), args.timeframe, y, x,
                          funding=_pick(args.funding, cfg.backtest.funding),
                          slippage_model=_pick(args.slippage_model, cfg.backtest.slippage_model))


def _window(args: argparse.Namespace, cfg: Config) -> int:
    """``--window``, else the config's z-score window."""
    return args.window or cfg.windows.zscore


def _lookback(args: argparse.Namespace, cfg: Config) -> int | None:
    """``--lookback``, else the config's (``windows.lookback``, as the Pair tab); None = all bars."""
    return args.lookback or cfg.windows.lookback or None


def _signal(args: argparse.Namespace, cfg: Config) -> tuple[pd.Series, pd.Series, Signal, float]:
    """Aligned closes, the signal the backtest trades on, bars per year."""
    from quantpanel.analytics.backtest import pair_signal
    from quantpanel.analytics.stats import bars_per_year
    from quantpanel.models import timeframe_ms

    y, x = _closes(args, cfg)
    sig = pair_signal(y, x, mode=args.beta, window=_window(args, cfg), lookback=_lookback(args, cfg),
                      delta=cfg.kalman.delta, ve=cfg.kalman.ve)
    return y, x, sig, bars_per_year(timeframe_ms(args.timeframe) / 1000)


def _run(args: argparse.Namespace, cfg: Config) -> dict[str, Any]:
    """The settings a backtest or sweep ran with, as its output reports them."""
    return {"pair": list(_legs(args)), "timeframe": args.timeframe, "beta_mode": args.beta,
            "window": _window(args, cfg)}


def _pick(flag: Any, default: Any) -> Any:
    return default if flag is None else flag


def _clean(v: Any) -> Any:
    """NaN and inf are not JSON: null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_clean(i) for i in v]
    return v

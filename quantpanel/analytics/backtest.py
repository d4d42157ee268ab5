"""Mean-reversion backtest of a spread on a z-score signal (docs/ANALYTICS.md "Mean-reversion backtest").

At the close of bar t, from z_t: flat -> short the spread when z_t > entry, long when z_t < -entry;
short -> flat when z_t <= exit, long -> flat when z_t >= -exit; any position -> flat when
|z_t| > stop. No new entry on the bar of an exit. A position set at the close of t is held to the
close of t+1. Long spread = +1 A and -beta B, beta fixed at entry. Fees and slippage (bps of each
leg's traded notional) are charged on every entry and exit.

The position path is a state machine that only changes state on threshold bars, so it jumps
between those; P&L, costs and metrics are vectorised. The sweep runs the state machine for a whole
entry x exit grid at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from quantpanel.analytics._inputs import ArrayLike, FloatArray, as_array
from quantpanel.analytics.hedge import ols_hedge
from quantpanel.analytics.kalman import kalman_hedge
from quantpanel.analytics.spread import rolling_zscore, spread
from quantpanel.errors import AnalyticsInputError, InsufficientDataError

__all__ = ["Trade", "BacktestResult", "SweepResult", "Signal", "TRADE_COLUMNS", "backtest",
           "pair_signal", "parse_grid", "sweep", "trades_frame"]

BetaMode: TypeAlias = Literal["ols", "kalman"]
IntArray: TypeAlias = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Trade:
    entry_index: int
    exit_index: int | None  # None: still open at the last bar (marked at its close)
    side: int  # +1 long spread, -1 short spread
    entry_a: float
    entry_b: float
    exit_a: float
    exit_b: float
    beta: float
    pnl: float  # net of both legs' costs on entry and exit
    costs: float


@dataclass(frozen=True)
class BacktestResult:
    position: npt.NDArray[np.int8]  # -1/0/+1 held from the close of each bar to the next
    pnl: FloatArray  # per-bar P&L net of costs
    equity: FloatArray  # cumulative pnl
    trades: tuple[Trade, ...]
    total_pnl: float
    n_trades: int  # entries, an open one included
    win_rate: float  # closed trades with pnl > 0 / closed trades (NaN without closed trades)
    avg_trade: float  # total_pnl / n_trades (NaN without trades)
    max_drawdown: float
    sharpe: float  # mean / std (ddof=1) of per-bar pnl x sqrt(bars per year)
    fees: float  # total costs: fees and slippage
    entry: float
    exit: float
    stop: float | None
    fee_bps: float
    slippage_bps: float


def _validate(a: ArrayLike, b: ArrayLike, z: ArrayLike, beta: ArrayLike | float, entry: float,
              exit: float, stop: float | None, fee_bps: float, slippage_bps: float
              ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    pa, pb = as_array(a, "a"), as_array(b, "b")
    zz = np.asarray(z, dtype=np.float64)
    if zz.ndim != 1 or np.isinf(zz).any():
        raise AnalyticsInputError("z must be one-dimensional with no infinite values (NaN = no signal)")
    # np.isscalar narrows to any scalar (str, complex, ...); by the signature a scalar beta is a float
    bb = np.full(len(pa), float(cast(float, beta))) if np.isscalar(beta) else np.asarray(beta, dtype=np.float64)
    if not len(pa) == len(pb) == len(zz) == len(bb):
        raise AnalyticsInputError(
            f"a, b, z and beta differ in length: {len(pa)}, {len(pb)}, {len(zz)}, {len(bb)}")
    if len(pa) < 2:
        raise InsufficientDataError("backtest", 2, len(pa))
    if not entry > 0:
        raise AnalyticsInputError(f"entry must be > 0, got {entry}")
    if exit < 0:
        raise AnalyticsInputError(f"exit must be >= 0, got {exit}")
    if stop is not None and not stop > entry:
        raise AnalyticsInputError(f"stop must be > entry ({entry}), got {stop}")
    if fee_bps < 0 or slippage_bps < 0:
        raise AnalyticsInputError(f"fee_bps and slippage_bps must be >= 0, got {fee_bps}, {slippage_bps}")
    return pa, pb, zz, bb


def _events(z: FloatArray, beta: FloatArray, entry: float, exit: float, stop: float | None
            ) -> tuple[IntArray, IntArray, npt.NDArray[np.int8]]:
    """The state machine's trades: entry bars, exit bars (n when still open) and sides.

    The position only changes on bars where a threshold is crossed, so it jumps from one such
    bar to the next (``searchsorted`` on the candidate bars) instead of visiting every bar.
    NaN z compares false: no signal.
    """
    n = len(z)
    stop_ = math.inf if stop is None else stop
    with np.errstate(invalid="ignore"):
        far = np.abs(z) > stop_
        entries = np.flatnonzero(((z > entry) | (z < -entry)) & ~np.isnan(beta))
        exit_long = np.flatnonzero((z >= -exit) | far)
        exit_short = np.flatnonzero((z <= exit) | far)
    ins, outs, sides = [], [], []
    t = 0
    while True:
        k = np.searchsorted(entries, t)
        if k == len(entries):
            break
        i = int(entries[k])
        side = -1 if z[i] > entry else 1
        exits = exit_long if side > 0 else exit_short
        m = np.searchsorted(exits, i + 1)
        j = int(exits[m]) if m < len(exits) else n  # flat from the close of the exit bar
        ins.append(i)
        outs.append(j)
        sides.append(side)
        if j >= n:
            break
        t = j + 1  # no new entry on the bar of an exit
    return (np.array(ins, dtype=np.int64), np.array(outs, dtype=np.int64),
            np.array(sides, dtype=np.int8))


def backtest(
    a: ArrayLike,
    b: ArrayLike,
    z: ArrayLike,
    beta: ArrayLike | float,
    *,
    entry: float = 2.0,
    exit: float = 0.0,
    stop: float | None = None,
    fee_bps: float = 4.0,
    slippage_bps: float = 0.0,
    bars_per_year: float = 365 * 1440,
) -> BacktestResult:
    """Backtest the spread ``a - beta * b`` traded on ``z`` (NaN z: no signal that bar).

    ``beta`` is a number (static OLS) or one value per bar (Kalman beta_t): the value at the
    entry bar is held for the trade. ``bars_per_year`` annualises the Sharpe ratio.

    Examples
    --------
    >>> r = backtest([10, 9, 10, 11], [5, 5, 5, 5], [0, -2.5, 0.1, 0], 1.0, fee_bps=0)
    >>> r.n_trades, r.total_pnl, r.trades[0].side
    (1, 1.0, 1)
    """
    pa, pb, zz, bb = _validate(a, b, z, beta, entry, exit, stop, fee_bps, slippage_bps)
    n = len(pa)
    ins, outs, sides = _events(zz, bb, entry, exit, stop)
    marks = np.zeros(n + 1, dtype=np.int64)
    np.add.at(marks, ins, 1)
    np.add.at(marks, outs, -1)
    holding = np.cumsum(marks[:n]) > 0
    trade_of_bar = np.cumsum(np.bincount(ins, minlength=n)[:n]) - 1  # index of the latest entry
    pos = np.where(holding, sides[trade_of_bar.clip(0)] if len(ins) else 0, 0).astype(np.int8)
    trade_beta = bb[ins]
    held = np.where(holding, trade_beta[trade_of_bar.clip(0)] if len(ins) else 0.0, 0.0)
    gross = np.zeros(n)
    gross[1:] = pos[:-1] * (np.diff(pa) - held[:-1] * np.diff(pb))
    rate = (fee_bps + slippage_bps) / 1e4
    closed_mask = outs < n
    c_in = rate * (np.abs(pa[ins]) + np.abs(trade_beta * pb[ins]))
    jo = np.minimum(outs, n - 1)
    c_out = np.where(closed_mask, rate * (np.abs(pa[jo]) + np.abs(trade_beta * pb[jo])), 0.0)
    costs = np.zeros(n)
    np.add.at(costs, ins, c_in)
    np.add.at(costs, outs[closed_mask], c_out[closed_mask])
    if len(ins):  # gross P&L of each trade: bars entry+1 .. exit
        bounds = np.empty(2 * len(ins), dtype=np.int64)
        bounds[0::2], bounds[1::2] = ins + 1, np.minimum(outs + 1, n)
        seg = np.add.reduceat(np.append(gross, 0.0), bounds)[0::2]
        seg[bounds[0::2] >= bounds[1::2]] = 0.0
    else:
        seg = np.zeros(0)
    trade_pnl = seg - c_in - c_out
    trades = tuple(
        Trade(int(i), int(j) if j < n else None, int(sd), float(pa[i]), float(pb[i]),
              float(pa[min(j, n - 1)]), float(pb[min(j, n - 1)]), float(be), float(p), float(ci + co))
        for i, j, sd, be, p, ci, co in zip(ins.tolist(), outs.tolist(), sides.tolist(),
                                           trade_beta.tolist(), trade_pnl.tolist(), c_in.tolist(),
                                           c_out.tolist(), strict=True))
    net = gross - costs
    equity = np.cumsum(net)
    closed_pnl = trade_pnl[closed_mask]
    sd = float(net.std(ddof=1))
    total = float(equity[-1])
    return BacktestResult(
        position=pos, pnl=net, equity=equity, trades=trades, total_pnl=total,
        n_trades=len(trades),
        win_rate=float((closed_pnl > 0).mean()) if len(closed_pnl) else math.nan,
        avg_trade=total / len(trades) if trades else math.nan,
        max_drawdown=float((np.maximum.accumulate(np.maximum(equity, 0.0)) - equity).max()),
        sharpe=float(net.mean() / sd * math.sqrt(bars_per_year)) if sd > 0 else math.nan,
        fees=float(costs.sum()), entry=entry, exit=exit, stop=stop, fee_bps=fee_bps,
        slippage_bps=slippage_bps,
    )


@dataclass(frozen=True)
class SweepResult:
    entries: FloatArray
    exits: FloatArray
    total_pnl: FloatArray  # shape (len(entries), len(exits))
    sharpe: FloatArray
    max_drawdown: FloatArray
    n_trades: IntArray


def sweep(
    a: ArrayLike,
    b: ArrayLike,
    z: ArrayLike,
    beta: ArrayLike | float,
    *,
    entries: ArrayLike,
    exits: ArrayLike,
    stop: float | None = None,
    fee_bps: float = 4.0,
    slippage_bps: float = 0.0,
    bars_per_year: float = 365 * 1440,
) -> SweepResult:
    """``backtest`` for every (entry, exit) of a grid, all at once: one pass over the bars with
    the state of every grid cell in a vector. Each cell equals ``backtest`` with those values.

    Examples
    --------
    >>> r = sweep([10, 9, 10, 11], [5, 5, 5, 5], [0, -2.5, 0.1, 0], 1.0, entries=[2.0, 3.0], exits=[0.0],
    ...           fee_bps=0)
    >>> r.total_pnl.tolist(), r.n_trades.tolist()
    ([[1.0], [0.0]], [[1], [0]])
    """
    ent = np.asarray(entries, dtype=np.float64)
    ext = np.asarray(exits, dtype=np.float64)
    if ent.ndim != 1 or ext.ndim != 1 or not len(ent) or not len(ext):
        raise AnalyticsInputError("entries and exits must be non-empty one-dimensional grids")
    pa, pb, zz, bb = _validate(a, b, z, beta, float(ent.min()), float(ext.min()), stop,
                               fee_bps, slippage_bps)
    E = np.repeat(ent, len(ext))
    X = np.tile(ext, len(ent))
    g = len(E)
    rate = (fee_bps + slippage_bps) / 1e4
    stop_ = math.inf if stop is None else stop
    pos = np.zeros(g)
    be = np.zeros(g)
    equity = np.zeros(g)
    peak = np.zeros(g)
    maxdd = np.zeros(g)
    s1 = np.zeros(g)
    s2 = np.zeros(g)
    trades = np.zeros(g, dtype=np.int64)
    da = np.diff(pa, prepend=pa[0])
    db = np.diff(pb, prepend=pb[0])
    for t in range(len(pa)):
        net = pos * (da[t] - be * db[t])  # P&L of the position held into this bar
        zt = zz[t]
        if zt == zt:
            flat = pos == 0  # before any exit: no new entry on the bar of an exit
            close = ~flat & (((pos < 0) & (zt <= X)) | ((pos > 0) & (zt >= -X)) | (abs(zt) > stop_))
            bt = bb[t]
            opening = flat & ((zt > E) | (zt < -E)) & (bt == bt)
            cost_t = rate * (abs(pa[t]) + np.abs(be * pb[t]))
            if close.any():
                net = net - np.where(close, cost_t, 0.0)
                pos = np.where(close, 0.0, pos)
            if opening.any():
                side = np.where(zt > E, -1.0, 1.0)
                pos = np.where(opening, side, pos)
                be = np.where(opening, bt, be)
                net = net - np.where(opening, rate * (abs(pa[t]) + abs(bt * pb[t])), 0.0)
                trades += opening
        equity += net
        np.maximum(peak, equity, out=peak)
        np.maximum(maxdd, peak - equity, out=maxdd)
        s1 += net
        s2 += net * net
    n = len(pa)
    var = (s2 - s1 * s1 / n) / (n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sharpe = np.where(var > 0, (s1 / n) / np.sqrt(var) * math.sqrt(bars_per_year), np.nan)
    shape = (len(ent), len(ext))
    return SweepResult(ent, ext, equity.reshape(shape), sharpe.reshape(shape),
                       maxdd.reshape(shape), trades.reshape(shape))


# -- what the CLI and the dashboard trade ---------------------------------------------------------
@dataclass(frozen=True)
class Signal:
    """The z-score a backtest trades and the beta it hedges with, one value per aligned bar."""

    z: FloatArray
    beta: FloatArray
    mode: BetaMode


def pair_signal(
    y: pd.Series,
    x: pd.Series,
    *,
    mode: BetaMode = "ols",
    window: int = 60,
    lookback: int | None = None,
    delta: float = 1e-4,
    ve: float = 1e-3,
) -> Signal:
    """``ols``: static OLS beta (over the last ``lookback`` bars) and the rolling z of its spread;
    ``kalman``: the filter's beta_t and its innovation z-score (docs/ANALYTICS.md).

    Examples
    --------
    >>> sig = pair_signal(pd.Series([2.0, 4.1, 5.9, 8.0, 9.9]), pd.Series([1.0, 2.0, 3.0, 4.0, 5.0]), window=3)
    >>> sig.mode, sig.z.round(2).tolist(), round(float(sig.beta[0]), 3)
    ('ols', [nan, nan, -0.79, 0.34, -0.05], 1.97)
    """
    if mode == "kalman":
        k = kalman_hedge(y, x, delta=delta, ve=ve)
        return Signal(np.asarray(k.zscore, dtype=np.float64), np.asarray(k.beta, dtype=np.float64), mode)
    if mode != "ols":
        raise AnalyticsInputError(f"beta mode must be 'ols' or 'kalman', got {mode!r}")
    h = ols_hedge(y, x, lookback=lookback)
    z = rolling_zscore(spread(y, x, beta=h.beta, alpha=h.alpha), window=window)
    return Signal(np.asarray(z, dtype=np.float64), np.full(len(y), h.beta), mode)


def parse_grid(text: str) -> FloatArray:
    """``start:stop:step`` (stop included), e.g. ``1:3:0.25`` -> 1, 1.25, ..., 3.

    Examples
    --------
    >>> parse_grid("1:2:0.25").tolist()
    [1.0, 1.25, 1.5, 1.75, 2.0]
    """
    try:
        start, stop, step = (float(v) for v in text.split(":"))
    except ValueError:
        raise AnalyticsInputError(f"{text!r} is not start:stop:step, e.g. 1:3:0.25") from None
    if not (step > 0 and stop >= start and math.isfinite(stop) and math.isfinite(start)):
        raise AnalyticsInputError(f"{text!r}: need step > 0 and stop >= start")
    k = round((stop - start) / step)
    if k >= 1000:
        raise AnalyticsInputError(f"{text!r}: {k + 1} values; at most 1000 per grid axis")
    return np.round(start + np.arange(k + 1) * step, 10)


TRADE_COLUMNS = ("entry_time", "exit_time", "side", "entry_a", "entry_b", "exit_a", "exit_b",
                 "beta", "pnl", "costs")


def trades_frame(result: BacktestResult, times: pd.DatetimeIndex) -> pd.DataFrame:
    """The trades as a table with bar times for bar indices; ``exit_time`` is NaT while open.

    Examples
    --------
    >>> r = backtest([10, 9, 10, 11], [5, 5, 5, 5], [0, -2.5, 0.1, 0], 1.0, fee_bps=0)
    >>> trades_frame(r, pd.date_range("2024-01-01", periods=4, freq="min"))[["entry_time", "exit_time", "side"]]
               entry_time           exit_time  side
    0 2024-01-01 00:01:00 2024-01-01 00:02:00  long
    """
    t = pd.DatetimeIndex(times)
    rows = [(t[tr.entry_index], pd.NaT if tr.exit_index is None else t[tr.exit_index],
             "long" if tr.side > 0 else "short", tr.entry_a, tr.entry_b, tr.exit_a, tr.exit_b,
             tr.beta, tr.pnl, tr.costs) for tr in result.trades]
    df = pd.DataFrame(rows, columns=list(TRADE_COLUMNS))
    for c in ("entry_time", "exit_time"):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[ns]")
    return df

"""Mean-reversion backtest of a spread on a z-score signal (ANALYTICS.md "Mean-reversion backtest").

At the close of bar t, from z_t: flat -> short the spread when z_t > entry, long when z_t < -entry;
short -> flat when z_t <= exit, long -> flat when z_t >= -exit; any position -> flat when
|z_t| > stop. No new entry on the bar of an exit. A position set at the close of t is held to the
close of t+1. Long spread = +1 A and -beta B, beta fixed at entry. Fees and slippage (bps of each
leg's traded notional) are charged on every entry and exit.

The position path is a state machine, so it is one tight loop over plain floats; P&L, costs and
metrics are vectorised. The sweep runs the state machine for a whole entry x exit grid at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from quantpanel.analytics._inputs import ArrayLike, as_array
from quantpanel.errors import AnalyticsInputError, InsufficientDataError

__all__ = ["Trade", "BacktestResult", "SweepResult", "backtest", "sweep"]


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
    position: np.ndarray  # -1/0/+1 held from the close of each bar to the next
    pnl: np.ndarray  # per-bar P&L net of costs
    equity: np.ndarray  # cumulative pnl
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
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pa, pb = as_array(a, "a"), as_array(b, "b")
    zz = np.asarray(z, dtype="float64")
    if zz.ndim != 1 or np.isinf(zz).any():
        raise AnalyticsInputError("z must be one-dimensional with no infinite values (NaN = no signal)")
    bb = np.full(len(pa), float(beta)) if np.isscalar(beta) else np.asarray(beta, dtype="float64")
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


def _positions(z: np.ndarray, beta: np.ndarray, entry: float, exit: float, stop: float | None
               ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
    """The state machine: position and held beta per bar, and (entry, exit or -1, side) events."""
    n = len(z)
    pos_out = np.zeros(n, dtype="int8")
    beta_out = np.zeros(n)
    trades: list[tuple[int, int, int]] = []
    stop_ = math.inf if stop is None else stop
    zl, bl = z.tolist(), beta.tolist()
    pos, be, opened = 0, 0.0, -1
    for t in range(n):
        zt = zl[t]
        if zt == zt:  # not NaN: a signal
            if pos:
                if (pos < 0 and zt <= exit) or (pos > 0 and zt >= -exit) or abs(zt) > stop_:
                    trades.append((opened, t, pos))
                    pos = 0
            elif zt > entry or zt < -entry:
                bt = bl[t]
                if bt == bt:  # no entry without a hedge ratio
                    pos, be, opened = (-1 if zt > entry else 1), bt, t
        if pos:
            pos_out[t] = pos
            beta_out[t] = be
    if pos:
        trades.append((opened, -1, pos))
    return pos_out, beta_out, trades


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
    pos, held, events = _positions(zz, bb, entry, exit, stop)
    n = len(pa)
    rate = (fee_bps + slippage_bps) / 1e4
    gross = np.zeros(n)
    gross[1:] = pos[:-1] * (np.diff(pa) - held[:-1] * np.diff(pb))
    costs = np.zeros(n)
    trades: list[Trade] = []
    for i, j, side in events:
        be = held[i]
        c_in = rate * (abs(pa[i]) + abs(be * pb[i]))
        costs[i] += c_in
        if j >= 0:
            c_out = rate * (abs(pa[j]) + abs(be * pb[j]))
            costs[j] += c_out
            pnl = float(gross[i + 1:j + 1].sum()) - c_in - c_out
            trades.append(Trade(i, j, side, pa[i], pb[i], pa[j], pb[j], be, pnl, c_in + c_out))
        else:
            pnl = float(gross[i + 1:].sum()) - c_in
            trades.append(Trade(i, None, side, pa[i], pb[i], pa[-1], pb[-1], be, pnl, c_in))
    net = gross - costs
    equity = np.cumsum(net)
    closed = [t for t in trades if t.exit_index is not None]
    sd = float(net.std(ddof=1))
    total = float(equity[-1])
    return BacktestResult(
        position=pos, pnl=net, equity=equity, trades=tuple(trades), total_pnl=total,
        n_trades=len(trades),
        win_rate=sum(t.pnl > 0 for t in closed) / len(closed) if closed else math.nan,
        avg_trade=total / len(trades) if trades else math.nan,
        max_drawdown=float((np.maximum.accumulate(np.maximum(equity, 0.0)) - equity).max()),
        sharpe=float(net.mean() / sd * math.sqrt(bars_per_year)) if sd > 0 else math.nan,
        fees=float(costs.sum()), entry=entry, exit=exit, stop=stop, fee_bps=fee_bps,
        slippage_bps=slippage_bps,
    )


@dataclass(frozen=True)
class SweepResult:
    entries: np.ndarray
    exits: np.ndarray
    total_pnl: np.ndarray  # shape (len(entries), len(exits))
    sharpe: np.ndarray
    max_drawdown: np.ndarray
    n_trades: np.ndarray


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
    the state of every grid cell in a vector. Each cell equals ``backtest`` with those values."""
    ent = np.asarray(entries, dtype="float64")
    ext = np.asarray(exits, dtype="float64")
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
    trades = np.zeros(g, dtype="int64")
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

"""Mean-reversion backtest of a spread on a z-score signal (docs/ANALYTICS.md "Mean-reversion backtest").

At the close of bar t, from z_t: flat -> short the spread when z_t > entry, long when z_t < -entry;
short -> flat when z_t <= exit, long -> flat when z_t >= -exit; any position -> flat when
|z_t| > stop. No new entry on the bar of an exit. A position set at the close of t is held to the
close of t+1. Long spread = +1 A and -beta B, beta fixed at entry. Fees and slippage are charged on
every entry and exit (analytics/costs.py: fixed bps, or half the quoted spread). Optional funding
(analytics/funding.py) charges each bar's funding events to the position held during that bar.

The position path is a state machine that only changes state on threshold bars, so it jumps
between those; P&L, costs and metrics are vectorised. The sweep runs the state machine for a whole
entry x exit grid at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypeAlias, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from quantpanel.analytics._inputs import ArrayLike, FloatArray, as_array
from quantpanel.analytics.costs import SlippageModel, cost_model
from quantpanel.analytics.funding import funding_legs
from quantpanel.analytics.signals import BetaMode, Signal, pair_signal, parse_grid
from quantpanel.errors import AnalyticsInputError, InsufficientDataError

# Signal, pair_signal and parse_grid live in analytics/signals.py; re-exported for the CLI and dashboard.
__all__ = ["Trade", "BacktestResult", "SweepResult", "Signal", "BetaMode", "TRADE_COLUMNS", "backtest",
           "pair_signal", "parse_grid", "sweep", "trades_frame"]

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
    pnl: float  # net of both legs' costs on entry and exit, funding included
    costs: float
    funding: float = 0.0  # funding received over the held bars (negative = paid), included in pnl


@dataclass(frozen=True)
class BacktestResult:
    position: npt.NDArray[np.int8]  # -1/0/+1 held from the close of each bar to the next
    pnl: FloatArray  # per-bar P&L net of costs, funding included
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
    funding: float = 0.0  # total funding received (negative = paid), included in pnl
    funding_pnl: FloatArray = field(default_factory=lambda: np.zeros(0))  # per bar, included in pnl
    funding_included: bool = False  # funding_a or funding_b was given
    slippage: float = 0.0  # the slippage part of fees
    slippage_model: str = "fixed"
    quote_fallbacks: int = 0  # half_spread: leg-trades without a quote, charged slippage_bps instead


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
    funding_a: ArrayLike | None = None,
    funding_b: ArrayLike | None = None,
    slippage_model: SlippageModel = "fixed",
    spread_a: ArrayLike | None = None,
    spread_b: ArrayLike | None = None,
) -> BacktestResult:
    """Backtest the spread ``a - beta * b`` traded on ``z`` (NaN z: no signal that bar).

    ``beta`` is a number (static OLS) or one value per bar (Kalman beta_t): the value at the
    entry bar is held for the trade. ``bars_per_year`` annualises the Sharpe ratio.
    ``funding_a``/``funding_b``: each bar's ``sum P(F)·r`` (``funding_per_bar(...).per_bar``); a leg
    of ``q`` units held during bar t (set at the close of t-1; +1 A, -beta B long) receives
    ``-q * funding[t]``.
    ``slippage_model="half_spread"`` charges half of ``spread_a``/``spread_b`` (ask - bid at each
    bar's close, NaN = no quote: ``slippage_bps`` instead) per unit traded, instead of ``slippage_bps``.

    Examples
    --------
    >>> r = backtest([10, 9, 10, 11], [5, 5, 5, 5], [0, -2.5, 0.1, 0], 1.0, fee_bps=0)
    >>> r.n_trades, r.total_pnl, r.trades[0].side
    (1, 1.0, 1)
    """
    pa, pb, zz, bb = _validate(a, b, z, beta, entry, exit, stop, fee_bps, slippage_bps)
    n = len(pa)
    cm = cost_model(pa, pb, fee_bps=fee_bps, slippage_bps=slippage_bps, slippage_model=slippage_model,
                    spread_a=spread_a, spread_b=spread_b)
    legs = funding_legs(funding_a, funding_b, n)
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
    fund = np.zeros(n)
    if legs is not None:  # funding of bar t's events, paid by the position held during bar t
        fund[1:] = -(pos[:-1] * (legs[0][1:] - held[:-1] * legs[1][1:]))
    closed_mask = outs < n
    c_in = cm.total(ins, trade_beta)
    jo = np.minimum(outs, n - 1)
    c_out = np.where(closed_mask, cm.total(jo, trade_beta), 0.0)
    costs = np.zeros(n)
    np.add.at(costs, ins, c_in)
    np.add.at(costs, outs[closed_mask], c_out[closed_mask])
    trade_fund = _per_trade(fund, ins, outs)
    trade_pnl = _per_trade(gross, ins, outs) - c_in - c_out
    if legs is not None:
        trade_pnl = trade_pnl + trade_fund
    trades = tuple(
        Trade(int(i), int(j) if j < n else None, int(sd), float(pa[i]), float(pb[i]),
              float(pa[min(j, n - 1)]), float(pb[min(j, n - 1)]), float(be), float(p), float(ci + co), float(f))
        for i, j, sd, be, p, ci, co, f in zip(ins.tolist(), outs.tolist(), sides.tolist(),
                                              trade_beta.tolist(), trade_pnl.tolist(), c_in.tolist(),
                                              c_out.tolist(), trade_fund.tolist(), strict=True))
    net = gross - costs
    if legs is not None:
        net = net + fund
    oc = outs[closed_mask]
    slip = float(cm.slippage(ins, trade_beta).sum() + cm.slippage(oc, trade_beta[closed_mask]).sum())
    fallbacks = int(cm.missing[ins].sum() + cm.missing[oc].sum()) if slippage_model == "half_spread" else 0
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
        slippage_bps=slippage_bps, funding=float(fund.sum()), funding_pnl=fund,
        funding_included=legs is not None, slippage=slip, slippage_model=slippage_model,
        quote_fallbacks=fallbacks,
    )


def _per_trade(x: FloatArray, ins: IntArray, outs: IntArray) -> FloatArray:
    """Sum of ``x`` over each trade's held bars: entry+1 .. exit (the last bar while open)."""
    n = len(x)
    if not len(ins):
        return np.zeros(0)
    bounds = np.empty(2 * len(ins), dtype=np.int64)
    bounds[0::2], bounds[1::2] = ins + 1, np.minimum(outs + 1, n)
    seg = np.add.reduceat(np.append(x, 0.0), bounds)[0::2]
    seg[bounds[0::2] >= bounds[1::2]] = 0.0
    return seg


@dataclass(frozen=True)
class SweepResult:
    entries: FloatArray
    exits: FloatArray
    total_pnl: FloatArray  # shape (len(entries), len(exits))
    sharpe: FloatArray
    max_drawdown: FloatArray
    n_trades: IntArray
    funding: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))  # total funding received
    quote_fallbacks: IntArray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))


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
    funding_a: ArrayLike | None = None,
    funding_b: ArrayLike | None = None,
    slippage_model: SlippageModel = "fixed",
    spread_a: ArrayLike | None = None,
    spread_b: ArrayLike | None = None,
) -> SweepResult:
    """``backtest`` for every (entry, exit) of a grid, all at once: one pass over the bars with
    the state of every grid cell in a vector. Each cell equals ``backtest`` with those values
    (funding and slippage model included).

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
    cm = cost_model(pa, pb, fee_bps=fee_bps, slippage_bps=slippage_bps, slippage_model=slippage_model,
                    spread_a=spread_a, spread_b=spread_b)
    legs = funding_legs(funding_a, funding_b, len(pa))
    half = slippage_model == "half_spread"
    funding = np.zeros(g)
    fallbacks = np.zeros(g, dtype=np.int64)
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
        fund = -(pos * (legs[0][t] - be * legs[1][t])) if legs is not None else None
        zt = zz[t]
        if zt == zt:
            flat = pos == 0  # before any exit: no new entry on the bar of an exit
            close = ~flat & (((pos < 0) & (zt <= X)) | ((pos > 0) & (zt >= -X)) | (abs(zt) > stop_))
            bt = bb[t]
            opening = flat & ((zt > E) | (zt < -E)) & (bt == bt)
            if close.any():
                net = net - np.where(close, cm.total(t, be), 0.0)
                pos = np.where(close, 0.0, pos)
                if half:
                    fallbacks += close * cm.missing[t]
            if opening.any():
                side = np.where(zt > E, -1.0, 1.0)
                pos = np.where(opening, side, pos)
                be = np.where(opening, bt, be)
                net = net - np.where(opening, cm.total(t, bt), 0.0)
                trades += opening
                if half:
                    fallbacks += opening * cm.missing[t]
        if fund is not None:
            net = net + fund
            funding += fund
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
                       maxdd.reshape(shape), trades.reshape(shape), funding.reshape(shape),
                       fallbacks.reshape(shape))


TRADE_COLUMNS = ("entry_time", "exit_time", "side", "entry_a", "entry_b", "exit_a", "exit_b",
                 "beta", "pnl", "costs", "funding")


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
             tr.beta, tr.pnl, tr.costs, tr.funding) for tr in result.trades]
    df = pd.DataFrame(rows, columns=list(TRADE_COLUMNS))
    for c in ("entry_time", "exit_time"):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[ns]")
    return df

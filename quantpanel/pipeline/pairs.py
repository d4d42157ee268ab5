"""Live pair analytics: spread, z-score and correlation on every closed bar, O(window) per bar.

``pair_step(state, bars) -> (state, points)`` is pure, like the bar builder. Closed bars of the two
legs are aligned on bar time; each new aligned bar yields one ``PairPoint`` computed from the last
``window`` spreads (with the current static hedge) and the last ``window`` log returns, with the
same per-window functions the batch analytics use. The OLS hedge is refit over the lookback every
``refit_every`` aligned bars, and first as soon as ``window`` aligned bars exist.

``PairRegistry`` keeps one state per requested ``PairSpec`` (pair, timeframe, window, lookback), so
every session can watch its own pair and window while the pipeline stays one per process. Each
aligned bar also advances the pair's Kalman filter (dynamic beta and Kalman z-score), O(1).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from quantpanel.analytics import HedgeResult, ols_hedge, window_correlation, window_zscore
from quantpanel.analytics.kalman import KalmanState, kalman_initial, kalman_step
from quantpanel.errors import AnalyticsInputError
from quantpanel.models import Bar

__all__ = ["PairSpec", "PairPoint", "PairState", "pair_step", "PairRegistry", "MAX_HISTORY"]

#: Aligned bars kept per pair when the lookback is "all loaded" (0).
MAX_HISTORY = 10_000


@dataclass(frozen=True, slots=True)
class PairSpec:
    a: str  # leg A, y
    b: str  # leg B, x
    timeframe: str
    window: int = 60
    lookback: int = 0  # OLS over the last N aligned bars; 0 = all kept
    refit_every: int = 60
    kalman_delta: float = 1e-4
    kalman_ve: float = 1e-3

    def __post_init__(self) -> None:
        if self.a == self.b:
            raise ValueError(f"a pair needs two different symbols, got {self.a} twice")
        if self.window < 2:
            raise ValueError(f"window must be >= 2, got {self.window}")


@dataclass(frozen=True, slots=True)
class PairPoint:
    """The pair's analytics at the close of one aligned bar."""

    time: int
    y: float
    x: float
    spread: float
    zscore: float
    corr: float
    beta: float
    alpha: float
    kalman_beta: float  # the filtered dynamic hedge ratio after this bar
    kalman_z: float  # innovation / sqrt(its variance)


class _Tape:
    """Append-only aligned columns shared by successive states.

    A state sees ``[start, end)``. Appending at the tape's end writes in place (old states keep
    their shorter view, so states stay immutable for all practical purposes); appending from an
    older state copies first (a fork). Capacity is twice what is kept, so compaction is O(1)
    amortised and a step costs O(window), not O(history).
    """

    __slots__ = ("n", "t", "x", "y")

    def __init__(self, capacity: int) -> None:
        self.t = np.empty(capacity, dtype="int64")
        self.y = np.empty(capacity)
        self.x = np.empty(capacity)
        self.n = 0

    def copy_from(self, other: _Tape, start: int, end: int) -> int:
        k = end - start
        self.t[:k], self.y[:k], self.x[:k] = other.t[start:end], other.y[start:end], other.x[start:end]
        self.n = k
        return k


@dataclass(frozen=True)
class PairState:
    spec: PairSpec
    pending: dict[str, dict[int, float]] = field(default_factory=dict)  # one leg's unmatched closes
    tape: _Tape | None = None
    start: int = 0
    end: int = 0
    hedge: HedgeResult | None = None
    since_refit: int = 0
    kalman: KalmanState | None = None

    @property
    def times(self) -> np.ndarray:
        return self.tape.t[self.start:self.end] if self.tape else np.empty(0, dtype="int64")

    @property
    def ys(self) -> np.ndarray:
        return self.tape.y[self.start:self.end] if self.tape else np.empty(0)

    @property
    def xs(self) -> np.ndarray:
        return self.tape.x[self.start:self.end] if self.tape else np.empty(0)


def _keep(spec: PairSpec) -> int:
    return max(spec.lookback or MAX_HISTORY, spec.window + 1)


def _append(state: PairState, t: int, y: float, x: float) -> tuple[_Tape, int, int]:
    keep = _keep(state.spec)
    tape, start, end = state.tape, state.start, state.end
    if tape is None or tape.n != end:  # first append, or appending from an older state
        fresh = _Tape(2 * keep)
        end = fresh.copy_from(tape, start, end) if tape is not None else 0
        tape, start = fresh, 0
    if end == len(tape.t):  # full: keep the newest keep - 1, then append
        fresh = _Tape(len(tape.t))
        end = fresh.copy_from(tape, end - (keep - 1), end)
        tape, start = fresh, 0
    tape.t[end], tape.y[end], tape.x[end] = t, y, x
    end += 1
    tape.n = end
    return tape, max(start, end - keep), end


def _fit(spec: PairSpec, ys: np.ndarray, xs: np.ndarray) -> HedgeResult | None:
    try:
        return ols_hedge(ys, xs, lookback=spec.lookback or None)
    except AnalyticsInputError:  # e.g. leg B flat over the lookback: keep the previous hedge
        return None


def _point(spec: PairSpec, hedge: HedgeResult | None, t: int, ys: np.ndarray, xs: np.ndarray,
           kalman_beta: float, kalman_z: float) -> PairPoint:
    w = spec.window
    z = corr = s = math.nan
    if hedge is not None:
        s_win = ys[-w:] - hedge.beta * xs[-w:] - hedge.alpha
        s = float(s_win[-1])
        if len(s_win) == w:
            z = window_zscore(s_win)
    if len(ys) >= w + 1:
        with np.errstate(invalid="ignore", divide="ignore"):  # a non-positive price gives NaN
            corr = window_correlation(np.diff(np.log(ys[-w - 1:])), np.diff(np.log(xs[-w - 1:])))
    beta = hedge.beta if hedge else math.nan
    alpha = hedge.alpha if hedge else math.nan
    return PairPoint(t, float(ys[-1]), float(xs[-1]), s, z, corr, beta, alpha, kalman_beta, kalman_z)


def pair_step(state: PairState, bars: Iterable[Bar]) -> tuple[PairState, list[PairPoint]]:
    """Fold closed bars (any symbols, any timeframes) into one pair's state."""
    spec = state.spec
    pending = {spec.a: dict(state.pending.get(spec.a, {})), spec.b: dict(state.pending.get(spec.b, {}))}
    new: list[tuple[int, float, float]] = []
    last_t = int(state.tape.t[state.end - 1]) if state.tape is not None and state.end > state.start else -1
    for bar in bars:
        if bar.timeframe != spec.timeframe or bar.symbol not in pending or not bar.closed:
            continue
        if bar.time <= last_t:
            continue  # already aligned (e.g. warm-up overlap)
        other = spec.b if bar.symbol == spec.a else spec.a
        match = pending[other].pop(bar.time, None)
        if match is None:
            pending[bar.symbol][bar.time] = bar.close
            continue
        y, x = (bar.close, match) if bar.symbol == spec.a else (match, bar.close)
        new.append((bar.time, y, x))
    if not new:
        return (replace(state, pending=pending) if pending != state.pending else state), []
    new.sort()
    # a leg's bars that the other leg has passed will never match (it has no such bar): drop them
    newest = new[-1][0]
    for sym in pending:
        pending[sym] = {t: c for t, c in pending[sym].items() if t > newest}
    st = replace(state, pending=pending)
    points: list[PairPoint] = []
    for t, y, x in new:
        if st.tape is not None and st.end > st.start and t <= st.tape.t[st.end - 1]:
            continue
        tape, start, end = _append(st, t, y, x)
        kal, kp = kalman_step(st.kalman or kalman_initial(delta=spec.kalman_delta, ve=spec.kalman_ve), y, x)
        hedge, since = st.hedge, st.since_refit + 1
        ya, xa = tape.y[start:end], tape.x[start:end]
        if (hedge is None and len(ya) >= spec.window) or (hedge is not None and since >= spec.refit_every):
            hedge = _fit(spec, ya, xa) or hedge
            since = 0
        st = PairState(spec, pending, tape, start, end, hedge, since, kal)
        points.append(_point(spec, hedge, t, ya, xa, kp.beta, kp.zscore))
    return st, points


class PairRegistry:
    """The live pair states of a process, created on demand, least recently requested evicted."""

    def __init__(self, *, max_specs: int = 64) -> None:
        self.max_specs = max_specs
        self._states: OrderedDict[PairSpec, PairState] = OrderedDict()

    def watch(self, spec: PairSpec, history: Sequence[Bar] = ()) -> list[PairPoint]:
        """Start computing ``spec`` live (warmed up on ``history``); returns the warm-up points."""
        if spec in self._states:
            self._states.move_to_end(spec)
            return []
        state, points = pair_step(PairState(spec), sorted(history, key=lambda b: b.time))
        self._states[spec] = state
        while len(self._states) > self.max_specs:
            self._states.popitem(last=False)
        return points

    def state(self, spec: PairSpec) -> PairState | None:
        return self._states.get(spec)

    def refit(self, spec: PairSpec) -> None:
        """Refit the hedge now (the user changed the lookback, or asked)."""
        st = self._states.get(spec)
        if st is not None and len(st.ys) >= 3:
            hedge = _fit(spec, st.ys, st.xs)
            self._states[spec] = replace(st, hedge=hedge or st.hedge, since_refit=0)

    def update(self, bars: Sequence[Bar]) -> dict[PairSpec, list[PairPoint]]:
        """Fold newly closed bars into every watched pair; the new points per spec."""
        out: dict[PairSpec, list[PairPoint]] = {}
        for spec, st in list(self._states.items()):
            st2, points = pair_step(st, bars)
            self._states[spec] = st2
            if points:
                out[spec] = points
        return out

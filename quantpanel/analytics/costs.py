"""Trading costs of the backtest (docs/ANALYTICS.md "Mean-reversion backtest", "Quoted spread").

Every entry and exit trades +1 A and ``beta`` B. Fees are ``fee_bps`` of each leg's notional. Slippage
is either ``slippage_bps`` of it (``fixed``) or, with ``half_spread``, half the leg's quoted spread
at that bar times its quantity (1 for A, ``|beta|`` for B); a leg-bar without a quote (NaN spread)
falls back to the fixed bps and is counted. ``backtest`` and ``sweep`` price trades here, so their
costs cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from quantpanel.analytics._inputs import ArrayLike, FloatArray
from quantpanel.errors import AnalyticsInputError

__all__ = ["SlippageModel", "SLIPPAGE_MODELS", "CostModel", "cost_model"]

SlippageModel: TypeAlias = Literal["fixed", "half_spread"]
SLIPPAGE_MODELS: tuple[SlippageModel, ...] = ("fixed", "half_spread")
Index: TypeAlias = int | npt.NDArray[np.int64]
Beta: TypeAlias = float | FloatArray


@dataclass(frozen=True, slots=True)
class CostModel:
    """Prices trading one unit of the spread (+1 A, ``beta`` B) at bar ``t``; ``t`` and ``beta``
    broadcast (many trades at once, or one bar for every sweep cell)."""

    a: FloatArray
    b: FloatArray
    fee_bps: float
    slippage_bps: float
    model: SlippageModel
    unit_a: FloatArray  # half_spread: slippage of one unit of A at each bar (unused when fixed)
    unit_b: FloatArray
    missing: npt.NDArray[np.int64]  # half_spread: legs of each bar without a quote (0, 1 or 2)

    def total(self, t: Index, beta: Beta) -> FloatArray:
        """Fees and slippage of the trade."""
        notional = np.abs(self.a[t]) + np.abs(beta * self.b[t])
        if self.model == "fixed":  # one rate: the same arithmetic as before half_spread existed
            return np.asarray((self.fee_bps + self.slippage_bps) / 1e4 * notional, dtype=np.float64)
        return np.asarray(self.fee_bps / 1e4 * notional + self._slip(t, beta), dtype=np.float64)

    def slippage(self, t: Index, beta: Beta) -> FloatArray:
        """The slippage part of ``total``."""
        if self.model == "fixed":
            notional = np.abs(self.a[t]) + np.abs(beta * self.b[t])
            return np.asarray(self.slippage_bps / 1e4 * notional, dtype=np.float64)
        return np.asarray(self._slip(t, beta), dtype=np.float64)

    def _slip(self, t: Index, beta: Beta) -> FloatArray:
        return np.asarray(self.unit_a[t] + np.abs(beta) * self.unit_b[t], dtype=np.float64)


def _spread(s: ArrayLike | None, name: str, n: int) -> FloatArray:
    if s is None:
        raise AnalyticsInputError(f"slippage_model='half_spread' needs {name} (ask - bid per bar, NaN = no quote)")
    arr = np.asarray(s, dtype=np.float64)
    if arr.shape != (n,):
        raise AnalyticsInputError(f"{name} must have one value per bar ({n}), got shape {arr.shape}")
    if np.isinf(arr).any() or (arr < 0).any():
        i = int(np.argmax(np.isinf(arr) | (arr < 0)))
        raise AnalyticsInputError(f"{name} must be ask - bid >= 0 or NaN, got {float(arr[i])} at position {i}")
    return arr


def cost_model(a: FloatArray, b: FloatArray, *, fee_bps: float, slippage_bps: float,
               slippage_model: str = "fixed", spread_a: ArrayLike | None = None,
               spread_b: ArrayLike | None = None) -> CostModel:
    """The costs of trading the validated closes ``a``, ``b``; spreads are ``ask - bid`` per bar.

    Below: fee 1 bp of 200 notional (0.02), half of A's 0.1 spread (0.05), B unquoted so
    2 bps of 50 for each of its 2 units (0.02).

    Examples
    --------
    >>> import numpy as np
    >>> c = cost_model(np.array([100.0]), np.array([50.0]), fee_bps=1, slippage_bps=2,
    ...                slippage_model="half_spread", spread_a=[0.1], spread_b=[float("nan")])
    >>> round(float(c.total(0, 2.0)), 9), round(float(c.slippage(0, 2.0)), 9), int(c.missing[0])
    (0.09, 0.07, 1)
    """
    n = len(a)
    if slippage_model == "fixed":
        if spread_a is not None or spread_b is not None:
            raise AnalyticsInputError("spread_a and spread_b are used only with slippage_model='half_spread'")
        none = np.zeros(0)
        return CostModel(a, b, fee_bps, slippage_bps, "fixed", none, none, np.zeros(0, dtype=np.int64))
    if slippage_model != "half_spread":
        raise AnalyticsInputError(f"slippage_model must be one of {', '.join(SLIPPAGE_MODELS)}, got {slippage_model!r}")
    sa, sb = _spread(spread_a, "spread_a", n), _spread(spread_b, "spread_b", n)
    na, nb = np.isnan(sa), np.isnan(sb)
    rate = slippage_bps / 1e4
    unit_a = np.where(na, rate * np.abs(a), sa / 2)
    unit_b = np.where(nb, rate * np.abs(b), sb / 2)
    return CostModel(a, b, fee_bps, slippage_bps, "half_spread", unit_a, unit_b,
                     na.astype(np.int64) + nb.astype(np.int64))

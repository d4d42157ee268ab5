"""Alert rules: what to watch, when to fire, when to re-arm. Validated; errors name the field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from quantpanel.errors import QuantPanelError

__all__ = ["Rule", "RuleError", "parse_rule", "inactive_reason", "PAIR_METRICS", "SYMBOL_METRICS", "FEED_METRICS",
           "MARKET_METRICS", "METRICS", "OPERATORS"]

PAIR_METRICS = ("zscore", "kalman_z", "spread", "corr")  # of a pair, on its closed bars
SYMBOL_METRICS = ("price", "price_change_pct")  # of a symbol, on its closed bars
FEED_METRICS = ("ticks_per_s", "feed_lag_s")  # of the feed, on health ticks (about 1 per second)
#: Of a symbol, on its futures-native events as they arrive: the predicted funding rate (each
#: mark update), the quoted spread in bps (each quote), each liquidation's notional, open
#: interest's change in % since the previous poll, and the basis against its spot twin in bps.
MARKET_METRICS = ("funding_rate", "quoted_spread_bps", "liquidation_notional", "open_interest_change_pct",
                  "basis_bps")
METRICS = PAIR_METRICS + SYMBOL_METRICS + FEED_METRICS + MARKET_METRICS
OPERATORS = (">", "<", "crosses_above", "crosses_below", "outside")


class RuleError(QuantPanelError, ValueError):
    """A rule that cannot be parsed; the message names the field."""


class Rule(BaseModel):
    """One alert rule.

    ``outside`` fires when the value leaves the band [``lower``, ``threshold``] (``lower``
    defaults to -threshold, so ``outside 2`` on a z-score is |z| > 2). ``for_bars``: the condition
    must hold that many consecutive evaluations. Hysteresis: after firing, the rule re-arms only
    once the value is back past ``reset`` (and ``reset_lower`` for bands); by default the threshold
    itself. ``cooldown_s``: no second alert of the rule within that many seconds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int | None = None
    name: str = Field(min_length=1, max_length=120)
    metric: Literal["zscore", "kalman_z", "spread", "corr", "price", "price_change_pct",
                    "ticks_per_s", "feed_lag_s", "funding_rate", "quoted_spread_bps", "liquidation_notional",
                    "open_interest_change_pct", "basis_bps"]
    pair: tuple[str, str] | None = None
    symbol: str | None = None
    timeframe: Literal["1s", "1m", "5m", "15m", "1h", "4h", "1d"] = "1m"  # what the bar builder makes
    op: Literal[">", "<", "crosses_above", "crosses_below", "outside"]
    threshold: float
    lower: float | None = None
    reset: float | None = None
    reset_lower: float | None = None
    for_bars: int = Field(default=1, ge=1, le=10_000)
    cooldown_s: float = Field(default=0.0, ge=0)
    window: int | None = Field(default=None, ge=2, le=100_000)  # pair metrics: z / corr window
    change_bars: int = Field(default=1, ge=1, le=100_000)  # price_change_pct: over N bars
    muted: bool = False

    @field_validator("threshold", "lower", "reset", "reset_lower")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @field_validator("pair")
    @classmethod
    def _pair(cls, v: tuple[str, str] | None) -> tuple[str, str] | None:
        if v is None:
            return v
        a, b = (s.strip().upper() for s in v)
        if not a or not b or a == b:
            raise ValueError("must be two different symbols")
        return (a, b)

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, v: str | None) -> str | None:
        return v.strip().upper() if v else None

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.metric in PAIR_METRICS and self.pair is None:
            raise ValueError(f"pair: metric {self.metric} needs a pair [A, B]")
        if self.metric in SYMBOL_METRICS + MARKET_METRICS and not self.symbol:
            raise ValueError(f"symbol: metric {self.metric} needs a symbol")
        if self.op == "outside" and self.band[0] >= self.band[1]:
            raise ValueError(f"lower: the band [{self.band[0]}, {self.threshold}] is empty")
        if self.op.startswith("crosses") and self.for_bars != 1:
            raise ValueError("for_bars: a crossing happens on one bar; use > or < with for_bars")
        return self

    @property
    def band(self) -> tuple[float, float]:
        return (-self.threshold if self.lower is None else self.lower, self.threshold)

    @property
    def reset_band(self) -> tuple[float, float]:
        """Where an ``outside`` rule re-arms: back inside [lower reset, upper reset]."""
        hi = self.threshold if self.reset is None else self.reset
        if self.reset_lower is not None:
            return (self.reset_lower, hi)
        return (-hi if self.lower is None else self.lower, hi)

    @property
    def subject(self) -> str:
        """What the rule watches, for people: ``ETHUSDT/BTCUSDT``, ``BTCUSDT`` or ``feed``."""
        if self.pair:
            return f"{self.pair[0]}/{self.pair[1]}"
        return self.symbol or "feed"

    def describe(self) -> str:
        lo, hi = self.band
        cond = f"outside [{lo:g}, {hi:g}]" if self.op == "outside" else f"{self.op} {self.threshold:g}"
        tf = "" if self.metric in FEED_METRICS + MARKET_METRICS else f" {self.timeframe}"
        return f"{self.metric} {self.subject}{tf} {cond}"


def inactive_reason(rule: Rule, symbols: Sequence[str], timeframes: Sequence[str]) -> str | None:
    """Why ``rule`` cannot fire on a feed of ``symbols`` building ``timeframes``, else None.

    Such a rule is kept (stored, listed, editable) but not evaluated: a ``--symbols`` override or
    a config edit must never make a stored rule fatal, and it is active again once they come back.
    """
    missing = [s for s in (*(rule.pair or ()), rule.symbol) if s and s not in symbols]
    if missing:
        return f"{', '.join(missing)} not ingested (symbols: {', '.join(symbols)})"
    if rule.metric not in FEED_METRICS + MARKET_METRICS and rule.timeframe not in timeframes:
        return f"timeframe {rule.timeframe} not built (timeframes: {', '.join(timeframes)})"
    return None


def parse_rule(data: dict[str, Any], *, where: str = "rule") -> Rule:
    """A Rule from a mapping (config, UI form, database row); errors name ``where`` and the field."""
    try:
        return Rule.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            # model-level checks put the field first in their message: "pair: ..."
            problems.append(f"{where}.{loc}: {msg}" if loc else f"{where}.{msg}")
        raise RuleError("; ".join(problems)) from None

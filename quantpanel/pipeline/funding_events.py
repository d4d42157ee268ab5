"""Funding events read off the markPrice stream (ANALYTICS.md "Perpetual-futures funding").

Binance pushes no "funding happened" message; each ``markPriceUpdate`` carries the predicted rate
``r`` and the next funding time ``T``. When ``T`` of a symbol advances past a previous value ``F``,
the funding at ``F`` has been paid, and this tracker emits ``FundingEvent(symbol, F, rate, mark)``:

- ``rate``: the rate of the last update that carried ``next_funding == F`` (the rate in force at F),
  if that update came at most ``RATE_FRESH_MS`` before F. An older one (the connection was down
  across F) is only a stale prediction: no event is emitted (``unsure`` counts them) and the REST
  history fetched after the reconnect brings the settled rate;
- ``mark``: the mark of the last update with ``time <= F`` (the update at F itself, which already
  names the next funding, included), else NaN: never a guess from after F.

The first update of a symbol only sets ``F`` (nothing before it is known). An update whose
``next_funding`` is below the current ``F`` is stale (a late frame): counted and ignored.
Pure: no I/O; storing is idempotent, so a restart that re-emits an event stores it once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from quantpanel.models import FundingEvent, MarkPrice

__all__ = ["FundingTracker", "RATE_FRESH_MS"]

RATE_FRESH_MS = 3_000  # markPrice@1s pushes every second, markPrice every 3 s


@dataclass(slots=True)
class _Next:
    """What is known of a symbol's upcoming funding at ``time``."""

    time: int  # F
    rate: float  # the rate of the last update carrying F
    mark: float  # the mark of the last update at or before F, NaN until one is seen
    seen: int  # when that last update carrying F was sent (its E)


class FundingTracker:
    """Funding events from ``markPriceUpdate``s, per symbol; ``stale`` counts ignored updates,
    ``unsure`` the fundings whose rate was not seen fresh (left to the REST history)."""

    def __init__(self) -> None:
        self._next: dict[str, _Next] = {}
        self.stale = 0
        self.unsure = 0

    def add(self, marks: Iterable[MarkPrice]) -> list[FundingEvent]:
        """Take updates (in arrival order); return the funding events they revealed, oldest first."""
        events: list[FundingEvent] = []
        for m in marks:
            nxt = self._next.get(m.symbol)
            if nxt is None or m.next_funding > nxt.time:
                if nxt is not None:
                    if nxt.time - nxt.seen > RATE_FRESH_MS:
                        self.unsure += 1
                    else:
                        mark = m.mark if m.time <= nxt.time else nxt.mark  # the update at F itself
                        events.append(FundingEvent(m.symbol, nxt.time, nxt.rate, mark))
                self._next[m.symbol] = _Next(m.next_funding, m.funding_rate,
                                             m.mark if m.time <= m.next_funding else math.nan, m.time)
            elif m.next_funding == nxt.time:
                nxt.rate, nxt.seen = m.funding_rate, m.time
                if m.time <= nxt.time:
                    nxt.mark = m.mark
            else:
                self.stale += 1
        return events

    def pending(self, symbol: str) -> FundingEvent | None:
        """The next funding of ``symbol`` as known now (predicted rate; mark so far), or None."""
        nxt = self._next.get(symbol)
        return None if nxt is None else FundingEvent(symbol, nxt.time, nxt.rate, nxt.mark)

"""The exchange's ``GET /fapi/v1/fundingRate`` and ``GET /fapi/v1/openInterest``, answered from what
the timeline has released (SIMULATED funding and open interest, see ``simulated``), in Binance's
shapes and error codes, with the weight header and injected failures every REST endpoint shares."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

from websockets.http11 import Response

from quantpanel.feeds.binance_market import (
    FUNDING_RATE_DEFAULT_LIMIT,
    FUNDING_RATE_MAX_LIMIT,
    FUNDING_RATE_WEIGHT,
    OPEN_INTEREST_WEIGHT,
    funding_rate_row,
    open_interest_body,
)
from quantpanel.feeds.exchange.rest import RestBudget
from quantpanel.feeds.exchange.schedule import MarketEvents, pass_window
from quantpanel.feeds.exchange.timeline import Pass
from quantpanel.feeds.recording import Recording

__all__ = ["MarketEndpoints"]

_NO_SYMBOL = {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."}
_BAD_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}


def _illegal(name: str) -> dict[str, object]:
    return {"code": -1100, "msg": f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."}


class MarketEndpoints:
    """fundingRate and openInterest over ``served`` (the timeline's passes, read as they grow);
    ``events`` gives a recording's market events (its simulation included), ``current`` the
    recording being replayed (whose symbols are the valid ones)."""

    def __init__(self, served: list[Pass], events: Callable[[Recording], MarketEvents],
                 current: Callable[[], Recording], budget: RestBudget) -> None:
        self._served = served
        self._events = events
        self._current = current
        self._budget = budget

    def funding_rate(self, query: str) -> Response:
        """``?symbol=&startTime=&endTime=&limit=``: funding events released so far, ascending; the
        most recent ``limit`` without ``startTime``, else the first ``limit`` from it (both inclusive)."""
        failed = self._budget.charge(FUNDING_RATE_WEIGHT)
        if failed is not None:
            return failed
        q = parse_qs(query)
        symbol = q["symbol"][0].upper() if "symbol" in q else None
        bounds: dict[str, int | None] = {}
        for name in ("startTime", "endTime", "limit"):
            raw = q.get(name, [None])[0]
            if raw is not None and not (raw.isdigit() and len(raw) <= 20):
                return self._budget.json(400, _illegal(name))
            bounds[name] = int(raw) if raw is not None else None
        if symbol is not None and not self._known(symbol):
            return self._budget.json(400, _BAD_SYMBOL)
        start, end = bounds["startTime"], bounds["endTime"]
        limit = min(bounds["limit"] or FUNDING_RATE_DEFAULT_LIMIT, FUNDING_RATE_MAX_LIMIT)
        rows: list[dict[str, object]] = []
        for ps in self._served:
            window, sim = pass_window(ps), self._events(ps.recording).simulated
            if window is None or sim is None:
                continue
            for f in sim.funding:
                t = f.time + ps.dt
                if (window[0] <= f.time <= window[1] and (symbol is None or f.symbol == symbol)
                        and (start is None or t >= start) and (end is None or t <= end)):
                    rows.append(funding_rate_row(f, ps.dt))
        return self._budget.json(200, rows[:limit] if start is not None else rows[-limit:])

    def open_interest(self, query: str) -> Response:
        """``?symbol=``: the simulated open interest at the current replay time."""
        failed = self._budget.charge(OPEN_INTEREST_WEIGHT)
        if failed is not None:
            return failed
        q = parse_qs(query)
        if not q.get("symbol", [""])[0]:
            return self._budget.json(400, _NO_SYMBOL)
        symbol = q["symbol"][0].upper()
        if not self._known(symbol):
            return self._budget.json(400, _BAD_SYMBOL)
        # the replay clock: the last trade passed (before the replay starts, its first trade)
        ps = next((p for p in reversed(self._served) if p.end > p.start), None)
        window = pass_window(ps) if ps is not None else None
        recording = ps.recording if ps is not None else self._current()
        now = window[1] if window is not None else recording.trades[0].time
        sim = self._events(recording).simulated
        found = sim.open_interest_at(symbol, now) if sim is not None else None
        if found is None:
            return self._budget.json(503, {"code": -1001, "msg": "Open interest is not simulated on this exchange."})
        return self._budget.json(200, open_interest_body(symbol, found[1], now + (ps.dt if ps is not None else 0)))

    def _known(self, symbol: str) -> bool:
        return symbol in self._current().symbols

"""The exchange's REST endpoint, ``GET /fapi/v1/aggTrades``, so the client's backfill fills gaps
from the same server that made them: it serves what the timeline released, in Binance's format,
ids and times as they were streamed, with Binance's weight header and (injected) failures.

``RestBudget`` is the per-IP side every endpoint shares (``market_rest`` too): one used-weight
count per UTC minute in ``X-MBX-USED-WEIGHT-1M``, one request count for ``rest_fail_every``.
"""

from __future__ import annotations

import time
from bisect import bisect_left

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Response

from quantpanel.feeds.binance_futures import (
    AGG_TRADES_WEIGHT,
    USED_WEIGHT_HEADER,
    agg_trade_row,
    agg_trades_query,
)
from quantpanel.feeds.exchange.faults import Faults
from quantpanel.feeds.exchange.stats import ExchangeStats
from quantpanel.feeds.exchange.timeline import Pass
from quantpanel.feeds.recording import Recording

__all__ = ["AggTradesEndpoint", "RestBudget"]

_REASONS = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 503: "Service Unavailable"}


class RestBudget:
    """Request counting, used weight and injected failures, shared by every REST endpoint."""

    def __init__(self, faults: Faults, stats: ExchangeStats) -> None:
        self._faults = faults
        self._stats = stats
        self._weight_minute, self._weight_used = 0, 0

    def charge(self, weight: int) -> Response | None:
        """Count one request of ``weight``; the injected 429 / 503 when one is due, else None."""
        st = self._stats
        st.rest_requests += 1
        self._roll()
        self._weight_used += weight
        n = self._faults.rest_fail_every
        if n and st.rest_requests % n == 0:
            st.rest_failures += 1
            if (st.rest_requests // n) % 2:
                return self.json(429, {"code": -1003, "msg": "Too many requests (injected)."}, {"Retry-After": "1"})
            return self.json(503, {"code": -1001, "msg": "Service unavailable (injected)."})
        return None

    def _roll(self) -> None:
        minute = int(time.time() // 60)  # Binance's weight window: the current UTC minute
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0

    def json(self, status: int, body: object, extra: dict[str, str] | None = None) -> Response:
        """A JSON answer with Binance's used-weight header."""
        data = orjson.dumps(body)
        self._roll()
        headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(data)),
                           USED_WEIGHT_HEADER: str(self._weight_used), **(extra or {})})
        return Response(status, _REASONS[status], headers, data)


class AggTradesEndpoint:
    """Answers aggTrades requests from ``served``, the timeline's passes (read as they grow)."""

    def __init__(self, served: list[Pass], budget: RestBudget) -> None:
        self._served = served
        self._budget = budget
        self._by_symbol: dict[int, dict[str, tuple[list[int], list[int]]]] = {}

    def answer(self, query: str) -> Response:
        """The response to ``?symbol=&fromId=&limit=``: trades with ``a >= fromId``, oldest first."""
        failed = self._budget.charge(AGG_TRADES_WEIGHT)
        if failed is not None:
            return failed
        try:
            q = agg_trades_query(query)
        except ValueError:
            return self._budget.json(400, {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, "
                                                                 "was empty/null, or malformed."})
        rows: list[dict[str, object]] = []
        if q.from_id is None:
            return self._budget.json(200, rows)
        for ps in self._served:
            ids, idx = self._index(ps.recording).get(q.symbol, ([], []))
            lo, hi = bisect_left(idx, ps.start), bisect_left(idx, ps.end)
            da = ps.da.get(q.symbol, 0)
            k = max(lo, bisect_left(ids, q.from_id - da, lo, hi))
            for j in range(k, hi):
                rows.append(agg_trade_row(ps.recording.trades[idx[j]], ps.dt, da))
                if len(rows) >= q.limit:
                    return self._budget.json(200, rows)
        return self._budget.json(200, rows)

    def _index(self, recording: Recording) -> dict[str, tuple[list[int], list[int]]]:
        """Per symbol: its ids and their trade indices, ascending (ids rise with time per symbol)."""
        key = id(recording)
        if key not in self._by_symbol:
            out: dict[str, tuple[list[int], list[int]]] = {}
            for i, t in enumerate(recording.trades):
                ids, idx = out.setdefault(t.symbol, ([], []))
                ids.append(t.agg_id)
                idx.append(i)
            self._by_symbol[key] = out
        return self._by_symbol[key]

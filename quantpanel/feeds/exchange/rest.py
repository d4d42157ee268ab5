"""The exchange's REST endpoint, ``GET /fapi/v1/aggTrades``, so the client's backfill fills gaps
from the same server that made them: it serves what the timeline released, in Binance's format,
ids and times as they were streamed, with Binance's weight header and (injected) failures."""

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

__all__ = ["AggTradesEndpoint"]

_REASONS = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 503: "Service Unavailable"}


class AggTradesEndpoint:
    """Answers aggTrades requests from ``served``, the timeline's passes (read as they grow)."""

    def __init__(self, served: list[Pass], faults: Faults, stats: ExchangeStats) -> None:
        self._served = served
        self._faults = faults
        self._stats = stats
        self._by_symbol: dict[int, dict[str, tuple[list[int], list[int]]]] = {}
        self._weight_minute, self._weight_used = 0, 0

    def answer(self, query: str) -> Response:
        """The response to ``?symbol=&fromId=&limit=``: trades with ``a >= fromId``, oldest first."""
        st = self._stats
        st.rest_requests += 1
        self._weight_used += AGG_TRADES_WEIGHT
        n = self._faults.rest_fail_every
        if n and st.rest_requests % n == 0:
            st.rest_failures += 1
            if (st.rest_requests // n) % 2:
                return self._json(429, {"code": -1003, "msg": "Too many requests (injected)."}, {"Retry-After": "1"})
            return self._json(503, {"code": -1001, "msg": "Service unavailable (injected)."})
        try:
            q = agg_trades_query(query)
        except ValueError:
            return self._json(400, {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, "
                                                          "was empty/null, or malformed."})
        rows: list[dict[str, object]] = []
        if q.from_id is None:
            return self._json(200, rows)
        for ps in self._served:
            ids, idx = self._index(ps.recording).get(q.symbol, ([], []))
            lo, hi = bisect_left(idx, ps.start), bisect_left(idx, ps.end)
            da = ps.da.get(q.symbol, 0)
            k = max(lo, bisect_left(ids, q.from_id - da, lo, hi))
            for j in range(k, hi):
                rows.append(agg_trade_row(ps.recording.trades[idx[j]], ps.dt, da))
                if len(rows) >= q.limit:
                    return self._json(200, rows)
        return self._json(200, rows)

    def _json(self, status: int, body: object, extra: dict[str, str] | None = None) -> Response:
        data = orjson.dumps(body)
        minute = int(time.time() // 60)  # Binance's weight window: the current UTC minute
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0
        headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(data)),
                           USED_WEIGHT_HEADER: str(self._weight_used), **(extra or {})})
        return Response(status, _REASONS[status], headers, data)

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

"""What the streams do not carry, fetched over REST on the backfill's weight budget: open interest
(``GET /fapi/v1/openInterest`` every ``feed.open_interest_s``) and the funding events missed while
nobody listened (``GET /fapi/v1/fundingRate`` on start and after every reconnect)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from quantpanel.errors import FrameError
from quantpanel.feeds.rest import RestClient
from quantpanel.pipeline.market import MarketData

__all__ = ["MarketPolls", "FUNDING_LOOKBACK_MS"]

log = logging.getLogger(__name__)
#: With no funding stored for a symbol, history starts this far back (Binance answers at most
#: 1000 rows; 30 days at 8 h intervals is 90).
FUNDING_LOOKBACK_MS = 30 * 86_400_000


class MarketPolls:
    """REST polls of ``symbols`` into ``market``; ``last_funding`` is what the store holds (ms)."""

    def __init__(self, rest: RestClient, symbols: Iterable[str], market: MarketData,
                 last_funding: dict[str, int], *, open_interest_s: float) -> None:
        self.rest = rest
        self.symbols = list(symbols)
        self.market = market
        self.last_funding = dict(last_funding)
        self.open_interest_s = open_interest_s
        self.errors = 0
        self.last_error = ""
        self._funding_due = asyncio.Event()
        self._funding_due.set()  # on start

    def start(self) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._funding_loop(), name="funding-history")]
        if self.open_interest_s > 0:
            tasks.append(loop.create_task(self._open_interest_loop(), name="open-interest"))
        return tasks

    def fetch_funding_soon(self) -> None:
        """After a reconnect: fetch the funding events the outage may have missed."""
        self._funding_due.set()

    def _failed(self, what: str, exc: Exception) -> None:
        self.errors += 1
        self.last_error = f"{what}: {exc}"
        log.warning("%s", self.last_error)

    async def fetch_funding(self) -> int:
        """Funding events after the last one known, per symbol; returns how many arrived."""
        now = int(time.time() * 1000)
        n = 0
        for sym in list(self.symbols):
            start = self.last_funding.get(sym, 0) + 1 if self.last_funding.get(sym) else now - FUNDING_LOOKBACK_MS
            try:
                events = await self.rest.funding_rates(sym, start, now)
            except (ConnectionError, ValueError, FrameError) as exc:
                self._failed(f"funding history of {sym}", exc)
                continue
            if events:
                self.last_funding[sym] = max(e.time for e in events)
                self.market.on_funding_history(events)
                n += len(events)
        return n

    async def poll_open_interest(self) -> None:
        rows = []
        for sym in list(self.symbols):
            try:
                rows.append(await self.rest.open_interest(sym))
            except (ConnectionError, ValueError, FrameError) as exc:
                self._failed(f"open interest of {sym}", exc)
        self.market.on_open_interest(rows)

    async def _funding_loop(self) -> None:
        while True:
            await self._funding_due.wait()
            self._funding_due.clear()
            await self.fetch_funding()

    async def _open_interest_loop(self) -> None:
        while True:
            await self.poll_open_interest()
            await asyncio.sleep(self.open_interest_s)

"""Binance USD-M REST: ``GET /fapi/v1/aggTrades`` for backfilling gaps (paging by ``fromId``),
``/fapi/v1/fundingRate`` for missed funding events and ``/fapi/v1/openInterest``. One client per
run, so every request counts against one weight budget (``X-MBX-USED-WEIGHT-1M``); it honours
429/418 ``Retry-After`` and retries 5xx and network errors with capped exponential backoff. The
base URL is config, so the local exchange (or any Binance-compatible server) answers in tests.
Paths, weights and formats are ``binance_futures``'s and ``binance_market``'s."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from quantpanel.feeds.binance_futures import (
    AGG_TRADES_MAX_LIMIT,
    AGG_TRADES_WEIGHT,
    USED_WEIGHT_HEADER,
    WEIGHT_LIMIT_1M,
    agg_trades_url,
    parse_agg_trades,
)
from quantpanel.feeds.binance_market import (
    FUNDING_RATE_WEIGHT,
    OPEN_INTEREST_WEIGHT,
    funding_rate_url,
    open_interest_url,
    parse_funding_rates,
    parse_open_interest,
)
from quantpanel.models import FundingEvent, OpenInterest, Tick

__all__ = ["RestClient", "RestStats"]

log = logging.getLogger(__name__)
_USED_WEIGHT = USED_WEIGHT_HEADER.lower()  # headers are looked up lower-cased


@dataclass
class RestStats:
    requests: int = 0
    trades: int = 0
    retries: int = 0
    throttled: int = 0  # 429/418 answers, and waits for the weight budget
    used_weight: int = 0  # the server's X-MBX-USED-WEIGHT-1M after the last request
    last_error: str = ""


class RestClient:
    """Blocking HTTP in a worker thread (a few requests per gap); async API for the event loop."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, retries: int = 5,
                 backoff_initial_s: float = 0.2, backoff_max_s: float = 10.0,
                 weight_limit_1m: int = WEIGHT_LIMIT_1M) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout_s
        self.retries = retries
        self.backoff_initial, self.backoff_max = backoff_initial_s, backoff_max_s
        self.weight_budget = weight_limit_1m * 4 // 5  # leave a fifth for anything else on the IP
        self.stats = RestStats()

    async def agg_trades(self, symbol: str, from_id: int, limit: int = AGG_TRADES_MAX_LIMIT) -> list[Tick]:
        """Up to ``limit`` (≤ 1000) trades of ``symbol`` with ``a >= from_id``, oldest first."""
        body = await self._fetch(agg_trades_url(self.base_url, symbol, from_id, limit), AGG_TRADES_WEIGHT)
        ticks = parse_agg_trades(symbol, body)
        self.stats.trades += len(ticks)
        return ticks

    async def funding_rates(self, symbol: str, start_ms: int, end_ms: int) -> list[FundingEvent]:
        """Funding events of ``symbol`` with ``start_ms <= time <= end_ms``, oldest first (paged)."""
        out: list[FundingEvent] = []
        while True:
            body = await self._fetch(funding_rate_url(self.base_url, symbol, start_ms, end_ms), FUNDING_RATE_WEIGHT)
            page = [e for e in parse_funding_rates(body) if e.symbol == symbol]
            out.extend(page)
            if len(page) < 1000 or page[-1].time >= end_ms:  # a full page: there may be more
                return out
            start_ms = page[-1].time + 1

    async def open_interest(self, symbol: str) -> OpenInterest:
        return parse_open_interest(await self._fetch(open_interest_url(self.base_url, symbol), OPEN_INTEREST_WEIGHT))

    async def _fetch(self, url: str, weight: int) -> bytes:
        """The body of a 200 answer to ``GET url`` (a request of ``weight``), within the budget."""
        delay = self.backoff_initial
        for attempt in range(self.retries + 1):
            if self.stats.used_weight + weight > self.weight_budget:
                self.stats.throttled += 1
                wait = 60.0 - time.time() % 60 + 0.1  # the weight window resets each minute
                log.warning("REST weight %d near the limit: waiting %.1f s", self.stats.used_weight, wait)
                await asyncio.sleep(wait)
                self.stats.used_weight = 0
            try:
                status, headers, body = await asyncio.to_thread(self._get, url)
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                status, headers, body = 0, {}, str(exc).encode()
            self.stats.requests += 1
            if _USED_WEIGHT in headers:
                self.stats.used_weight = int(headers[_USED_WEIGHT])
            if status == 200:
                return body
            self.stats.last_error = f"GET {url}: {status or 'network error'} {body[:200].decode(errors='replace')}"
            if status in (429, 418):
                self.stats.throttled += 1
                delay = max(delay, float(headers.get("retry-after", delay)))
            elif status and status < 500:
                raise ConnectionError(self.stats.last_error)  # a request error: retrying won't help
            if attempt < self.retries:
                self.stats.retries += 1
                log.warning("%s; retry in %.2f s", self.stats.last_error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
        raise ConnectionError(f"{self.stats.last_error} (after {self.retries} retries)")

    def _get(self, url: str) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}, exc.read()

"""Where everything lives in Redis: one namespace (``broker.prefix``), one stream per series."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["Keys", "connect", "BROKER_ERRORS"]

#: What a broker that went away raises (the client reconnects on the next command).
BROKER_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


@dataclass(frozen=True)
class Keys:
    """Key names under ``prefix``. Streams hold versioned messages (``pipeline.codec``) in field ``d``."""

    prefix: str = "qp"

    def bars(self, symbol: str, timeframe: str) -> str:
        """Closed bars of one series, one entry per bar, oldest first."""
        return f"{self.prefix}:bars:{symbol}:{timeframe}"

    @property
    def forming(self) -> str:
        """Forming bars (coalesced: the newest of each series per flush)."""
        return f"{self.prefix}:forming"

    @property
    def rebuilt(self) -> str:
        """Stored bars a late backfill rebuilt (readers replace their copies)."""
        return f"{self.prefix}:rebuilt"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}:alerts"

    @property
    def market(self) -> str:
        """Marks and liquidations (the Market charts' series) and the views they changed."""
        return f"{self.prefix}:market"

    @property
    def status(self) -> str:
        """The ingest's heartbeat: status, symbols, rules, replay state, market views. Expires
        when the ingest stops publishing it: its absence is "ingest offline"."""
        return f"{self.prefix}:status"

    @property
    def snapshot(self) -> str:
        """A hash a new consumer starts from: the forming bar of each series."""
        return f"{self.prefix}:snapshot"

    @property
    def commands(self) -> str:
        """Actions of dashboards on the shared state (rules, replay, uploads, symbols)."""
        return f"{self.prefix}:commands"

    def reply(self, request: str) -> str:
        return f"{self.prefix}:reply:{request}"


def connect(url: str, longest_block_s: float) -> aioredis.Redis:
    """A client for ``url`` (bytes in and out). Connections are made lazily and remade after a
    failure, so one client survives a Redis restart; callers back off on ``BROKER_ERRORS``. A
    reply slower than the longest blocking read (plus 5 s) is a dead link (a paused Redis, a
    partition), not a wait forever."""
    return aioredis.Redis.from_url(url, decode_responses=False, socket_connect_timeout=2,
                                   socket_timeout=longest_block_s + 5, socket_keepalive=True,
                                   health_check_interval=10)

"""Fault injection: the exchange misbehaves on purpose (drops, stalls, garbage, torn, repeated,
reordered and late frames, refused handshakes, failing REST) so the client's recovery is tested
against a real server, seeded so a failing run can be repeated. Frame faults count every stream
frame a connection is sent (trades, quotes, marks, ...); ``Faults.routes`` limits the frame faults
and refusals to some routes, e.g. ``("public",)`` drops the bookTicker connection alone."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

from quantpanel.feeds.exchange.stats import ExchangeStats

__all__ = ["FAULT_KINDS", "FAULT_ROUTES", "Client", "FaultInjector", "Faults"]

_GARBAGE = (
    "this is not json",
    '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT"}}',
    '{"stream":"btcusdt@depth","data":{"e":"depthUpdate","s":"BTCUSDT","U":1}}',  # an event not kept
    "[1, 2, 3]",
)


FAULT_KINDS = ("drop", "close_error", "stall", "garbage", "truncated", "duplicate", "reorder", "delay",
               "refuse")
#: A connection's route as faults target it: ``market`` includes the unrouted ``/stream`` and ``/ws``.
FAULT_ROUTES = ("market", "public", "private", "spot")


@dataclass(frozen=True)
class Faults:
    """Fault injection. ``every``: one fault after every N stream frames sent to a connection,
    the kind drawn (seeded) from ``kinds``; ``rest_fail_every``: every Nth REST request answers
    429 (with Retry-After) or 503, alternately; ``routes``: the routes whose connections get frame
    faults and refusals (empty: all of them)."""

    drop_every: int = 0  # close a connection after every N stream frames sent to it
    garbage_every: int = 0  # send one garbage frame after every N stream frames
    every: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    stall_s: float = 2.0  # a stalled connection stays open and silent this long (frames skipped)
    delay_s: float = 0.3
    refuse_s: float = 1.0  # new connections are refused (HTTP 503) this long
    rest_fail_every: int = 0
    routes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
        bad = set(self.routes) - set(FAULT_ROUTES)
        if bad:
            raise ValueError(f"unknown fault routes {sorted(bad)}; known: {', '.join(FAULT_ROUTES)}")

    def targets(self, route: str) -> bool:
        """Whether connections on ``route`` get frame faults and refusals."""
        return not self.routes or route in self.routes


@dataclass
class Client:
    """One connection: its route and streams, the stream frames sent to it and the faults in
    effect on it."""

    ws: ServerConnection
    streams: set[str]
    route: str = "market"  # one of FAULT_ROUTES
    sent: int = 0
    stalled_until: float = 0.0
    deferred: str | None = None  # a frame held back to be sent after the next one (reorder)
    defer_next: bool = False


class FaultInjector:
    """Applies ``faults`` to the connections in ``clients`` (the server's own map: a dropped
    connection leaves it at once) and to new handshakes."""

    def __init__(self, faults: Faults, stats: ExchangeStats,
                 clients: dict[ServerConnection, Client]) -> None:
        self.faults = faults
        self.per_frame = bool(faults.garbage_every or faults.drop_every or faults.every)  # see after_frame
        self._stats = stats
        self._clients = clients
        self._rng = random.Random(faults.seed)
        self._refuse_until = 0.0

    def refusal(self, ws: ServerConnection, route: str = "market") -> Response | None:
        """The answer to a handshake on ``route`` while a ``refuse`` fault lasts (a 503), else None."""
        if time.monotonic() < self._refuse_until and self.faults.targets(route):
            self._stats.refused += 1
            return ws.respond(503, "Service Unavailable: injected refusal\n")
        return None

    async def after_frame(self, client: Client, frame: str) -> bool:
        """The faults due once ``client`` was sent the stream frame ``frame``; False when they
        closed the connection."""
        f = self.faults
        if not f.targets(client.route):
            return True
        if f.garbage_every and client.sent % f.garbage_every == 0:
            await self._garbage(client)
        if f.drop_every and client.sent % f.drop_every == 0:
            await self._drop(client, 1001, "injected drop")
            return False
        if f.every and client.sent % f.every == 0:
            return await self._inject(client, frame)
        return True

    async def _inject(self, client: Client, frame: str) -> bool:
        """One fault of a random kind on ``client``; False when the connection is gone."""
        kind = self._rng.choice(self.faults.kinds)
        self._stats.faults[kind] += 1
        if kind in ("drop", "close_error", "refuse"):
            if kind == "refuse":
                self._refuse_until = time.monotonic() + self.faults.refuse_s
            if kind == "close_error":  # Binance closes with a policy-violation code and a reason
                await self._drop(client, 1008, "Policy Violation: injected")
            else:
                await self._drop(client, 1001, "injected drop")
            return False
        if kind == "stall":
            client.stalled_until = time.monotonic() + self.faults.stall_s
        elif kind == "garbage":
            await self._garbage(client)
        elif kind == "truncated":
            await client.ws.send(frame[: len(frame) // 2])
        elif kind == "duplicate":
            await client.ws.send(frame)
        elif kind == "reorder":
            client.defer_next = True
        elif kind == "delay":
            await asyncio.sleep(self.faults.delay_s)
        return True

    async def _garbage(self, client: Client) -> None:
        await client.ws.send(_GARBAGE[self._stats.garbage_sent % len(_GARBAGE)])
        self._stats.garbage_sent += 1

    async def _drop(self, client: Client, code: int, reason: str) -> None:
        self._stats.drops += 1
        self._clients.pop(client.ws, None)
        await client.ws.close(code, reason)

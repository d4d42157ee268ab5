"""The local exchange's server: replays a recording as USD-M combined-stream aggTrades over a real
WebSocket, with the REST endpoints on the same port, so clients meet the network as they would on
Binance. It speaks the subset quantpanel uses: ``/stream?streams=a/b`` and ``/ws/a/b`` (with or
without a route prefix such as ``/market``), SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS with
Binance's replies and error shapes (``binance_futures``).

Streams are served by route, like Binance's since 2026-04-23: bookTicker (the recording's real
quotes) only on ``/public``; aggTrade and the SIMULATED markPrice(@1s) and forceOrder only on
``/market`` or the unrouted ``/stream`` / ``/ws``; a spot recording's trades as spot aggTrades on
``/spot`` (a local convention: Binance spot lives on another host). A stream subscribed on the wrong
route is acknowledged and listed, never delivered: that is how a client finds out. Market events
are released in step with the trade timeline (``schedule``). REST: aggTrades, fundingRate and
openInterest (``rest``, ``market_rest``).

Looping shifts times by the recording's span (+1 s) and ids by each symbol's id span per pass
(``timeline``). A recording without ids or sides (NDJSON ticks) is served with ids 1..N per symbol
(``load_recording`` renumbers them) and no ``m`` field.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from quantpanel.feeds.binance_futures import (
    AGG_TRADES_PATH,
    RecordedTrade,
    agg_trade_stream,
    answer_control,
    render_agg_trade,
    streams_of_path,
)
from quantpanel.feeds.binance_market import FUNDING_RATE_PATH, OPEN_INTEREST_PATH, route_of_path
from quantpanel.feeds.exchange.faults import Client, FaultInjector, Faults
from quantpanel.feeds.exchange.market_rest import MarketEndpoints
from quantpanel.feeds.exchange.rest import AggTradesEndpoint, RestBudget
from quantpanel.feeds.exchange.schedule import LEAD_MS, MarketEvents, build_events
from quantpanel.feeds.exchange.simulated import MarketModel, SimulatedMarket
from quantpanel.feeds.exchange.stats import ExchangeStats
from quantpanel.feeds.exchange.timeline import Pass, Timeline
from quantpanel.feeds.recording import Recording, with_contiguous_ids

__all__ = ["Exchange"]

log = logging.getLogger(__name__)
_NO_FAULTS = Faults()
_MODEL = MarketModel()
_SPOT_PREFIX = "/spot"

#: One frame of a broadcast: its route, stream, the futures trade it carries (or, for a market
#: event, its kind: ``bookTicker``, ``markPrice@1s``, ``markPrice``, ``forceOrder``, ``spot``) and
#: its text.
_Frame = tuple[str, str, RecordedTrade | str, str]


def _route_and_path(path: str) -> tuple[str, str]:
    """A connection's route (``market`` for the unrouted ``/stream`` and ``/ws`` too) and the path
    that names its streams."""
    if path == _SPOT_PREFIX or path.startswith(_SPOT_PREFIX + "/"):
        return "spot", path[len(_SPOT_PREFIX):]
    return route_of_path(path) or "market", path


class Exchange:
    """Replay ``recording`` over a real WebSocket server on ``host:port`` (0 = any free port).

    ``first_pass``, ``start_at_ms`` and ``rebase_to_now`` say where the timeline starts; they are
    read when the first client connects. ``recording.quotes`` are served on ``public_url``;
    ``market_model`` (None: none) simulates marks, funding, liquidations and open interest from the
    recording; ``spot`` is served on ``spot_url`` in step with the futures timeline.
    """

    def __init__(
        self,
        recording: Recording,
        *,
        speed: float = 1.0,
        loop: bool = False,
        rebase_to_now: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        pause_when_idle: bool = True,
        faults: Faults = _NO_FAULTS,
        sent_log: Path | None = None,
        first_pass: int = 0,
        start_at_ms: int | None = None,
        spot: Recording | None = None,
        market_model: MarketModel | None = _MODEL,
    ) -> None:
        self.stats = ExchangeStats()
        self._someone = asyncio.Event()  # set while a client is connected
        self.timeline = Timeline(with_contiguous_ids(recording),  # a no-op unless trades have synthetic keys
                                 speed=speed, loop=loop, pause_when_idle=pause_when_idle,
                                 stats=self.stats, audience=self._someone, broadcast=self._broadcast)
        self.rebase_to_now = rebase_to_now
        self.host, self.port = host, port
        self.faults = faults
        self.first_pass = first_pass
        self.start_at_ms = start_at_ms  # first replayed trade's time; overrides rebase_to_now
        self._sent_log = open(sent_log, "a", encoding="utf-8") if sent_log else None  # noqa: SIM115 (stop() closes it)
        self._clients: dict[ServerConnection, Client] = {}
        self._faults = FaultInjector(faults, self.stats, self._clients)
        budget = RestBudget(faults, self.stats)
        self._rest = AggTradesEndpoint(self.timeline.served, budget)
        self.spot = with_contiguous_ids(spot) if spot is not None else None  # ids for NDJSON spot ticks
        self.market_model = market_model
        self._events: dict[int, tuple[Recording, MarketEvents]] = {}
        self._market_rest = MarketEndpoints(self.timeline.served, self._events_of, lambda: self.recording, budget)
        self._pass: Pass | None = None  # the pass the market-event cursor belongs to
        self._cursor = 0
        self._server: Server | None = None
        self._producer: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Base combined-stream URL (``.../stream``) to give the feed client."""
        return f"ws://{self.host}:{self.port}/stream"

    @property
    def market_url(self) -> str:
        """The ``/market`` route (aggTrade, markPrice, forceOrder), like Binance's."""
        return f"ws://{self.host}:{self.port}/market/stream"

    @property
    def public_url(self) -> str:
        """The ``/public`` route (bookTicker), like Binance's."""
        return f"ws://{self.host}:{self.port}/public/stream"

    @property
    def spot_url(self) -> str:
        """The spot recording's aggTrades (a local route: Binance spot is another host)."""
        return f"ws://{self.host}:{self.port}/spot/stream"

    @property
    def rest_url(self) -> str:
        """REST base URL (aggTrades, fundingRate and openInterest are served on the same port)."""
        return f"http://{self.host}:{self.port}"

    def simulated(self) -> SimulatedMarket | None:
        """What the model simulated for the recording being replayed (None without a model)."""
        return self._events_of(self.recording).simulated

    def _events_of(self, recording: Recording) -> MarketEvents:
        """``recording``'s market events, built once (a loaded recording gets its own)."""
        key = id(recording)
        if key not in self._events:
            self._events[key] = (recording, build_events(recording, model=self.market_model, spot=self.spot))
        return self._events[key][1]

    async def start(self) -> None:
        # No permessage-deflate: on loopback compressing every frame was over half the replay's
        # CPU. Clients that offer it simply get uncompressed frames.
        self._server = await serve(self._handle, self.host, self.port, ping_interval=180,
                                   ping_timeout=600, max_size=2**16, compression=None,
                                   process_request=self._http)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        await asyncio.to_thread(self._events_of, self.recording)  # simulate now, not in the first send
        self._producer = asyncio.get_running_loop().create_task(self._produce())
        log.info("exchange listening on %s replaying %s", self.url, self.recording.source)

    async def stop(self) -> None:
        if self._producer:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
        if self._server:
            self._server.close()
            await self._server.wait_closed()
        if self._sent_log:
            self._sent_log.close()

    async def __aenter__(self) -> Exchange:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _produce(self) -> None:
        await self._someone.wait()
        start = self.start_at_ms
        if start is None and self.rebase_to_now:
            start = int(time.time() * 1000)
        await self.timeline.play(first_pass=self.first_pass, start_at_ms=start)

    # -- replay controls (the dashboard's Replay panel) ------------------------------------------
    @property
    def recording(self) -> Recording:
        """What the timeline replays (``load`` replaces it)."""
        return self.timeline.recording

    @property
    def speed(self) -> float:
        return self.timeline.speed

    @property
    def done(self) -> asyncio.Event:
        """Set once the recording was played through (never when looping)."""
        return self.timeline.done

    @property
    def paused(self) -> bool:
        return self.timeline.paused

    def pause(self) -> None:
        """Stop the timeline where it is; nothing is skipped."""
        self.timeline.pause()

    def resume(self) -> None:
        self.timeline.resume()

    def set_speed(self, speed: float) -> None:
        """Change the speed factor from the next trade on (0 = as fast as possible)."""
        self.timeline.set_speed(speed)

    def jump(self, time_ms: int) -> None:
        """Continue from the first trade at or after ``time_ms`` (the recording's own clock).

        Forward or back, what follows is sent as a new pass: times continue after the last trade
        sent and ids above every id sent, so a store or a bar builder never sees time run backwards
        or an id twice.
        """
        self.timeline.jump(time_ms)

    def load(self, recording: Recording) -> None:
        """Replace the recording being replayed (continuing times and ids like a jump)."""
        self.timeline.load(recording)

    @property
    def replay_time_ms(self) -> int | None:
        """The recording's own time of the last trade the timeline passed (None before the first)."""
        return self.timeline.replay_time_ms

    def pass_after(self, stored_max_ids: dict[str, int]) -> int:
        """The first pass whose ids are all above ``stored_max_ids`` (what a store already holds)."""
        return self.timeline.pass_after(stored_max_ids)

    # -- HTTP: REST and refused connections ----------------------------------------------------
    def _http(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path)
        endpoint = path.path.rstrip("/")
        if endpoint.endswith(AGG_TRADES_PATH):
            return self._rest.answer(path.query)
        if endpoint.endswith(FUNDING_RATE_PATH):
            return self._market_rest.funding_rate(path.query)
        if endpoint.endswith(OPEN_INTEREST_PATH):
            return self._market_rest.open_interest(path.query)
        return self._faults.refusal(ws, _route_and_path(request.path)[0])  # None: a WebSocket handshake

    # -- connections ---------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        route, path = _route_and_path(ws.request.path if ws.request else "")
        streams = streams_of_path(path)
        if streams is None:
            await ws.close(1008, "unknown path; use /stream?streams=... or /ws/...")
            return
        client = Client(ws, streams, route)
        self._clients[ws] = client
        self._someone.set()
        self.stats.connections += 1
        try:
            async for message in ws:
                await ws.send(answer_control(client.streams, message))
        except ConnectionClosed:
            pass
        finally:
            self._clients.pop(ws, None)
            if not self._clients:
                self._someone.clear()

    def _frames(self, chunk: tuple[RecordedTrade, ...], dt: int, da: dict[str, int]) -> list[_Frame]:
        """The chunk's trade frames with the market events due by its last trade merged in by time
        (only events some client subscribed to are rendered); advances the market-event cursor."""
        frames: list[_Frame] = [("market", agg_trade_stream(t.symbol), t, render_agg_trade(t, dt, da[t.symbol]))
                                for t in chunk]
        ps = self.timeline.served[-1]
        ev = self._events_of(ps.recording)
        if ps is not self._pass:  # a new pass (a loop, a jump, a new recording)
            self._pass, self._cursor = ps, ev.first_at(ps.recording.trades[ps.start].time - LEAD_MS)
        lo, hi = self._cursor, ev.upto(chunk[-1].time)
        self._cursor = max(lo, hi)
        wanted = {(c.route, s) for c in self._clients.values() for s in c.streams}
        market = [(ev.times[j], (ev.routes[j], ev.streams[j], ev.kinds[j], ev.render(j, dt, ps.number)))
                  for j in range(lo, hi) if (ev.routes[j], ev.streams[j]) in wanted]
        if not market:
            return frames
        merged: list[_Frame] = []
        i = 0
        for t, frame in zip(chunk, frames, strict=True):
            while i < len(market) and market[i][0] <= t.time:
                merged.append(market[i][1])
                i += 1
            merged.append(frame)
        return merged

    async def _broadcast(self, chunk: tuple[RecordedTrade, ...], dt: int, da: dict[str, int]) -> int:
        """Send ``chunk`` (and the market events due with it) to every client on its route;
        returns how many of its trades the furthest client is done with (all of them, unless every
        client was dropped part-way)."""
        frames = self._frames(chunk, dt, da)
        reached = 0
        for client in list(self._clients.values()):
            sent_ids: list[str] = []
            k = 0  # trades of the chunk this client is done with
            try:
                for route, stream, item, frame in frames:
                    is_trade = item.__class__ is not str
                    if stream not in client.streams or route != client.route:
                        k += is_trade
                        continue
                    if client.stalled_until:  # open and silent: what is due meanwhile is lost
                        if time.monotonic() < client.stalled_until:
                            k += is_trade
                            continue
                        client.stalled_until = 0.0
                    if client.defer_next:
                        client.defer_next, client.deferred = False, frame
                    else:
                        await client.ws.send(frame)
                        if client.deferred is not None:
                            deferred, client.deferred = client.deferred, None
                            await client.ws.send(deferred)
                    k += is_trade
                    client.sent += 1
                    if isinstance(item, str):
                        self.stats.market_frames[item] += 1
                        if self._sent_log:  # "=<kind> <frame>": a market frame, as sent
                            sent_ids.append(f"={item} {frame}\n")
                    else:
                        self.stats.frames_sent += 1
                        if self._sent_log:
                            sent_ids.append(f"{item.symbol} {item.agg_id + da[item.symbol]}\n")
                    if self._faults.per_frame and not await self._faults.after_frame(client, frame):
                        break
            except ConnectionClosed:
                self._clients.pop(client.ws, None)
            finally:
                reached = max(reached, k)
                if self._sent_log and sent_ids:
                    self._sent_log.writelines(sent_ids)
                    self._sent_log.flush()
        if not self._clients:
            self._someone.clear()
        return reached

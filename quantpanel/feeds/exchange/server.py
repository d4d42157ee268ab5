"""The local exchange's server: replays a recording as USD-M combined-stream aggTrades over a real
WebSocket, with the REST endpoint on the same port, so clients meet the network as they would on
Binance. It speaks the subset quantpanel uses: ``/stream?streams=a/b`` and ``/ws/a/b`` (with or
without a route prefix such as ``/market``), SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS with
Binance's replies and error shapes (``binance_futures``).

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
from quantpanel.feeds.exchange.faults import Client, FaultInjector, Faults
from quantpanel.feeds.exchange.rest import AggTradesEndpoint
from quantpanel.feeds.exchange.stats import ExchangeStats
from quantpanel.feeds.exchange.timeline import Timeline
from quantpanel.feeds.recording import Recording, with_contiguous_ids

__all__ = ["Exchange"]

log = logging.getLogger(__name__)
_NO_FAULTS = Faults()


class Exchange:
    """Replay ``recording`` over a real WebSocket server on ``host:port`` (0 = any free port).

    ``first_pass``, ``start_at_ms`` and ``rebase_to_now`` say where the timeline starts; they are
    read when the first client connects.
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
        self._rest = AggTradesEndpoint(self.timeline.served, faults, self.stats)
        self._server: Server | None = None
        self._producer: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Base combined-stream URL (``.../stream``) to give the feed client."""
        return f"ws://{self.host}:{self.port}/stream"

    @property
    def rest_url(self) -> str:
        """REST base URL (``/fapi/v1/aggTrades`` is served on the same port)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        # No permessage-deflate: on loopback compressing every frame was over half the replay's
        # CPU. Clients that offer it simply get uncompressed frames.
        self._server = await serve(self._handle, self.host, self.port, ping_interval=180,
                                   ping_timeout=600, max_size=2**16, compression=None,
                                   process_request=self._http)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
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
        if path.path.rstrip("/").endswith(AGG_TRADES_PATH):
            return self._rest.answer(path.query)
        return self._faults.refusal(ws)  # None: a WebSocket handshake

    # -- connections ---------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        streams = streams_of_path(ws.request.path if ws.request else "")
        if streams is None:
            await ws.close(1008, "unknown path; use /stream?streams=... or /ws/...")
            return
        client = Client(ws, streams)
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

    async def _broadcast(self, chunk: tuple[RecordedTrade, ...], dt: int, da: dict[str, int]) -> int:
        """Send ``chunk`` to every client; returns how many of its trades the furthest client is
        done with (all of them, unless every client was dropped part-way)."""
        frames = [(agg_trade_stream(t.symbol), t, render_agg_trade(t, dt, da[t.symbol])) for t in chunk]
        reached = 0
        for client in list(self._clients.values()):
            sent_ids: list[str] = []
            k = 0  # frames of the chunk this client is done with
            try:
                for stream, t, frame in frames:
                    if stream not in client.streams:
                        k += 1
                        continue
                    if client.stalled_until:  # open and silent: what is due meanwhile is lost
                        if time.monotonic() < client.stalled_until:
                            k += 1
                            continue
                        client.stalled_until = 0.0
                    if client.defer_next:
                        client.defer_next, client.deferred = False, frame
                    else:
                        await client.ws.send(frame)
                        if client.deferred is not None:
                            deferred, client.deferred = client.deferred, None
                            await client.ws.send(deferred)
                    k += 1
                    client.sent += 1
                    self.stats.frames_sent += 1
                    if self._sent_log:
                        sent_ids.append(f"{t.symbol} {t.agg_id + da[t.symbol]}\n")
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

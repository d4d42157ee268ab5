"""A local Binance-compatible exchange: replays a recording as USD-M combined-stream aggTrades.

Tests, benchmarks and the offline demo connect to it through the very client code used for live
Binance. It speaks the subset quantpanel uses: ``/stream?streams=a/b`` and ``/ws/a/b`` (with or
without a route prefix such as ``/market``), SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS with
Binance's replies and error shapes.

One timeline per exchange, like a real market: every connection sees the same trades at the same
moment, filtered by its streams. With ``pause_when_idle`` the timeline waits while nobody is
connected (nothing is skipped); without it, trades due while a client is away are not sent to it.
Looping shifts times by the recording's span (+1 s) and ids by each symbol's id span per pass, so a
store never sees a duplicate and ids stay contiguous. A recording without ids or sides (NDJSON
ticks) is served with ids 1..N per symbol (``load_recording`` renumbers them) and no ``m`` field.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
import time
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from quantpanel.feeds.binance_futures import agg_trade_stream
from quantpanel.feeds.recording import RecordedTrade, Recording, with_contiguous_ids

__all__ = ["Exchange", "ExchangeStats", "Faults"]

log = logging.getLogger(__name__)

_GARBAGE = (
    "this is not json",
    '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT"}}',
    '{"stream":"btcusdt@markPrice","data":{"e":"markPriceUpdate","s":"BTCUSDT","p":"1"}}',
    "[1, 2, 3]",
)


FAULT_KINDS = ("drop", "close_error", "stall", "garbage", "truncated", "duplicate", "reorder", "delay",
               "refuse")


@dataclass(frozen=True)
class Faults:
    """Fault injection. ``every``: one fault after every N trade frames sent to a connection,
    the kind drawn (seeded) from ``kinds``; ``rest_fail_every``: every Nth REST request answers
    429 (with Retry-After) or 503, alternately."""

    drop_every: int = 0  # close a connection after every N trade frames sent to it
    garbage_every: int = 0  # send one garbage frame after every N trade frames
    every: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    stall_s: float = 2.0  # a stalled connection stays open and silent this long (frames skipped)
    delay_s: float = 0.3
    refuse_s: float = 1.0  # new connections are refused (HTTP 503) this long
    rest_fail_every: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")


@dataclass
class ExchangeStats:
    frames_sent: int = 0
    garbage_sent: int = 0
    drops: int = 0
    connections: int = 0
    refused: int = 0
    passes: int = 0
    rest_requests: int = 0
    rest_failures: int = 0
    faults: Counter[str] = field(default_factory=Counter)


@dataclass
class _Client:
    ws: ServerConnection
    streams: set[str]
    sent: int = 0
    stalled_until: float = 0.0
    deferred: str | None = None  # a frame held back to be sent after the next one (reorder)
    defer_next: bool = False


@dataclass
class _Pass:
    """What one pass of the timeline released: REST serves exactly these trades."""

    recording: Recording
    dt: int
    da: dict[str, int]
    start: int  # trade index the pass started at
    end: int  # trade index up to which the timeline has passed


_SIDE = {True: ',"m":true', False: ',"m":false', None: ""}  # None: a recording without sides


def render_agg_trade(t: RecordedTrade, dt: int, da: int) -> str:
    """The exact combined-stream frame Binance sends for one aggTrade, shifted by dt ms / da ids.

    A trade of unknown side (NDJSON ticks) has no ``m`` at all: the parser reads that as unknown,
    where any made-up value would be a lie the bars would count as buy volume or not.
    """
    return (
        f'{{"stream":"{t.symbol.lower()}@aggTrade","data":{{"e":"aggTrade","E":{t.event_time + dt},'
        f'"a":{t.agg_id + da},"s":"{t.symbol}","p":"{t.price}","q":"{t.qty}",'
        f'"f":{t.first_id + da},"l":{t.last_id + da},"T":{t.time + dt}{_SIDE[t.buyer_maker]}}}}}'
    )


def _rest_row(t: RecordedTrade, dt: int, da: int) -> dict[str, object]:
    """One ``/fapi/v1/aggTrades`` row as streamed (no ``m`` when the side is unknown)."""
    row: dict[str, object] = {"a": t.agg_id + da, "p": t.price, "q": t.qty, "f": t.first_id + da,
                              "l": t.last_id + da, "T": t.time + dt}
    if t.buyer_maker is not None:
        row["m"] = t.buyer_maker
    return row


def _streams_of_path(path: str) -> set[str] | None:
    """Requested streams of a connection path; None when the path is not a stream endpoint."""
    parts = urlsplit(path)
    segs = [s for s in parts.path.split("/") if s]
    if segs and segs[0] in ("market", "public", "private"):
        segs = segs[1:]
    if segs[:1] == ["stream"] and len(segs) == 1:
        raw = parse_qs(parts.query).get("streams", [""])[0]
        return {s for s in raw.split("/") if s}
    if segs[:1] == ["ws"]:
        return {s for seg in segs[1:] for s in seg.split("/") if s}
    return None


class Exchange:
    """Replay ``recording`` over a real WebSocket server on ``host:port`` (0 = any free port)."""

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
        faults: Faults = Faults(),
        sent_log: Path | None = None,
        first_pass: int = 0,
        start_at_ms: int | None = None,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        self.recording = with_contiguous_ids(recording)  # a no-op unless trades have synthetic keys
        self.speed = speed
        self.loop = loop
        self.rebase_to_now = rebase_to_now
        self.host, self.port = host, port
        self.pause_when_idle = pause_when_idle
        self.faults = faults
        self.first_pass = first_pass
        self.start_at_ms = start_at_ms  # first replayed trade's time; overrides rebase_to_now
        self.stats = ExchangeStats()
        self.done = asyncio.Event()  # the recording was played through (never set when looping)
        self._sent_log = open(sent_log, "a", encoding="utf-8") if sent_log else None
        self._clients: dict[ServerConnection, _Client] = {}
        self._someone = asyncio.Event()
        self._server: Server | None = None
        self._producer: asyncio.Task[None] | None = None
        self._running = asyncio.Event()  # cleared while paused
        self._running.set()
        self._wake = asyncio.Event()  # a control changed something: re-plan the next send
        self._request: tuple[str, object] | None = None  # a pending jump or new recording
        self._replay_time: int | None = None
        self._last_sent_ms: int | None = None  # shifted time of the last trade the timeline passed
        self._served: list[_Pass] = []
        self._by_symbol: dict[int, dict[str, tuple[list[int], list[int]]]] = {}
        self._rng = random.Random(faults.seed)
        self._refuse_until = 0.0
        self._weight_minute, self._weight_used = 0, 0

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
            try:
                await self._producer
            except asyncio.CancelledError:
                pass
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

    # -- HTTP: REST and refused connections ----------------------------------------------------
    def _http(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path)
        if path.path.rstrip("/").endswith("/fapi/v1/aggTrades"):
            return self._rest_agg_trades(parse_qs(path.query))
        if time.monotonic() < self._refuse_until:
            self.stats.refused += 1
            return ws.respond(503, "Service Unavailable: injected refusal\n")
        return None  # a WebSocket handshake

    def _json(self, status: int, body: object, extra: dict[str, str] | None = None) -> Response:
        data = orjson.dumps(body)
        minute = int(time.time() // 60)  # Binance's weight window: the current UTC minute
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0
        headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(data)),
                           "X-MBX-USED-WEIGHT-1M": str(self._weight_used), **(extra or {})})
        reason = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 503: "Service Unavailable"}[status]
        return Response(status, reason, headers, data)

    def _rest_agg_trades(self, q: dict[str, list[str]]) -> Response:
        """``GET /fapi/v1/aggTrades?symbol=&fromId=&limit=``: what the timeline released, in
        Binance's response format, ids and times as they were streamed."""
        self.stats.rest_requests += 1
        self._weight_used += 20  # the weight of /fapi/v1/aggTrades
        n = self.faults.rest_fail_every
        if n and self.stats.rest_requests % n == 0:
            self.stats.rest_failures += 1
            if (self.stats.rest_requests // n) % 2:
                return self._json(429, {"code": -1003, "msg": "Too many requests (injected)."}, {"Retry-After": "1"})
            return self._json(503, {"code": -1001, "msg": "Service unavailable (injected)."})
        try:
            symbol = q["symbol"][0].upper()
            limit = min(int(q.get("limit", ["500"])[0]), 1000)
            from_id = int(q["fromId"][0]) if "fromId" in q else None
        except (KeyError, ValueError, IndexError):
            return self._json(400, {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."})
        rows: list[dict[str, object]] = []
        for ps in self._served if from_id is not None else []:
            ids, idx = self._index(ps.recording).get(symbol, ([], []))
            lo, hi = bisect_left(idx, ps.start), bisect_left(idx, ps.end)
            da = ps.da.get(symbol, 0)
            k = max(lo, bisect_left(ids, from_id - da, lo, hi))
            for j in range(k, hi):
                t = ps.recording.trades[idx[j]]
                rows.append(_rest_row(t, ps.dt, da))
                if len(rows) >= limit:
                    return self._json(200, rows)
        return self._json(200, rows)

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

    # -- connections ---------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        streams = _streams_of_path(ws.request.path if ws.request else "")
        if streams is None:
            await ws.close(1008, "unknown path; use /stream?streams=... or /ws/...")
            return
        client = _Client(ws, streams)
        self._clients[ws] = client
        self._someone.set()
        self.stats.connections += 1
        try:
            async for message in ws:
                reply = self._control(client, message)
                await ws.send(reply)
        except ConnectionClosed:
            pass
        finally:
            self._clients.pop(ws, None)
            if not self._clients:
                self._someone.clear()

    def _control(self, client: _Client, message: str | bytes) -> str:
        try:
            req = orjson.loads(message)
        except orjson.JSONDecodeError:
            return '{"error":{"code":3,"msg":"Invalid JSON: expected value at line 1 column 1"}}'
        if not isinstance(req, dict):
            return '{"error":{"code":2,"msg":"Invalid request"}}'
        rid = req.get("id")
        if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0:
            return orjson.dumps({"error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}, "id": None}).decode()
        method = req.get("method")
        params = req.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                return orjson.dumps({"error": {"code": 1, "msg": "Invalid value type: expected Array of Strings"}, "id": rid}).decode()
            if method == "SUBSCRIBE":
                client.streams.update(params)
            else:
                client.streams.difference_update(params)
            return orjson.dumps({"result": None, "id": rid}).decode()
        if method == "LIST_SUBSCRIPTIONS":
            return orjson.dumps({"result": sorted(client.streams), "id": rid}).decode()
        return orjson.dumps({"error": {"code": 0, "msg": f"Unknown property {method!r}"}, "id": rid}).decode()

    # -- replay controls (the dashboard's Replay panel) ------------------------------------------
    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        """Stop the timeline where it is; nothing is skipped."""
        self._running.clear()
        self._wake.set()

    def resume(self) -> None:
        self._running.set()
        self._wake.set()

    def set_speed(self, speed: float) -> None:
        """Change the speed factor from the next trade on (0 = as fast as possible)."""
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        self.speed = speed
        self._wake.set()

    def jump(self, time_ms: int) -> None:
        """Continue from the first trade at or after ``time_ms`` (the recording's own clock).

        Forward or back, what follows is sent as a new pass: times continue after the last trade
        sent and ids above every id sent, so a store or a bar builder never sees time run backwards
        or an id twice.
        """
        self._request = ("jump", int(time_ms))
        self._wake.set()

    def load(self, recording: Recording) -> None:
        """Replace the recording being replayed (continuing times and ids like a jump)."""
        if not recording.trades:
            raise ValueError(f"{recording.source}: nothing to replay")
        self._request = ("load", with_contiguous_ids(recording))
        self._wake.set()

    @property
    def replay_time_ms(self) -> int | None:
        """The recording's own time of the last trade the timeline passed (None before the first)."""
        return self._replay_time

    # -- the timeline --------------------------------------------------------------------------
    def pass_after(self, stored_max_ids: dict[str, int]) -> int:
        """The first pass whose ids are all above ``stored_max_ids`` (what a store already holds)."""
        k = 0
        for sym, (lo, hi) in self.recording.id_spans().items():
            top = stored_max_ids.get(sym, -1)
            if top >= lo:
                k = max(k, (top - lo) // (hi - lo + 1) + 1)
        return k

    def _id_shift(self, k: int) -> dict[str, int]:
        return {s: k * (hi - lo + 1) for s, (lo, hi) in self.recording.id_spans().items()}

    async def _sleep_until(self, due: float, speed: float) -> bool:
        """Sleep until ``due`` (monotonic); False when a control changed the plan first."""
        self._wake.clear()
        if self._request is not None or self.paused or self.speed != speed:
            return False
        delay = due - time.monotonic()
        if delay <= 0:
            return True
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            return True
        return False

    def _apply(self, request: tuple[str, object], k: int, dt: int, sent_ids: dict[str, int]) -> tuple[int, int, int]:
        """A jump or a new recording: (pass, time shift, index) to continue from."""
        kind, arg = request
        if kind == "load":
            self.recording = arg  # type: ignore[assignment]
            k, target = self.pass_after(sent_ids), self.recording.trades[0].time
        else:
            k, target = max(k + 1, self.pass_after(sent_ids)), arg  # type: ignore[assignment]
        trades = self.recording.trades
        i = bisect_left(trades, target, key=lambda t: t.time)
        i = min(i, len(trades) - 1)
        if self._last_sent_ms is not None:  # continue 1 s after the last trade sent
            dt = self._last_sent_ms + 1_000 - trades[i].time
        return k, dt, i

    async def _produce(self) -> None:
        chunk_max = 2_000
        await self._someone.wait()
        trades = self.recording.trades
        k = self.first_pass
        start = self.start_at_ms
        if start is None and self.rebase_to_now:
            start = int(time.time() * 1000)
        dt = start - trades[0].time if start is not None else k * self.recording.span_ms()
        i = 0
        sent_ids: dict[str, int] = {}  # highest id sent per symbol (shifted)
        while True:
            trades, n, da = self.recording.trades, len(self.recording.trades), self._id_shift(k)
            self.stats.passes += 1
            served = _Pass(self.recording, dt, da, i, i)
            self._served.append(served)
            # the timeline's anchor: trade time `ref` is due at `wall0`, at `speed`
            wall0, ref, speed = time.monotonic(), trades[i].time, self.speed
            while i < n:
                if self._request is not None:
                    break
                if not self._running.is_set():
                    await self._running.wait()
                    wall0, ref = time.monotonic(), trades[i].time
                    continue
                if self.pause_when_idle and not self._clients:
                    await self._someone.wait()
                    wall0, ref = time.monotonic(), trades[i].time
                if self.speed != speed:
                    wall0, ref, speed = time.monotonic(), trades[i].time, self.speed
                if speed > 0:
                    if not await self._sleep_until(wall0 + (trades[i].time - ref) / 1000 / speed, speed):
                        continue
                    now_rel = (time.monotonic() - wall0) * 1000 * speed + ref
                    j = i
                    while j < n and j - i < chunk_max and trades[j].time <= now_rel:
                        j += 1
                    j = max(j, i + 1)
                else:
                    j = min(n, i + chunk_max)
                served.end = j  # on the REST endpoint as soon as they trade, like Binance
                step = await self._broadcast(trades[i:j], dt, da)
                for t in trades[i:i + step]:
                    sent_ids[t.symbol] = t.agg_id + da[t.symbol]
                served.end = i + step
                if step:
                    last = trades[i + step - 1]
                    self._replay_time, self._last_sent_ms = last.time, last.time + dt
                i += step
                if self.speed == 0:
                    await asyncio.sleep(0)
            if self._request is None:  # played through
                if self.loop:
                    k, dt, i = k + 1, dt + self.recording.span_ms(), 0
                    continue
                self.done.set()
                self._wake.clear()
                while self._request is None:  # a jump or a new recording starts it again
                    await self._wake.wait()
                    self._wake.clear()
            request, self._request = self._request, None
            self.done.clear()
            k, dt, i = self._apply(request, k, dt, sent_ids)

    async def _inject(self, client: _Client, frame: str) -> bool:
        """One fault of a random kind on ``client``; False when the connection is gone."""
        kind = self._rng.choice(self.faults.kinds)
        self.stats.faults[kind] += 1
        ws = client.ws
        if kind in ("drop", "close_error", "refuse"):
            self.stats.drops += 1
            self._clients.pop(ws, None)
            if kind == "refuse":
                self._refuse_until = time.monotonic() + self.faults.refuse_s
            if kind == "close_error":  # Binance closes with a policy-violation code and a reason
                await ws.close(1008, "Policy Violation: injected")
            else:
                await ws.close(1001, "injected drop")
            return False
        if kind == "stall":
            client.stalled_until = time.monotonic() + self.faults.stall_s
        elif kind == "garbage":
            await ws.send(_GARBAGE[self.stats.garbage_sent % len(_GARBAGE)])
            self.stats.garbage_sent += 1
        elif kind == "truncated":
            await ws.send(frame[: len(frame) // 2])
        elif kind == "duplicate":
            await ws.send(frame)
        elif kind == "reorder":
            client.defer_next = True
        elif kind == "delay":
            await asyncio.sleep(self.faults.delay_s)
        return True

    async def _broadcast(self, chunk: tuple[RecordedTrade, ...], dt: int, da: dict[str, int]) -> int:
        """Send ``chunk`` to every client; returns how many trades the timeline advanced.

        That is the whole chunk, unless every client was dropped part-way and the timeline
        pauses while idle: then it resumes where the furthest client stopped.
        """
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
                    f = self.faults
                    if f.garbage_every and client.sent % f.garbage_every == 0:
                        await client.ws.send(_GARBAGE[self.stats.garbage_sent % len(_GARBAGE)])
                        self.stats.garbage_sent += 1
                    if f.drop_every and client.sent % f.drop_every == 0:
                        self.stats.drops += 1
                        self._clients.pop(client.ws, None)
                        await client.ws.close(1001, "injected drop")
                        break
                    if f.every and client.sent % f.every == 0 and not await self._inject(client, frame):
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
            if self.pause_when_idle and reached:
                return reached
        return len(chunk)

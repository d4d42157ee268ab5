"""The exchange's one replay timeline, like a real market's: every connection sees the same trades
at the same moment.

With ``pause_when_idle`` the timeline waits while nobody is connected (nothing is skipped); without
it, trades due while a client is away are not sent to it. Each pass (a loop, a jump, a new
recording) shifts times to continue after the last trade sent and ids above every id sent, by
whole id spans per symbol, so a store never sees time run backwards or an id twice and ids stay
contiguous.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from quantpanel.feeds.binance_futures import RecordedTrade
from quantpanel.feeds.exchange.stats import ExchangeStats
from quantpanel.feeds.recording import Recording, with_contiguous_ids

__all__ = ["Broadcast", "Jump", "Load", "Pass", "Request", "Timeline"]

_CHUNK_MAX = 2_000  # trades sent in one go at most


@dataclass
class Pass:
    """What one pass of the timeline released: REST serves exactly these trades (and the market
    events of their times)."""

    recording: Recording
    dt: int  # time shift, ms
    da: dict[str, int]  # id shift per symbol
    start: int  # trade index the pass started at
    end: int  # trade index up to which the timeline has passed
    number: int = 0  # k: ids are shifted by k whole id spans (other id spaces follow the same k)


@dataclass(frozen=True, slots=True)
class Load:
    """Continue with ``recording`` (its ids already contiguous) from its first trade."""

    recording: Recording

    def __post_init__(self) -> None:
        if not self.recording.trades:
            raise ValueError(f"{self.recording.source}: nothing to replay")


@dataclass(frozen=True, slots=True)
class Jump:
    """Continue from the first trade at or after ``time_ms`` (the recording's own clock)."""

    time_ms: int


#: A control the timeline applies before its next trade.
Request = Jump | Load

#: Sends trades (shifted by dt ms and per-symbol ids) to the clients; returns how many of them the
#: furthest client is done with.
Broadcast = Callable[[tuple[RecordedTrade, ...], int, dict[str, int]], Awaitable[int]]


def _check_speed(speed: float) -> None:
    if speed < 0:
        raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")


class Timeline:
    """Play ``recording`` at ``speed`` (0 = as fast as possible) through ``broadcast``;
    ``audience`` is set while a client is connected."""

    def __init__(self, recording: Recording, *, speed: float, loop: bool, pause_when_idle: bool,
                 stats: ExchangeStats, audience: asyncio.Event, broadcast: Broadcast) -> None:
        _check_speed(speed)
        self.recording = recording
        self.speed = speed
        self.loop = loop
        self.pause_when_idle = pause_when_idle
        self.done = asyncio.Event()  # the recording was played through (never set when looping)
        self.served: list[Pass] = []
        self._stats = stats
        self._audience = audience
        self._broadcast = broadcast
        self._running = asyncio.Event()  # cleared while paused
        self._running.set()
        self._wake = asyncio.Event()  # a control changed something: re-plan the next send
        self._request: Request | None = None
        self._replay_time: int | None = None
        self._last_sent_ms: int | None = None  # shifted time of the last trade the timeline passed

    # -- controls ------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        self._running.clear()
        self._wake.set()

    def resume(self) -> None:
        self._running.set()
        self._wake.set()

    def set_speed(self, speed: float) -> None:
        _check_speed(speed)
        self.speed = speed
        self._wake.set()

    def jump(self, time_ms: int) -> None:
        self._request = Jump(int(time_ms))
        self._wake.set()

    def load(self, recording: Recording) -> None:
        self._request = Load(with_contiguous_ids(recording))
        self._wake.set()

    @property
    def replay_time_ms(self) -> int | None:
        return self._replay_time

    def pass_after(self, stored_max_ids: dict[str, int]) -> int:
        """The first pass whose ids are all above ``stored_max_ids`` (what a store already holds)."""
        k = 0
        for sym, (lo, hi) in self.recording.id_spans().items():
            top = stored_max_ids.get(sym, -1)
            if top >= lo:
                k = max(k, (top - lo) // (hi - lo + 1) + 1)
        return k

    # -- playing -------------------------------------------------------------------------------
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

    def _apply(self, request: Request, k: int, dt: int, sent_ids: dict[str, int]) -> tuple[int, int, int]:
        """A jump or a new recording: (pass, time shift, index) to continue from."""
        if isinstance(request, Load):
            self.recording = request.recording
            k, target = self.pass_after(sent_ids), self.recording.trades[0].time
        else:
            k, target = max(k + 1, self.pass_after(sent_ids)), request.time_ms
        trades = self.recording.trades
        i = bisect_left(trades, target, key=lambda t: t.time)
        i = min(i, len(trades) - 1)
        if self._last_sent_ms is not None:  # continue 1 s after the last trade sent
            dt = self._last_sent_ms + 1_000 - trades[i].time
        return k, dt, i

    async def play(self, *, first_pass: int, start_at_ms: int | None) -> None:
        """Run the timeline from pass ``first_pass`` (ids shifted past the earlier ones), the first
        trade at ``start_at_ms`` (else shifted by the earlier passes' spans); never returns."""
        trades = self.recording.trades
        k = first_pass
        dt = start_at_ms - trades[0].time if start_at_ms is not None else k * self.recording.span_ms()
        i = 0
        sent_ids: dict[str, int] = {}  # highest id sent per symbol (shifted)
        while True:
            trades, n, da = self.recording.trades, len(self.recording.trades), self._id_shift(k)
            self._stats.passes += 1
            served = Pass(self.recording, dt, da, i, i, k)
            self.served.append(served)
            # the timeline's anchor: trade time `ref` is due at `wall0`, at `speed`
            wall0, ref, speed = time.monotonic(), trades[i].time, self.speed
            while i < n:
                if self._request is not None:
                    break
                if not self._running.is_set():
                    await self._running.wait()
                    wall0, ref = time.monotonic(), trades[i].time
                    continue
                if self.pause_when_idle and not self._audience.is_set():
                    await self._audience.wait()
                    wall0, ref = time.monotonic(), trades[i].time
                if self.speed != speed:
                    wall0, ref, speed = time.monotonic(), trades[i].time, self.speed
                if speed > 0:
                    if not await self._sleep_until(wall0 + (trades[i].time - ref) / 1000 / speed, speed):
                        continue
                    now_rel = (time.monotonic() - wall0) * 1000 * speed + ref
                    j = i
                    while j < n and j - i < _CHUNK_MAX and trades[j].time <= now_rel:
                        j += 1
                    j = max(j, i + 1)
                else:
                    j = min(n, i + _CHUNK_MAX)
                served.end = j  # on the REST endpoint as soon as they trade, like Binance
                reached = await self._broadcast(trades[i:j], dt, da)
                # everyone left part-way: with nobody to see them, the rest wait for the next client
                step = reached if self.pause_when_idle and reached and not self._audience.is_set() else j - i
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

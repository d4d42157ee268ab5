"""Zero tick loss between the feed and the pipeline: sequence ids, fill gaps over REST.

Ticks pass in id order per symbol (duplicates and out-of-order repeats dropped). When an id jumps
(a lost frame, a reconnect, a restart), the live stream is held while the missing trades are
fetched from ``/fapi/v1/aggTrades`` and put back exactly where they belong, so the pipeline sees
every trade once, in order, and builds the bars a fault-free run would have. A gap that takes
longer than ``max_hold_s`` releases the held stream; what arrives later is stored. Either way
``on_filled(symbol, since_ms)`` follows, and the stored bars from there on are rebuilt: a stall
the watchdog had not yet seen may have let the bar clock close those bars empty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from quantpanel.errors import FrameError
from quantpanel.feeds.binance_futures import AGG_TRADES_MAX_LIMIT
from quantpanel.feeds.gaps import Gap, Sequencer
from quantpanel.feeds.rest import RestClient
from quantpanel.models import Tick, TickBatch

__all__ = ["Backfill", "BackfillStats"]

log = logging.getLogger(__name__)
_CHUNK = 5_000
_OPEN_END = 2**62  # a probe's gap: everything after the last id
_SHORT_RETRIES = 6  # a known gap the server serves short: asked again for 0.1+0.2+...+3.2 s


def _consecutive(page: list[Tick], first: int) -> list[Tick]:
    """The leading run of ``page`` with ids ``first, first + 1, ...``."""
    k = 0
    while k < len(page) and page[k].agg_id == first + k:
        k += 1
    return page if k == len(page) else page[:k]


class ShortFill(Exception):
    """REST did not serve every id of a known gap; ``ticks`` holds what it did serve."""

    def __init__(self, message: str, ticks: list[Tick]) -> None:
        super().__init__(message)
        self.ticks = ticks


@dataclass(eq=False)
class _Fill:
    """One gap being filled, held in the stream where it was seen. Identity, not value: a
    reconnect while a probe is in flight probes the same range again (an equal ``Gap``), and each
    fill keeps its own trades (one overwriting the other lost the first's reach)."""

    gap: Gap
    ticks: list[Tick] | None = None


@dataclass
class BackfillStats:
    gaps: int = 0
    trades_filled: int = 0
    gaps_unfilled: int = 0  # REST failed or timed out: reported, the store keeps the hole
    trades_late: int = 0  # filled after the held stream was released: stored, bars rebuilt
    holds: int = 0
    longest_hold_s: float = 0.0
    last_error: str = ""


class Backfill:
    """``on_batch`` takes the feed's batches; ``emit`` gets them in order, gaps filled."""

    def __init__(self, rest: RestClient | None, emit: Callable[[TickBatch], object], *,
                 last_ids: Mapping[str, int] | None = None, max_hold_s: float = 15.0,
                 store_late: Callable[[list[Tick]], object] | None = None,
                 on_filled: Callable[[str, int], object] | None = None) -> None:
        self.rest = rest
        self.emit = emit
        self.store_late = store_late
        self.on_filled = on_filled
        self.max_hold_s = max_hold_s
        self.sequencer = Sequencer(last_ids)
        self.stats = BackfillStats()
        self._held: list[list[Tick] | _Fill] = []
        self._pending: deque[_Fill] = deque()
        self._task: asyncio.Task[None] | None = None
        self._meta = (0, 0)  # received_ms, event_ms of the newest batch

    @property
    def holding(self) -> bool:
        """The live stream is held for a backfill (the bar clock must wait too)."""
        return bool(self._held)

    def on_batch(self, batch: TickBatch) -> None:
        ticks, gaps = self.sequencer.admit(batch.ticks)
        self._meta = (batch.received_ms, batch.event_ms)
        pos = 0
        for idx, gap in gaps:
            self._pass(ticks[pos:idx])
            if self.rest is None:  # nothing to fill from: report it, go on
                self.stats.gaps += 1
                self.stats.gaps_unfilled += 1
                log.warning("gap in %s ids %d..%d (%d trades): no REST URL to fill it",
                            gap.symbol, gap.first, gap.last, gap.size)
            else:
                self._start_hold(gap)
            pos = idx
        self._pass(ticks[pos:])

    def probe(self) -> None:
        """On every (re)connect and at start-up: fetch what was traded since the last id of each
        symbol, without waiting for a live tick to reveal the hole (the tail of an outage)."""
        if self.rest is None:
            return
        for sym, last in sorted(self.sequencer.last.items()):
            self._start_hold(Gap(sym, last + 1, _OPEN_END, 0))

    def _pass(self, ticks: list[Tick]) -> None:
        if not ticks:
            return
        if self._held:
            self._held.append(ticks)
        else:
            self.emit(TickBatch(tuple(ticks), *self._meta))

    def _start_hold(self, gap: Gap) -> None:
        self.stats.gaps += 1
        log.info("gap in %s ids %d..%d (%d trades): filling it over REST", gap.symbol, gap.first,
                 gap.last, gap.size)
        if not self._held:
            self.stats.holds += 1
            self._hold_started = time.monotonic()
        fill = _Fill(gap)
        self._held.append(fill)
        self._pending.append(fill)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="backfill")

    async def _run(self) -> None:
        while self._pending:
            fill = self._pending.popleft()
            gap = fill.gap
            budget = self.max_hold_s - (time.monotonic() - self._hold_started) if self._held else None
            try:
                if budget is not None and budget <= 0:
                    raise TimeoutError
                ticks = await asyncio.wait_for(self._fetch(fill), budget)
            except TimeoutError:
                if self._held:  # keep the live stream moving; finish this gap in the background
                    log.warning("backfill of %s %d..%d exceeds %.0f s: releasing the live stream",
                                gap.symbol, gap.first, gap.last, self.max_hold_s)
                    self._pending.appendleft(fill)
                    self._release()
                    continue
                ticks = None
            except ShortFill as exc:  # keep what came; the rest is reported missing
                self.stats.gaps_unfilled += 1
                self.stats.last_error = str(exc)
                log.error("gap in %s ids %d..%d only partly filled: %s", gap.symbol, gap.first,
                          gap.last, exc)
                ticks = exc.ticks
            except (ConnectionError, FrameError) as exc:
                ticks = None
                self.stats.last_error = str(exc)
            if ticks is None:
                self.stats.gaps_unfilled += 1
                log.error("gap in %s ids %d..%d not filled: %s", gap.symbol, gap.first, gap.last,
                          self.stats.last_error or "timeout")
                ticks = []
            self.stats.trades_filled += len(ticks)
            if fill in self._held:
                fill.ticks = ticks
            elif ticks:  # the stream went on without it: store, then rebuild the bars it touches
                self.stats.trades_late += len(ticks)
                if self.store_late:
                    self.store_late(ticks)
                if self.on_filled:
                    self.on_filled(gap.symbol, ticks[0].time)
        self._release()

    async def _fetch(self, fill: _Fill) -> list[Tick]:
        """The gap's trades. A known gap (ids first..last) the server cannot fully serve yet (its
        REST view can lag the stream) is asked again, backing off; still short after
        ``_SHORT_RETRIES``, it raises ``ShortFill`` with what it got. Ids are taken in unbroken
        runs only: a probe stops at a hole in an answer (the stream's next tick then shows the
        rest as a known gap), and a known gap skips a hole the server keeps, reporting it."""
        assert self.rest is not None
        gap = fill.gap
        out: list[Tick] = []
        holes: list[str] = []
        nxt = gap.first
        short = 0
        while nxt <= (last := self._upper(fill)):
            want = min(AGG_TRADES_MAX_LIMIT, last - nxt + 1)
            page = await self.rest.agg_trades(gap.symbol, nxt, want)
            full = len(page) >= want
            page = [t for t in page if nxt <= t.agg_id <= last]
            run = _consecutive(page, nxt)
            if run:
                out.extend(run)
                nxt = run[-1].agg_id + 1
            if last == _OPEN_END:
                if not run or not full or len(run) < len(page):  # caught up, or a hole
                    break
            elif not run:  # ids the stream proved exist, not on the REST endpoint (yet)
                if short < _SHORT_RETRIES:
                    await asyncio.sleep(0.1 * 2**short)
                    short += 1
                elif page:  # a hole the server keeps: skip it, report it
                    holes.append(f"{nxt}..{page[0].agg_id - 1}")
                    nxt, short = page[0].agg_id, 0
                else:
                    holes.append(f"{nxt}..{last}")
                    break
        self._mark(gap, out)
        if holes:
            raise ShortFill(f"{gap.symbol} ids {', '.join(holes)} not served by REST", out)
        return out

    def _mark(self, gap: Gap, out: list[Tick]) -> None:
        if out:  # live ticks at or below these ids are repeats from now on
            seq = self.sequencer.last
            seq[gap.symbol] = max(seq.get(gap.symbol, -1), out[-1].agg_id)

    def _upper(self, fill: _Fill) -> int:
        """A gap's last id; a probe's ends below the first live tick held since (the stream took
        over from there)."""
        gap = fill.gap
        if gap.last != _OPEN_END:
            return gap.last
        after = self._held[self._held.index(fill) + 1:] if fill in self._held else []
        for item in after:
            if isinstance(item, list):
                for t in item:
                    if t.symbol == gap.symbol:
                        return t.agg_id - 1
        return _OPEN_END

    def _release(self) -> None:
        """Emit the held stream with every filled gap back in its place."""
        if not self._held:
            return
        held, self._held = self._held, []
        self.stats.longest_hold_s = max(self.stats.longest_hold_s, time.monotonic() - self._hold_started)
        out: list[Tick] = []
        top: dict[str, int] = {}  # a probe's trades and held live ticks may overlap: ids must rise
        filled: dict[str, int] = {}  # per symbol, the time of its first filled trade
        for item in held:
            if isinstance(item, _Fill) and item.ticks:
                first = item.ticks[0]
                filled[first.symbol] = min(filled.get(first.symbol, first.time), first.time)
            for t in (item.ticks or ()) if isinstance(item, _Fill) else item:
                if t.agg_id > top.get(t.symbol, -1):
                    top[t.symbol] = t.agg_id
                    out.append(t)
        for i in range(0, len(out), _CHUNK):
            self.emit(TickBatch(tuple(out[i:i + _CHUNK]), *self._meta))
        if self.on_filled:  # bars the clock closed before the gap was seen must be rebuilt
            for sym, since in filled.items():
                self.on_filled(sym, since)

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for pending gaps, then release whatever is still held."""
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                log.warning("backfill still running after %.0f s at shutdown", timeout)
        self._release()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

"""The hub: the one shared data owner of a server process, fed by the runtime's pipeline.

Sessions never receive pushes from the pipeline. Each session pulls from the hub on its own
throttled periodic callback, which runs inside that session's document: thread- and lock-safe,
bounded work per session, and a dead or not-yet-loaded tab costs nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from quantpanel.config import Config
from quantpanel.models import Bar
from quantpanel.pipeline.bars import BarUpdate
from quantpanel.pipeline.runtime import Runtime, Status

__all__ = ["Hub", "SeriesDelta", "get_hub"]

log = logging.getLogger(__name__)


@dataclass
class _Series:
    closed: deque[Bar]
    seq: int = 0  # number of closed bars ever appended
    forming: Bar | None = None


@dataclass(frozen=True)
class SeriesDelta:
    """What a session needs to catch up from ``seq``: new closed bars, the forming bar."""

    closed: list[Bar]
    forming: Bar | None
    seq: int
    reset: bool  # the session fell behind the bounded buffer (or is new): replace, don't append


@dataclass
class Hub:
    """Bounded bar history per (symbol, timeframe) and the runtime's status, for every session."""

    runtime: Runtime
    buffer_bars: int
    _series: dict[tuple[str, str], _Series] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.runtime.on_ready(self._attach)

    @property
    def config(self) -> Config:
        return self.runtime.config

    def _attach(self, rt: Runtime) -> None:
        for key, bars in rt.history.items():
            s = self._get(key)
            for b in bars:
                if b.closed:
                    s.closed.append(b)
                    s.seq += 1
                else:
                    s.forming = b
        assert rt.pipeline is not None
        rt.pipeline.updates.sink(self.apply)

    def _get(self, key: tuple[str, str]) -> _Series:
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = _Series(deque(maxlen=self.buffer_bars))
        return s

    def apply(self, update: BarUpdate) -> None:
        """Fold a pipeline update in (called on the event loop by the streamz graph)."""
        for b in update.closed:
            s = self._get((b.symbol, b.timeframe))
            s.closed.append(b)
            s.seq += 1
            if s.forming is not None and s.forming.time <= b.time:
                s.forming = None
        for b in update.forming:
            self._get((b.symbol, b.timeframe)).forming = b

    def since(self, symbol: str, timeframe: str, seq: int | None) -> SeriesDelta:
        """Bars closed after ``seq`` (all buffered ones when ``seq`` is None or too old)."""
        s = self._series.get((symbol, timeframe))
        if s is None:
            return SeriesDelta([], None, 0, seq is None)
        new = s.seq - (seq or 0)
        if seq is None or new > len(s.closed) or new < 0:
            return SeriesDelta(list(s.closed), s.forming, s.seq, True)
        closed = list(s.closed)[len(s.closed) - new:] if new else []
        return SeriesDelta(closed, s.forming, s.seq, False)

    def symbols(self) -> tuple[str, ...]:
        return self.config.symbols

    def status(self) -> Status:
        return self.runtime.status()


_HUB: Hub | None = None
_LOCK = threading.Lock()


def get_hub(config: Config, *, source: str | None = None) -> Hub:
    """The process's hub, creating it and starting the shared runtime on first use.

    The runtime task starts with a fresh ``contextvars.Context``: started from inside a session it
    would otherwise inherit that session's curdoc and make HoloViews spin in every other session.
    """
    global _HUB
    with _LOCK:
        if _HUB is None:
            runtime = Runtime(config, source=source)
            _HUB = Hub(runtime, config.dashboard.buffer_bars)
            loop = asyncio.get_event_loop()
            loop.create_task(_start(runtime), context=contextvars.Context())
        return _HUB


async def _start(runtime: Runtime) -> None:
    try:
        await runtime.start()
    except Exception as exc:  # shown in every session's status strip
        runtime.error = f"start-up failed: {exc}"
        log.exception("runtime start-up failed")


"""The hub: the one shared data owner of a server process, fed by the runtime's pipeline (or, in a
``serve --broker`` process, by ``RemoteRuntime``: the same surface, over the ingest's streams).

Sessions never receive data pushed from the pipeline: each pulls from the hub inside its own
document (thread- and lock-safe, bounded work per session). The hub only *wakes* them: after each
update it calls every subscribed ``wake`` (cheap: a session schedules one throttled pull in its own
document), so a tick reaches the browser without waiting for the periodic pull. A dead or
not-yet-loaded tab is never woken.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import pandas as pd

from quantpanel.alerts.engine import Alert
from quantpanel.alerts.rules import Rule
from quantpanel.analytics import HedgeResult
from quantpanel.broker.remote import RemoteReplay, RemoteRules, RemoteRuntime
from quantpanel.config import Config
from quantpanel.dashboard.logs import Delta, Log, SeriesDelta
from quantpanel.dashboard.market_hub import MarketSeries
from quantpanel.errors import ReplayError, StoreError
from quantpanel.models import Bar, MarketBatch
from quantpanel.pipeline.bars import BarUpdate
from quantpanel.pipeline.pair_costs import FundingMode, PairCosts, SlippageModel, pair_costs
from quantpanel.pipeline.pairs import PairPoint, PairSpec
from quantpanel.pipeline.replay_controls import ReplayControls
from quantpanel.pipeline.rulebook import RuleBook
from quantpanel.pipeline.runtime import Runtime, Status
from quantpanel.pipeline.stored import StoredData
from quantpanel.storage.importer import ImportResult
from quantpanel.storage.ohlc import OhlcSeries
from quantpanel.storage.store import Store

__all__ = ["Hub", "Delta", "SeriesDelta", "get_hub"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Series:
    log: Log[Bar]
    forming: Bar | None = None


@dataclass
class Hub:
    """Bounded bar history per (symbol, timeframe), live pair analytics, the runtime's status."""

    runtime: Runtime | RemoteRuntime  # the process's own, or the ingest's over the broker
    buffer_bars: int
    _series: dict[tuple[str, str], _Series] = field(default_factory=dict)
    _pairs: dict[PairSpec, Log[PairPoint]] = field(default_factory=dict)
    _alerts: Log[Alert] = field(default_factory=lambda: Log(500))
    rules_version: int = 0  # bumped on every rule change: sessions refresh their rules table
    _wakes: dict[int, Callable[[], bool]] = field(default_factory=dict)
    _next_wake: int = 0
    symbols_version: int = 0  # bumped when a symbol is added or removed: sessions refresh pickers
    market: MarketSeries = field(init=False)  # mark points and liquidations for the Market charts
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.market = MarketSeries(self.config.timeframes, self.buffer_bars)
        self.runtime.on_ready(self._attach)

    @property
    def config(self) -> Config:
        return self.runtime.config

    def _attach(self, rt: Runtime | RemoteRuntime) -> None:
        for key, bars in rt.ingestion.history.items():
            s = self._get(key)
            s.log.extend([b for b in bars if b.closed])
            s.forming = next((b for b in reversed(bars) if not b.closed), None)
        pipeline = rt.ingestion.pipeline
        pipeline.updates.sink(self.apply)
        rt.on_rebuilt(self.rebuilt)
        pipeline.pair_points.sink(self._apply_pairs)
        self._alerts = Log(self.config.alerts.log_rows)
        self._alerts.extend(rt.rules.recent_alerts(self.config.alerts.log_rows))
        rt.rules.alerting.alerts.sink(self._alerts.extend)
        self.rules_version += 1
        self.market.attach(pipeline.market)
        pipeline.market.updates.sink(self._apply_market)
        rt.on_symbols(self._symbols_changed)
        if isinstance(rt, RemoteRuntime):  # another dashboard process may edit the shared rules
            rt.on_rules(self._rules_changed)
        self._spawn(self._warm_market(list(rt.symbols)))

    def _rules_changed(self) -> None:
        self.rules_version += 1

    @property
    def started(self) -> bool:
        """The runtime is running: live series, pairs and rules exist."""
        return self.runtime.started.is_set()

    def _get(self, key: tuple[str, str]) -> _Series:
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = _Series(Log(self.buffer_bars))
        return s

    def apply(self, update: BarUpdate) -> None:
        """Fold a pipeline update in (called on the event loop by the streamz graph)."""
        for b in update.closed:
            s = self._get((b.symbol, b.timeframe))
            s.log.extend([b])
            if s.forming is not None and s.forming.time <= b.time:
                s.forming = None
        for b in update.forming:
            self._get((b.symbol, b.timeframe)).forming = b
        self._wake_all()

    def rebuilt(self, bars: list[Bar]) -> None:
        """Stored bars a late fill rebuilt: the buffered copies are replaced and every session
        re-reads the series (a reset), so no tab shows the old values until a reload."""
        by_key: dict[tuple[str, str], dict[int, Bar]] = {}
        for b in bars:
            by_key.setdefault((b.symbol, b.timeframe), {})[b.time] = b
        changed = False
        for key, new in by_key.items():
            s = self._series.get(key)
            if s is not None:
                changed |= s.log.rewrite(partial(_rebuilt, new))
        if changed:
            self._wake_all()

    # -- futures-native market data and the symbols followed ---------------------------------------
    def _apply_market(self, batch: MarketBatch) -> None:
        if self.market.apply(batch):
            self._wake_all()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on the loop outside any session's context (see ``get_hub``)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a notebook or test without one): nothing to warm
            coro.close()
            return
        task = loop.create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _warm_market(self, symbols: list[str]) -> None:
        """Stored marks and liquidations over the span the buffered candles show."""
        starts = {sym: min(firsts) for sym in symbols if (firsts := [
            s.log.items[0].time for (sy, _), s in self._series.items() if sy == sym and s.log.items])}
        if starts and self.db_ready and await self.market.warm_from_store(
                self.runtime.stored.db_path, starts, lambda: self.symbols):
            self._wake_all()

    @property
    def symbols(self) -> list[str]:
        """The symbols the feed follows now (runtime additions included)."""
        return self.runtime.symbols

    async def add_symbol(self, text: str) -> str:
        """Follow the USD-M symbol ``text`` (ValueError with a one-line message when it cannot)."""
        return await self._shared(self.runtime.add_symbol(text))

    async def remove_symbol(self, symbol: str) -> None:
        await self._shared(self.runtime.remove_symbol(symbol))

    async def _shared(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` outside the calling session's context: what it starts is shared."""
        if not self.started:
            coro.close()
            raise ValueError("the runtime has not started yet: try again in a moment")
        return await asyncio.get_running_loop().create_task(coro, context=contextvars.Context())

    def _symbols_changed(self, symbol: str, history: dict[tuple[str, str], list[Bar]] | None) -> None:
        for key in [k for k in self._series if k[0] == symbol]:
            del self._series[key]
        self.market.drop(symbol)
        if history is not None:
            for key, bars in history.items():
                s = self._get(key)
                s.log.extend([b for b in bars if b.closed])
                s.forming = next((b for b in reversed(bars) if not b.closed), None)
            self._spawn(self._warm_market([symbol]))
        self.symbols_version += 1
        self._wake_all()

    def pair_costs(self, a: str, b: str, timeframe: str, y: pd.Series, x: pd.Series, *,
                   funding: FundingMode = "auto", slippage_model: SlippageModel = "fixed") -> PairCosts:
        """Funding and quoted-spread inputs of a stored pair's backtest (``pair_costs``). Blocking."""
        with Store(self._stored().db_path, readonly=True) as store:
            return pair_costs(store, a, b, timeframe, y, x, funding=funding, slippage_model=slippage_model)

    # -- waking sessions -----------------------------------------------------------------------
    def subscribe(self, wake: Callable[[], bool]) -> Callable[[], None]:
        """Call ``wake()`` after every update until it returns False or raises; returns the
        unsubscribe function. ``wake`` runs on the event loop and must only schedule work."""
        key = self._next_wake = self._next_wake + 1
        self._wakes[key] = wake
        return lambda: self._wakes.pop(key, None) and None

    def _wake_all(self) -> None:
        for key, wake in list(self._wakes.items()):
            try:
                alive = wake()
            except Exception:  # one broken session must not stop the others, nor ingest
                log.exception("dropping a session's wake callback")
                alive = False
            if not alive:
                self._wakes.pop(key, None)

    @property
    def sessions_subscribed(self) -> int:
        return len(self._wakes)

    def load(self) -> int:
        """1 while the live sessions are at most ``dashboard.full_rate_sessions``; beyond, the
        factor by which each session's live pushes and chart refreshes slow down, so one server
        process keeps up with all of them (a chart refresh costs tens of ms per session)."""
        full = self.config.dashboard.full_rate_sessions
        return max(1, -(-len(self._wakes) // full)) if full else 1

    def since(self, symbol: str, timeframe: str, seq: int | None) -> SeriesDelta:
        """Bars closed after ``seq`` (all buffered ones when ``seq`` is None or too old)."""
        s = self._series.get((symbol, timeframe))
        if s is None:
            return SeriesDelta([], None, 0, seq is None)
        closed, reset = s.log.since(seq)
        return SeriesDelta(closed, s.forming, s.log.seq, reset)

    def forming(self, symbol: str, timeframe: str) -> Bar | None:
        s = self._series.get((symbol, timeframe))
        return s.forming if s else None

    def closed_bars(self, symbol: str, timeframe: str) -> list[Bar]:
        s = self._series.get((symbol, timeframe))
        return list(s.log.items) if s else []

    def seq(self, symbol: str, timeframe: str) -> int:
        """Closed bars of the series ever received: changes exactly when a bar closes."""
        s = self._series.get((symbol, timeframe))
        return s.log.seq if s else 0

    # -- the database (reads block: call them from a worker thread) ------------------------------
    @property
    def db_ready(self) -> bool:
        """The run's database is open: stored series can be read and uploads stored."""
        return self.runtime.db_path is not None

    def _stored(self) -> StoredData:
        if not self.db_ready:
            raise StoreError("the runtime has not started yet: no database to read or store into")
        return self.runtime.stored

    def load_closes(self, symbols: list[str], timeframe: str, *, last: int | None = None) -> pd.DataFrame:
        """All stored closes (not just the buffered bars) for backtests and scans. Blocking."""
        return self._stored().load_closes(symbols, timeframe, last=last)

    def load_bars(self, symbols: list[str], timeframe: str) -> dict[str, list[Bar]]:
        """All stored closed bars (imported OHLC series included). Blocking."""
        return self._stored().load_bars(symbols, timeframe)

    def stored_series(self) -> tuple[list[str], list[tuple[str, str]]]:
        """(symbols with trades, (symbol, timeframe) series cached or imported). Blocking."""
        return self._stored().stored_series() if self.db_ready else ([], [])

    def ohlc_series(self) -> list[tuple[str, str, int, int, int]]:
        """(symbol, timeframe, bars, first, last) of every uploaded series. Blocking."""
        return self._stored().ohlc_series() if self.db_ready else []

    def read_ohlc(self, symbol: str, timeframe: str) -> pd.DataFrame:
        """One uploaded series as a frame (time and bar columns). Blocking."""
        return self._stored().read_ohlc(symbol, timeframe)

    async def store_ohlc(self, series: list[OhlcSeries]) -> int:
        """Store validated OHLC series in one transaction, through the writer."""
        return await self._stored().store_ohlc(series)

    async def import_trades(self, name: str, data: bytes,
                            progress: Callable[[int, int], None] | None = None) -> ImportResult:
        """Store an uploaded trades file, all or nothing, through the writer."""
        return await self._stored().import_trades(name, data, progress)

    @property
    def replay(self) -> ReplayControls | RemoteReplay:
        """The shared replay controls (a ``ReplayError`` on the live feed or before start)."""
        if not self.started:
            raise ReplayError("the runtime has not started yet: nothing to replay")
        return self.runtime.replay

    @property
    def replaying(self) -> bool:
        """The runtime replays from the local exchange (its controls act)."""
        return self.started and self.runtime.replay.active

    # -- pairs ---------------------------------------------------------------------------------
    def watch_pair(self, spec: PairSpec) -> None:
        """Compute ``spec`` live from now on, warmed up on the bars the hub holds."""
        if spec in self._pairs or not self.started:
            return
        history = self.closed_bars(spec.a, spec.timeframe) + self.closed_bars(spec.b, spec.timeframe)
        points = self.runtime.ingestion.pipeline.pairs.watch(spec, history)
        log_ = self._pairs[spec] = Log(self.buffer_bars)
        log_.extend(points)

    def _apply_pairs(self, points: dict[PairSpec, list[PairPoint]]) -> None:
        for spec, pts in points.items():
            log_ = self._pairs.get(spec)
            if log_ is not None:
                log_.extend(pts)

    def pair_since(self, spec: PairSpec, seq: int | None) -> Delta[PairPoint]:
        self.watch_pair(spec)
        log_ = self._pairs.get(spec)
        if log_ is None:  # the runtime is still starting
            return Delta([], 0, seq is None)
        items, reset = log_.since(seq)
        return Delta(items, log_.seq, reset)

    def pair_hedge(self, spec: PairSpec) -> HedgeResult | None:
        st = self.runtime.ingestion.pipeline.pairs.state(spec) if self.started else None
        return st.hedge if st else None

    # -- alerts --------------------------------------------------------------------------------
    def alerts_since(self, seq: int | None) -> Delta[Alert]:
        """Alerts after ``seq``; on reset, the stored log's newest ``alerts.log_rows``."""
        items, reset = self._alerts.since(seq)
        return Delta(items, self._alerts.seq, reset)

    def alerts(self) -> list[Alert]:
        return list(self._alerts.items)

    @property
    def alerts_seq(self) -> int:
        return self._alerts.seq

    def rules(self) -> list[Rule]:
        return [r for r, _ in self.rules_status()]

    def rules_status(self) -> list[tuple[Rule, str | None]]:
        """Every rule, by id, with why it is inactive (None: active)."""
        return self.runtime.rules.alerting.all_rules() if self.started else []

    def _rules(self) -> RuleBook | RemoteRules:
        if not self.started:
            raise StoreError("the runtime has not started yet: rules cannot be changed")
        return self.runtime.rules

    async def save_rule(self, rule: Rule) -> Rule:
        saved = await self._rules().save(rule)
        self.rules_version += 1
        return saved

    async def delete_rule(self, rule_id: int) -> None:
        await self._rules().delete(rule_id)
        self.rules_version += 1

    def status(self) -> Status:
        return self.runtime.status()


def _rebuilt(new: dict[int, Bar], b: Bar) -> Bar:
    """``b``, or the bar a rebuild made for its time."""
    return new.get(b.time, b)


_HUB: Hub | None = None
_START: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference to a task
_LOCK = threading.Lock()


def get_hub(config: Config, *, source: str | None = None) -> Hub:
    """The process's hub, creating it and starting the shared runtime on first use.

    The runtime task starts with a fresh ``contextvars.Context``: started from inside a session it
    would otherwise inherit that session's curdoc and make HoloViews spin in every other session.
    """
    global _HUB, _START
    with _LOCK:
        if _HUB is None:
            runtime: Runtime | RemoteRuntime = (
                RemoteRuntime(config, config.broker.url) if config.broker.url else Runtime(config, source=source))
            _HUB = Hub(runtime, config.dashboard.buffer_bars)
            loop = asyncio.get_event_loop()
            _START = loop.create_task(_start(runtime), context=contextvars.Context())
        return _HUB


async def _start(runtime: Runtime | RemoteRuntime) -> None:
    try:
        await runtime.start()
    except Exception as exc:  # shown in every session's status strip
        runtime.error = f"start-up failed: {exc}"
        log.exception("runtime start-up failed")

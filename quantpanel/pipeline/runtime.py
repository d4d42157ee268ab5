"""The runtime: owns the process's one pipeline, its feed connection and the asyncio tasks.

``source`` decides where ticks come from: ``live`` (Binance), ``replay`` (the local exchange on
bundled recorded data), or ``auto``: live if it connects within ``feed.connect_timeout_s``, else
replay, with the status saying so plainly. Replayed ticks go to their own database file.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from quantpanel.alerts.engine import Alert
from quantpanel.alerts.rules import Rule, RuleError, parse_rule
from quantpanel.config import Config, alert_rules
from quantpanel.errors import ReplayError, StoreError
from quantpanel.feeds.connection import FeedConnection
from quantpanel.feeds.exchange import Exchange
from quantpanel.feeds.recording import load_recording, recording_from_ticks
from quantpanel.models import Bar, TickBatch
from quantpanel.notify.webhook import Webhook
from quantpanel.feeds.backfill import Backfill
from quantpanel.pipeline.alerting import Alerting, rows
from quantpanel.pipeline.backfilling import make_backfill
from quantpanel.pipeline.bars import Clock
from quantpanel.pipeline.graph import Pipeline
from quantpanel.pipeline.history import load_bars, load_closes, require_series, stored_series, warm_start
from quantpanel.storage.importer import ImportResult, import_file, unpack_agg_trades
from quantpanel.storage.ohlc import OhlcSeries, store_ohlc
from quantpanel.storage.store import BAR_COLUMNS, Store
from quantpanel.storage.writer import StoreWriter

__all__ = ["Runtime", "Status"]

log = logging.getLogger(__name__)
_CLOCK_PERIOD_S = 0.25
REPLAY_MAX_TICKS = 5_000_000  # a replay of stored ticks is held in memory (~150 B per trade)


@dataclass(frozen=True)
class Status:
    """What the status strip shows; a snapshot, safe to hand to any session."""

    source: str  # LIVE | REPLAY | STARTING
    label: str  # what is being replayed, and whether it is real or simulated
    simulated: bool
    state: str  # connection state
    ticks_per_s: float
    last_tick_age_s: float | None
    ticks: int
    malformed: int
    reconnects: int
    db_path: str
    error: str
    replay_time_ms: int | None = None  # the replayed recording's own clock (REPLAY only)
    paused: bool = False
    speed: float = 1.0
    gaps: int = 0  # id gaps seen by the backfill
    backfilled: int = 0  # trades it fetched over REST
    gaps_unfilled: int = 0


def _spec(rule: Rule) -> str:
    """A rule as stored: its JSON without the id (the table's key)."""
    return rule.model_dump_json(exclude={"id"})


class Runtime:
    """Start once per process with ``await runtime.start()``; stop with ``await runtime.stop()``."""

    def __init__(self, config: Config, *, source: str | None = None) -> None:
        self.config = config
        self.mode = source or config.source
        self.source_kind = "STARTING"
        self.pipeline: Pipeline | None = None
        self.feed: FeedConnection | None = None
        self.exchange: Exchange | None = None
        self.writer: StoreWriter | None = None
        self.history: dict[tuple[str, str], list[Bar]] = {}
        self.db_path: str | None = None  # the database this run stores into, once started
        self.alerting: Alerting | None = None
        self.webhook: Webhook | None = None
        self.started = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.error = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._rate: deque[tuple[float, int]] = deque(maxlen=64)
        self._on_ready: list[Callable[[Runtime], None]] = []
        self._on_rebuilt: list[Callable[[list[Bar]], None]] = []
        self._early: list[TickBatch] = []  # batches that arrived before the pipeline existed
        self.backfill: Backfill | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def on_rebuilt(self, callback: Callable[[list[Bar]], None]) -> None:
        """Call ``callback(bars)`` on the event loop with the stored bars a late backfill rebuilt."""
        self._on_rebuilt.append(callback)

    def _rebuilt(self, bars: list[Bar]) -> None:
        for cb in self._on_rebuilt:
            cb(bars)

    def on_ready(self, callback: Callable[[Runtime], None]) -> None:
        """Call ``callback(runtime)`` once the pipeline exists (now, if it already does)."""
        if self.pipeline is not None:
            callback(self)
        else:
            self._on_ready.append(callback)

    async def start(self) -> None:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        if self.mode in ("auto", "live") and await self._try_live():
            self.source_kind = "LIVE"
            db = cfg.storage.db_path
        elif self.mode == "live":
            self.error = f"cannot connect to {cfg.feed.ws_url}: {self.feed.stats.last_error if self.feed else ''}"
            log.error("%s; retrying in the background", self.error)
            self.source_kind = "LIVE"
            db = cfg.storage.db_path
        else:
            await self._start_exchange()
            self.source_kind = "REPLAY"
            db = cfg.storage.replay_db_path
        self.db_path = str(db)
        self.writer = StoreWriter(db)
        # `panel serve` exits on SIGINT/SIGTERM without stopping us: drain queued writes then.
        atexit.register(self.writer.close)
        with Store(db) as store:
            warm = warm_start(store, cfg.symbols, cfg.timeframes,
                              bars=cfg.dashboard.buffer_bars, grace_ms=cfg.bars.close_grace_ms)
        self.writer.put_bars(warm.recovered)
        self.history = warm.history
        self.pipeline = Pipeline(warm.state, self.writer)
        self._start_alerting(warm.history)
        with Store(db) as store:
            last_ids = {s: store.max_agg_id(s) for s in cfg.symbols}
        loop = asyncio.get_running_loop()
        self.backfill = make_backfill(cfg, self.pipeline.emit, self.writer, last_ids,
                                      rest_url=self.exchange.rest_url if self.exchange else None,
                                      on_rebuilt=lambda bars: loop.call_soon_threadsafe(self._rebuilt, bars))
        early, self._early = self._early, []
        for batch in early:
            self.backfill.on_batch(batch)
        if self.feed is None:
            self.feed = self._make_feed(self.exchange.url if self.exchange else cfg.feed.ws_url)
        self.feed.on_batch = self._on_batch
        self.feed.on_connect = self.backfill.probe
        if self.feed.connected.is_set():  # connected before the store was known: probe now
            self.backfill.probe()
        if not any(t.get_name() == "feed" for t in self._tasks):
            self._tasks.append(loop.create_task(self.feed.run(), name="feed"))
        self._tasks.append(loop.create_task(self._clock(), name="clock"))
        log.info("runtime started: %s, db %s", self.source_kind, db)
        for cb in self._on_ready:
            cb(self)
        self._on_ready.clear()
        self.started.set()

    def _start_alerting(self, history: dict[tuple[str, str], list[Bar]]) -> None:
        """Rules from the database (config rules seeded once), wired to the pipeline and sinks."""
        cfg, pipeline = self.config, self.pipeline
        assert pipeline is not None and self.writer is not None and self.db_path is not None
        self.alerting = Alerting(cfg, pipeline.pairs, history=history, history_bars=cfg.dashboard.buffer_bars)
        with Store(self.db_path) as store:
            for rule in alert_rules(cfg):
                store.seed_rule(rule.name, _spec(rule))
            stored = store.read_rules()
        rules = []
        for rid, name, spec in stored:
            try:
                rules.append(parse_rule({**json.loads(spec), "id": rid, "name": name},
                                        where=f"{self.db_path}: alert_rules id {rid}"))
            except (RuleError, ValueError) as exc:  # keep running; the rule stays in the table
                log.error("alert rule skipped: %s", exc)
        self.alerting.set_rules(rules)
        pipeline.updates.sink(self.alerting.on_update)
        pipeline.pair_points.sink(self.alerting.on_pairs)
        writer = self.writer
        self.alerting.alerts.sink(lambda alerts: writer.put_alerts(rows(alerts)))
        hook = cfg.alerts.webhook
        if hook.url:
            self.webhook = Webhook(hook.url, timeout_s=hook.timeout_s, retries=hook.retries,
                                   queue_max=hook.queue_max)
            self.alerting.alerts.sink(self.webhook.put)

    # -- alert rules (the UI's edits) -----------------------------------------------------------
    def _store_rule(self, rule: Rule) -> Rule:
        assert self.db_path is not None
        with Store(self.db_path) as store:
            rid = store.save_rule(rule.name, _spec(rule), rule.id)
        return rule.model_copy(update={"id": rid})

    def _delete_rule(self, rule_id: int) -> None:
        assert self.db_path is not None
        with Store(self.db_path) as store:
            store.delete_rule(rule_id)

    async def save_rule(self, rule: Rule) -> Rule:
        """Store a new or edited rule (off the loop), then watch it live. Returns it with its id."""
        if self.alerting is None:
            raise StoreError("the runtime has not started yet: rules cannot be saved")
        saved = await asyncio.to_thread(self._store_rule, rule)
        self.alerting.upsert(saved)
        return saved

    async def delete_rule(self, rule_id: int) -> None:
        if self.alerting is None:
            raise StoreError("the runtime has not started yet: rules cannot be deleted")
        await asyncio.to_thread(self._delete_rule, rule_id)
        self.alerting.remove(rule_id)

    def recent_alerts(self, last: int) -> list[Alert]:
        """The newest stored alerts, oldest first. Blocking: its own read-only connection."""
        if self.db_path is None:
            return []
        with Store(self.db_path, readonly=True) as store:
            return [Alert(*row) for row in store.read_alerts(last)]  # type: ignore[arg-type]

    async def stop(self) -> None:
        if self.feed:
            await self.feed.stop()
        if self.backfill:
            await self.backfill.drain(10)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.exchange:
            await self.exchange.stop()
        if self.writer:
            self.writer.close()
        if self.webhook:
            self.webhook.close()

    def _make_feed(self, url: str) -> FeedConnection:
        f = self.config.feed
        return FeedConnection(
            url, self.config.symbols, self._on_batch,
            batch_max_ticks=f.batch_max_ticks, batch_interval_ms=f.batch_interval_ms,
            silence_timeout_s=f.silence_timeout_s, connect_timeout_s=f.connect_timeout_s,
            backoff_initial_s=f.backoff_initial_s, backoff_max_s=f.backoff_max_s,
            max_connection_age_s=f.max_connection_age_s,
        )

    async def _try_live(self) -> bool:
        self.feed = self._make_feed(self.config.feed.ws_url)
        task = asyncio.get_running_loop().create_task(self.feed.run(), name="feed")
        try:
            await asyncio.wait_for(self.feed.connected.wait(), self.config.feed.connect_timeout_s + 0.5)
        except TimeoutError:
            if self.mode == "live":
                self._tasks.append(task)  # keep retrying with backoff
                return False
            log.warning("live Binance unreachable (%s): replaying bundled data",
                        self.feed.stats.last_error or "timeout")
            await self.feed.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.feed = None
            return False
        self._tasks.append(task)
        return True

    async def _start_exchange(self) -> None:
        r = self.config.replay
        recording = await asyncio.to_thread(load_recording, r.data)
        self.exchange = Exchange(recording, speed=r.speed, loop=r.loop,
                                 rebase_to_now=r.rebase_to_now, host=r.host, port=r.port)
        # A restart continues after what earlier runs stored: never a stored id again, and (when
        # times are rebased) no artificial hole that would show as a run of empty bars.
        with Store(self.config.storage.replay_db_path) as store:
            stored = {s: store.max_agg_id(s) for s in recording.symbols}
            last_ms = max((store.max_time(s) for s in recording.symbols), default=-1)
        self.exchange.first_pass = self.exchange.pass_after(stored)
        if r.rebase_to_now and last_ms >= 0:
            self.exchange.start_at_ms = last_ms + 1_000
        await self.exchange.start()

    # -- ingest --------------------------------------------------------------------------------
    def _on_batch(self, batch: TickBatch) -> None:
        self._rate.append((time.monotonic(), len(batch.ticks)))
        if self.backfill is not None:  # in id order, gaps filled, into the pipeline
            self.backfill.on_batch(batch)
        else:  # the live connection opened before warm-up finished: keep, don't drop
            self._early.append(batch)

    async def _clock(self) -> None:
        """Close bars by the feed's clock (its last event time plus elapsed wall time); feed the
        alert engine its health samples every ``alerts.health_interval_s``."""
        next_health = time.monotonic()
        while True:
            await asyncio.sleep(_CLOCK_PERIOD_S)
            st = self.feed.stats if self.feed else None
            holding = self.backfill is not None and self.backfill.holding  # a gap's trades come first
            if st and self.feed.connected.is_set() and st.last_event_ms and self.pipeline and not holding:
                # a replay's clock runs at its speed, and stands still while it is paused
                rate = 1.0 if self.exchange is None else 0.0 if self.exchange.paused else self.exchange.speed or 1.0
                now = st.last_event_ms + int((int(time.time() * 1000) - st.last_recv_wall_ms) * rate)
                self.pipeline.emit(Clock(now))
            if self.alerting is not None and time.monotonic() >= next_health:
                next_health = time.monotonic() + self.config.alerts.health_interval_s
                status = self.status()
                self.alerting.on_health(int(time.time() * 1000), status.ticks_per_s, status.last_tick_age_s)

    # -- replay controls (REPLAY only; they act on the one shared timeline) ---------------------------
    def _replaying(self) -> Exchange:
        if self.exchange is None:
            raise ReplayError("replay controls need the replay source; this server is on the live feed")
        return self.exchange

    def pause_replay(self) -> None:
        self._replaying().pause()
        if self.feed:
            self.feed.expect_silence = True

    def resume_replay(self) -> None:
        self._replaying().resume()
        if self.feed:
            self.feed.expect_silence = False

    def set_replay_speed(self, speed: float) -> None:
        self._replaying().set_speed(speed)

    def jump_replay(self, time_ms: int) -> None:
        """Continue the replay from ``time_ms`` on the recording's own clock."""
        self._replaying().jump(time_ms)

    def replay_range(self) -> tuple[int, int]:
        """First and last trade time of what is being replayed (its own clock)."""
        trades = self._replaying().recording.trades
        return trades[0].time, trades[-1].time

    def stored_spans(self) -> list[tuple[str, int, int, int]]:
        """(symbol, first, last, ticks) stored in this run's database, for the symbols the feed
        follows: what ``replay_stored`` can play. Blocking: call from a worker thread."""
        if self.db_path is None:
            return []
        with Store(self.db_path, readonly=True) as store:
            return [row for row in store.tick_spans() if row[0] in self.config.symbols]

    def replay_stored(self, symbols: list[str], start_ms: int, end_ms: int) -> int:
        """Replay the stored ticks of ``symbols`` with ``start_ms <= time <= end_ms`` through the
        shared pipeline, continuing after what was replayed so far. Returns the number of ticks.
        Blocking (reads the store): call from a worker thread; the exchange picks it up on its loop."""
        ex = self._replaying()
        assert self.db_path is not None
        unknown = sorted(set(symbols) - set(self.config.symbols))
        if not symbols or unknown:
            raise ReplayError(f"replay: pick symbols the feed follows ({', '.join(self.config.symbols)})"
                             + (f"; not followed: {', '.join(unknown)}" if unknown else ""))
        if end_ms < start_ms:
            raise ReplayError(f"replay: the range ends ({end_ms}) before it starts ({start_ms})")
        with Store(self.db_path, readonly=True) as store:
            n = sum(store.tick_count_between(s, start_ms, end_ms + 1) for s in symbols)
            if n == 0:
                raise ReplayError(f"replay: no stored ticks of {', '.join(symbols)} in that range")
            if n > REPLAY_MAX_TICKS:
                raise ReplayError(f"replay: {n:,} ticks in that range, more than {REPLAY_MAX_TICKS:,}: "
                                 "pick a shorter range")
            ticks = [t for s in symbols for t in store.iter_ticks(s, start_ms, end_ms + 1)]
        recording = recording_from_ticks(ticks, f"stored ticks of {', '.join(symbols)} in {self.db_path}")
        assert self._loop is not None
        self._loop.call_soon_threadsafe(ex.load, recording)
        return len(ticks)

    # -- status --------------------------------------------------------------------------------
    def load_closes(self, symbols: list[str], timeframe: str, *, last: int | None = None) -> pd.DataFrame:
        """Stored closes of closed bars (``history.load_closes``) from this run's database.

        Blocking: call it from a worker thread. It opens its own read-only connection (WAL lets it
        read while the writer thread writes).
        """
        if self.db_path is None:
            raise StoreError("the runtime has not started yet: no database to read")
        with Store(self.db_path, readonly=True) as store:
            return load_closes(store, symbols, timeframe, last=last, grace_ms=self.config.bars.close_grace_ms)

    # -- uploaded trades (data.binance.vision aggTrades) -------------------------------------------
    async def import_trades(self, name: str, data: bytes,
                            progress: Callable[[int, int], None] | None = None) -> ImportResult:
        """Store an uploaded aggTrades ``.csv`` / ``.zip``, all or nothing, through the writer thread
        (live ticks wait in its queue meanwhile). ``progress(rows read, rows in the file)``."""
        if self.writer is None:
            raise StoreError("the runtime has not started yet: no database to store into")
        cap = int(self.config.storage.max_upload_mb * 2**20)
        csv_name, csv = await asyncio.to_thread(unpack_agg_trades, name, data, max_bytes=cap)
        total = max(1, csv.count(b"\n") + (not csv.endswith(b"\n")))
        with tempfile.TemporaryDirectory(prefix="quantpanel-import-") as tmp:
            path = Path(tmp) / csv_name
            await asyncio.to_thread(path.write_bytes, csv)
            report = (lambda n: progress(n, total)) if progress else None
            fut = self.writer.call(lambda store: import_file(store, path, progress=report))
            result = await asyncio.wrap_future(fut)
        assert isinstance(result, ImportResult)
        return result

    # -- uploaded OHLC (offline mode) ------------------------------------------------------------
    def store_ohlc(self, series: list[OhlcSeries]) -> int:
        """Store validated OHLC series in one transaction. Blocking: call from a worker thread."""
        if self.db_path is None:
            raise StoreError("the runtime has not started yet: no database to store into")
        with Store(self.db_path) as store:
            return store_ohlc(store, series)

    def ohlc_series(self) -> list[tuple[str, str, int, int, int]]:
        if self.db_path is None:
            return []
        with Store(self.db_path, readonly=True) as store:
            return store.ohlc_series()

    def read_ohlc(self, symbol: str, timeframe: str) -> pd.DataFrame:
        """Imported bars of one series: time (UTC) and BAR_COLUMNS, NaN where the file did not say."""
        assert self.db_path is not None
        with Store(self.db_path, readonly=True) as store:
            bars = store.read_ohlc(symbol, timeframe)
        df = pd.DataFrame([[getattr(b, c) for c in BAR_COLUMNS] for b in bars], columns=list(BAR_COLUMNS))
        df["time"] = pd.to_datetime(df["time"].astype("int64"), unit="ms").astype("datetime64[ns]")
        return df

    def load_bars(self, symbols: list[str], timeframe: str) -> dict[str, list[Bar]]:
        """Every stored closed bar of each symbol (``history.load_bars``), after checking the
        database holds them (``history.require_series``: the error lists what it does hold).
        Blocking: call it from a worker thread."""
        if self.db_path is None:
            raise StoreError("the runtime has not started yet: no database to read")
        grace = self.config.bars.close_grace_ms
        with Store(self.db_path, readonly=True) as store:
            for sym in symbols:
                require_series(store, sym, timeframe)
            return {s: load_bars(store, s, timeframe, include_forming=False, grace_ms=grace) for s in symbols}

    def stored_series(self) -> tuple[list[str], list[tuple[str, str]]]:
        """What this run's database can serve to the analytics (``history.stored_series``)."""
        if self.db_path is None:
            return [], []
        with Store(self.db_path, readonly=True) as store:
            return stored_series(store)

    def status(self) -> Status:
        now = time.monotonic()
        recent = [(t, n) for t, n in self._rate if now - t <= 5.0]
        rate = sum(n for _, n in recent) / 5.0 if recent else 0.0
        st = self.feed.stats if self.feed else None
        age = None
        if st and st.last_recv_wall_ms:
            age = max(0.0, time.time() - st.last_recv_wall_ms / 1000)
        replay = self.source_kind == "REPLAY"
        db = self.config.storage.replay_db_path if replay else self.config.storage.db_path
        return Status(
            source=self.source_kind,
            label=self.config.replay.label if replay else self.config.feed.ws_url,
            simulated=replay and self.config.replay.simulated,
            state=st.state if st else "starting",
            ticks_per_s=rate,
            last_tick_age_s=age,
            ticks=st.ticks if st else 0,
            malformed=st.malformed if st else 0,
            reconnects=st.reconnects if st else 0,
            db_path=str(db),
            error=self.error or (st.last_error if st and st.state != "connected" else ""),
            replay_time_ms=self.exchange.replay_time_ms if self.exchange else None,
            paused=bool(self.exchange and self.exchange.paused),
            speed=self.exchange.speed if self.exchange else 1.0,
            gaps=self.backfill.stats.gaps if self.backfill else 0,
            backfilled=self.backfill.stats.trades_filled if self.backfill else 0,
            gaps_unfilled=self.backfill.stats.gaps_unfilled if self.backfill else 0,
        )

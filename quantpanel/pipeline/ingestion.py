"""The one ingestion build: config in, a running feed -> backfill -> pipeline -> writer out.

The server's runtime, ``quantpanel record`` and a headless ingest process all build ingestion
here, so the config-to-arguments mapping and the order of the wiring (warm start before the
first tick, the backfill probing on every connect) exist once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantpanel.config import Config
from quantpanel.feeds.backfill import Backfill
from quantpanel.feeds.connection import FeedConnection
from quantpanel.models import Bar, TickBatch
from quantpanel.pipeline.backfilling import make_backfill
from quantpanel.pipeline.graph import Pipeline
from quantpanel.pipeline.history import warm_start
from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

__all__ = ["Ingestion", "build_ingestion", "make_feed"]

log = logging.getLogger(__name__)
_RATE_WINDOW_S = 5.0


def make_feed(cfg: Config, url: str | None = None,
              on_batch: Callable[[TickBatch], None] | None = None) -> FeedConnection:
    """A feed connection to ``url`` (default ``feed.ws_url``) with the config's batching,
    watchdog, backoff and rollover."""
    f = cfg.feed
    return FeedConnection(
        url or f.ws_url, cfg.symbols, on_batch or (lambda _batch: None),
        batch_max_ticks=f.batch_max_ticks, batch_interval_ms=f.batch_interval_ms,
        silence_timeout_s=f.silence_timeout_s, connect_timeout_s=f.connect_timeout_s,
        backoff_initial_s=f.backoff_initial_s, backoff_max_s=f.backoff_max_s,
        max_connection_age_s=f.max_connection_age_s,
    )


@dataclass
class Ingestion:
    """A built ingest: everything exists; ``start`` runs the feed, ``stop`` drains and closes."""

    db_path: Path
    writer: StoreWriter
    pipeline: Pipeline
    backfill: Backfill
    feed: FeedConnection
    history: dict[tuple[str, str], list[Bar]]  # the warm start's last bars per series
    _rate: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))
    _task: asyncio.Task[None] | None = None

    def on_batch(self, batch: TickBatch) -> None:
        """The feed's batches: counted, then in id order (gaps filled) into the pipeline."""
        self._rate.append((time.monotonic(), len(batch.ticks)))
        self.backfill.on_batch(batch)

    @property
    def ticks_per_s(self) -> float:
        now = time.monotonic()
        return sum(n for t, n in self._rate if now - t <= _RATE_WINDOW_S) / _RATE_WINDOW_S

    def start(self, task: asyncio.Task[None] | None = None) -> asyncio.Task[None]:
        """Run the feed (or adopt ``task``, its already running ``run()``)."""
        if self._task is None:
            self._task = task or asyncio.get_running_loop().create_task(self.feed.run(), name="feed")
        return self._task

    async def stop(self, *, drain_s: float = 10.0) -> None:
        """Stop the feed, let the backfill finish (up to ``drain_s``), write what is queued."""
        await self.feed.stop()
        if self._task is not None:  # it ends once the socket closes, flushing its last batch
            await asyncio.wait({self._task}, timeout=5.0)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.backfill.drain(drain_s)
        await asyncio.to_thread(self.writer.flush)
        self.writer.close()

    def summary(self) -> dict[str, Any]:
        """What was ingested, under the keys ``quantpanel record`` prints."""
        st, bf, w, rest = self.feed.stats, self.backfill.stats, self.writer.stats, self.backfill.rest
        return {
            "db": str(self.db_path), "ticks_received": st.ticks, "ticks_stored": w.ticks_written,
            "duplicates_ignored": w.ticks_ignored, "bars_stored": w.bars_written, "frames": st.frames,
            "malformed": st.malformed, "other_events": dict(st.other_events), "connects": st.connects,
            "reconnects": st.reconnects, "store_errors": w.errors, "gaps": bf.gaps,
            "trades_backfilled": bf.trades_filled, "gaps_unfilled": bf.gaps_unfilled,
            "rest_requests": rest.stats.requests if rest else 0,
            "rest_retries": rest.stats.retries if rest else 0,
            "backfill_holds": bf.holds, "longest_hold_s": round(bf.longest_hold_s, 3),
            "watchdog_reconnects": st.watchdog_reconnects,
        }


def build_ingestion(cfg: Config, db_path: str | Path, *, history_bars: int = 0,
                    feed: FeedConnection | None = None, ws_url: str | None = None,
                    rest_url: str | None = None, writer: StoreWriter | None = None,
                    on_rebuilt: Callable[[list[Bar]], object] | None = None) -> Ingestion:
    """Warm start from ``db_path``, then pipeline, backfill and feed wired in that order.

    ``feed``: a connection opened earlier (the runtime's live probe) to adopt instead of a new one
    to ``ws_url``; batches it delivered before, hand to ``on_batch`` once the consumers are wired.
    ``writer``: the database's writer if it is open already (else one is opened).
    ``history_bars`` bars per series are kept for the dashboard; ``on_rebuilt(bars)`` gets the
    stored bars a late backfill rewrote (in the writer thread).
    """
    db = Path(db_path)
    writer = writer or StoreWriter(db)
    with Store(db) as store:
        warm = warm_start(store, cfg.symbols, cfg.timeframes, bars=history_bars,
                          grace_ms=cfg.bars.close_grace_ms)
        last_ids = {s: store.max_agg_id(s) for s in cfg.symbols}
    writer.put_bars(warm.recovered)
    pipeline = Pipeline(warm.state, writer)
    backfill = make_backfill(cfg, pipeline.emit, writer, last_ids, rest_url=rest_url, on_rebuilt=on_rebuilt)
    ing = Ingestion(db, writer, pipeline, backfill, feed or make_feed(cfg, ws_url), warm.history)
    ing.feed.on_batch = ing.on_batch
    ing.feed.on_connect = backfill.probe
    if ing.feed.connected.is_set():  # connected before the store was known: probe now
        backfill.probe()
    return ing

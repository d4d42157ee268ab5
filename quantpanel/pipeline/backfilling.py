"""Wiring of the gap backfill between a feed connection and the pipeline (one way for the
server's runtime and for ``quantpanel record``): late-filled trades go to the store, and the
stored bars they touch are rebuilt in the writer thread."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from quantpanel.config import Config
from quantpanel.feeds.backfill import Backfill
from quantpanel.feeds.rest import RestClient
from quantpanel.models import Bar, TickBatch
from quantpanel.pipeline.history import rebuild_bars_since
from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

__all__ = ["make_backfill"]


def make_backfill(cfg: Config, emit: Callable[[TickBatch], object], writer: StoreWriter,
                  last_ids: Mapping[str, int], *, rest_url: str | None = None,
                  on_rebuilt: Callable[[list[Bar]], object] | None = None) -> Backfill:
    """A Backfill fetching from ``rest_url`` (default ``feed.rest_url``; empty disables it).

    ``on_rebuilt(bars)`` gets the stored bars a late fill rewrote, in the writer thread."""
    url = cfg.feed.rest_url if rest_url is None else rest_url
    tfs, grace = list(cfg.timeframes), cfg.bars.close_grace_ms

    def rebuild_in_writer(store: Store, symbol: str, since_ms: int) -> None:
        bars = rebuild_bars_since(store, symbol, tfs, since_ms, grace)
        if bars and on_rebuilt is not None:
            on_rebuilt(bars)

    def rebuild(symbol: str, since_ms: int) -> None:
        writer.call(lambda store: rebuild_in_writer(store, symbol, since_ms))

    rest = RestClient(url, weight_limit_1m=cfg.feed.rest_weight_limit_1m) if url else None
    return Backfill(rest, emit, last_ids=last_ids,
                    max_hold_s=cfg.feed.backfill_max_hold_s, store_late=writer.put_ticks, on_filled=rebuild)

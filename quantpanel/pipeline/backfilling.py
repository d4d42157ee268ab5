"""Wiring of the gap backfill between a feed connection and the pipeline (one way for the
server's runtime and for ``quantpanel record``): late-filled trades go to the store, and the
stored bars they touch are rebuilt in the writer thread."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from quantpanel.config import Config
from quantpanel.feeds.backfill import Backfill
from quantpanel.feeds.rest import RestClient
from quantpanel.models import TickBatch
from quantpanel.pipeline.history import rebuild_bars_since
from quantpanel.storage.writer import StoreWriter

__all__ = ["make_backfill"]


def make_backfill(cfg: Config, emit: Callable[[TickBatch], object], writer: StoreWriter,
                  last_ids: Mapping[str, int], *, rest_url: str | None = None) -> Backfill:
    """A Backfill fetching from ``rest_url`` (default ``feed.rest_url``; empty disables it)."""
    url = cfg.feed.rest_url if rest_url is None else rest_url
    tfs, grace = list(cfg.timeframes), cfg.bars.close_grace_ms

    def rebuild(symbol: str, since_ms: int) -> None:
        writer.call(lambda store: rebuild_bars_since(store, symbol, tfs, since_ms, grace))

    rest = RestClient(url, weight_limit_1m=cfg.feed.rest_weight_limit_1m) if url else None
    return Backfill(rest, emit, last_ids=last_ids,
                    max_hold_s=cfg.feed.backfill_max_hold_s, store_late=writer.put_ticks, on_filled=rebuild)

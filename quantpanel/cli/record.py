"""``quantpanel record``: headless ingest of the feed into the database, with a JSON summary."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from typing import Any

from quantpanel.config import Config, load_config

__all__ = ["record", "run_record"]

log = logging.getLogger("quantpanel")  # the CLI's logger, as before the split (log lines name it)


async def record(cfg: Config, duration: float | None) -> dict[str, Any]:
    """Headless ingest: feed -> pipeline (store + bars) for ``duration`` s or until a signal."""
    from quantpanel.feeds.connection import FeedConnection
    from quantpanel.pipeline.backfilling import make_backfill
    from quantpanel.pipeline.graph import Pipeline
    from quantpanel.pipeline.history import warm_start
    from quantpanel.alerts.rules import inactive_reason
    from quantpanel.config import alert_rules
    from quantpanel.storage.store import Store
    from quantpanel.storage.writer import StoreWriter

    inactive = [{"name": r.name, "reason": why} for r in alert_rules(cfg)
                if (why := inactive_reason(r, cfg.symbols, cfg.timeframes)) is not None]
    for rule in inactive:
        log.warning("alert rule %r is inactive: %s", rule["name"], rule["reason"])
    db = cfg.storage.db_path
    writer = StoreWriter(db)
    with Store(db) as store:
        warm = warm_start(store, cfg.symbols, cfg.timeframes, bars=0, grace_ms=cfg.bars.close_grace_ms)
        last_ids = {s: store.max_agg_id(s) for s in cfg.symbols}
    writer.put_bars(warm.recovered)
    pipeline = Pipeline(warm.state, writer)
    f = cfg.feed
    backfill = make_backfill(cfg, pipeline.emit, writer, last_ids)
    feed = FeedConnection(f.ws_url, cfg.symbols, backfill.on_batch, batch_max_ticks=f.batch_max_ticks,
                          batch_interval_ms=f.batch_interval_ms, silence_timeout_s=f.silence_timeout_s,
                          connect_timeout_s=f.connect_timeout_s, backoff_initial_s=f.backoff_initial_s,
                          backoff_max_s=f.backoff_max_s,
                          max_connection_age_s=f.max_connection_age_s)
    feed.on_connect = backfill.probe
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    task = loop.create_task(feed.run())
    try:
        await asyncio.wait_for(stop.wait(), duration)
    except TimeoutError:
        pass
    await feed.stop()
    await task
    await backfill.drain(30)
    await asyncio.to_thread(writer.flush)
    writer.close()
    st, bf = feed.stats, backfill.stats
    return {
        "db": str(db), "seconds": round(time.monotonic() - started, 3), "ticks_received": st.ticks,
        "ticks_stored": writer.stats.ticks_written, "duplicates_ignored": writer.stats.ticks_ignored,
        "bars_stored": writer.stats.bars_written, "frames": st.frames, "malformed": st.malformed,
        "other_events": dict(st.other_events), "connects": st.connects,
        "reconnects": st.reconnects, "store_errors": writer.stats.errors,
        "gaps": bf.gaps, "trades_backfilled": bf.trades_filled, "gaps_unfilled": bf.gaps_unfilled,
        "rest_requests": backfill.rest.stats.requests if backfill.rest else 0,
        "rest_retries": backfill.rest.stats.retries if backfill.rest else 0,
        "backfill_holds": bf.holds, "longest_hold_s": round(bf.longest_hold_s, 3),
        "watchdog_reconnects": st.watchdog_reconnects, "alert_rules_inactive": inactive,
    }


def run_record(args: argparse.Namespace) -> int:
    """Record with the flags over the config; the summary is one JSON line on stdout."""
    cfg = load_config(args.config, {"symbols": _symbols(args.symbols), "storage.db_path": args.db,
                                    "feed.ws_url": args.ws_url, "feed.rest_url": args.rest_url})
    print(f"recording {','.join(cfg.symbols)} from {cfg.feed.ws_url} into {cfg.storage.db_path}",
          file=sys.stderr, flush=True)
    summary = asyncio.run(record(cfg, args.duration))
    print(json.dumps(summary), flush=True)
    return 0


def _symbols(text: str | None) -> list[str] | None:
    """``--symbols``: comma- or space-separated; None keeps the config's."""
    return text.replace(",", " ").split() if text else None

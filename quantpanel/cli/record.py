"""``quantpanel record``: headless ingest of the feed into the database, with a JSON summary."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    from quantpanel.alerts.rules import inactive_reason
    from quantpanel.config import alert_rules
    from quantpanel.pipeline.ingestion import build_ingestion
    from quantpanel.pipeline.interpreter import tune_interpreter

    inactive = [{"name": r.name, "reason": why} for r in alert_rules(cfg)
                if (why := inactive_reason(r, cfg.symbols, cfg.timeframes)) is not None]
    for rule in inactive:
        log.warning("alert rule %r is inactive: %s", rule["name"], rule["reason"])
    ingestion = build_ingestion(cfg, cfg.storage.db_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    tune_interpreter()  # a long-running ingesting process (pipeline/interpreter.py)
    ingestion.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)
    await ingestion.stop(drain_s=30)
    summary = ingestion.summary()
    return {"db": summary.pop("db"), "seconds": round(time.monotonic() - started, 3), **summary,
            "alert_rules_inactive": inactive}


def run_record(args: argparse.Namespace) -> int:
    """Record with the flags over the config; the summary is one JSON line on stdout."""
    cfg = load_config(args.config, {"symbols": _words(args.symbols), "storage.db_path": args.db,
                                    "feed.ws_url": args.ws_url, "feed.rest_url": args.rest_url,
                                    "feed.public_ws_url": args.public_ws_url,
                                    "feed.streams": _words(args.streams),
                                    "feed.spot_symbols": (None if args.spot_symbols is None
                                                          else _words(args.spot_symbols) or []),
                                    "feed.spot_ws_url": args.spot_ws_url})
    print(f"recording {','.join(cfg.symbols)} ({','.join(cfg.feed.streams)}) from {cfg.feed.ws_url}"
          f"{' and ' + cfg.feed.public_ws_url if 'bookTicker' in cfg.feed.streams else ''}"
          f" into {cfg.storage.db_path}", file=sys.stderr, flush=True)
    summary = asyncio.run(record(cfg, args.duration))
    print(json.dumps(summary), flush=True)
    return 0


def _words(text: str | None) -> list[str] | None:
    """``--symbols`` / ``--streams``: comma- or space-separated; None keeps the config's."""
    return text.replace(",", " ").split() if text else None

"""``quantpanel ingest --broker URL``: the one runtime, headless, publishing to Redis Streams."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from quantpanel.config import Config, load_config
from quantpanel.errors import ConfigError

__all__ = ["ingest", "run_ingest"]

log = logging.getLogger("quantpanel")


async def ingest(cfg: Config, url: str, *, source: str | None = None) -> None:
    """Feed, backfill, store, bars, pair analytics and alerts (``Runtime``), published until a signal."""
    from quantpanel.broker.publisher import Publisher
    from quantpanel.pipeline.interpreter import tune_interpreter
    from quantpanel.pipeline.runtime import Runtime

    tune_interpreter()  # a long-running ingesting process (pipeline/interpreter.py)
    runtime = Runtime(cfg, source=source)
    publisher = Publisher(runtime, url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    start = loop.create_task(runtime.start(), name="runtime")
    publishing = loop.create_task(publisher.run(), name="publisher")
    stopping = loop.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({start, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if start in done:
            start.result()  # a start-up error is the user's to see
            print(f"quantpanel ingest: {runtime.source_kind} into {runtime.db_path}, publishing to {url} "
                  f"(prefix {cfg.broker.prefix})", file=sys.stderr, flush=True)
            await asyncio.wait({publishing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if publishing.done():
                publishing.result()
    finally:
        for t in (start, stopping):
            t.cancel()
        await asyncio.gather(start, stopping, return_exceptions=True)
        await runtime.stop()  # the store drained first (the publisher sends what it closes meanwhile)
        publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)


def run_ingest(args: argparse.Namespace) -> int:
    from quantpanel.cli.serve import _db_dir

    cfg = load_config(args.config, {"broker.url": args.broker, "source": args.source, "feed.ws_url": args.ws_url,
                                    "replay.speed": args.speed, **_db_dir(args.db_dir)})
    if not cfg.broker.url:
        raise ConfigError("ingest publishes to a broker: pass --broker redis://HOST:PORT/DB (or set broker.url)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(ingest(cfg, cfg.broker.url, source=args.source))
    print("quantpanel ingest stopped", file=sys.stderr, flush=True)
    return 0

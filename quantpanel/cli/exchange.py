"""``quantpanel exchange``: the local Binance-compatible exchange as a process of its own, for
offline runs, tests and benchmarks that point a real feed at it."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from quantpanel.config import load_config
from quantpanel.errors import ConfigError

__all__ = ["run_exchange"]


def run_exchange(args: argparse.Namespace) -> int:
    """Replay the recording until a signal (or, with ``--exit-when-done``, its end); print stats."""
    from quantpanel.feeds.exchange import Exchange, Faults
    from quantpanel.feeds.recording import load_recording

    cfg = load_config(args.config, {})
    data = Path(args.data) if args.data else cfg.replay.data
    recording = load_recording(data)

    try:
        faults = Faults(drop_every=args.drop_every, garbage_every=args.garbage_every,
                        every=args.faults_every, kinds=tuple(k for k in args.fault_kinds.split(",") if k),
                        seed=args.fault_seed, stall_s=args.stall_s, rest_fail_every=args.rest_fail_every)
    except ValueError as exc:
        raise ConfigError(f"--fault-kinds: {exc}") from None

    async def run() -> None:
        ex = Exchange(
            recording, speed=args.speed, loop=args.loop, rebase_to_now=args.rebase_to_now,
            host=args.host, port=args.port, pause_when_idle=not args.free_run,
            faults=faults,
            sent_log=Path(args.sent_log) if args.sent_log else None,
        )
        await ex.start()
        print(f"exchange listening on {ex.url} replaying {len(recording.trades)} trades of "
              f"{','.join(recording.symbols)} from {data}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waits = [asyncio.ensure_future(stop.wait())]
        if args.exit_when_done:
            waits.append(asyncio.ensure_future(ex.done.wait()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if args.exit_when_done and ex.done.is_set():
            await asyncio.sleep(args.linger)
        await ex.stop()
        print(json.dumps({"frames_sent": ex.stats.frames_sent, "drops": ex.stats.drops,
                          "garbage_sent": ex.stats.garbage_sent,
                          "connections": ex.stats.connections}), flush=True)

    asyncio.run(run())
    return 0

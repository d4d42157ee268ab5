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

__all__ = ["add_market_options", "run_exchange"]


def add_market_options(parser: argparse.ArgumentParser) -> None:
    """``--quotes``, ``--spot``, ``--funding-interval-s``, ``--market-seed``, ``--no-simulated`` and
    ``--fault-routes`` of ``quantpanel exchange`` (``run_exchange`` reads each with a default, so a
    parser without them still works)."""
    parser.add_argument("--quotes", help="capture whose bookTicker frames are served on /public (.gz ok)")
    parser.add_argument("--spot", help="spot recording served as spot aggTrades on /spot")
    parser.add_argument("--funding-interval-s", type=int, default=60,
                        help="SIMULATED funding interval in recording seconds (real Binance: 8 h)")
    parser.add_argument("--market-seed", type=int, default=0, help="seed of the simulated mark/funding/liquidations")
    parser.add_argument("--no-simulated", action="store_true",
                        help="no simulated markPrice, forceOrder, funding or open interest")
    parser.add_argument("--fault-routes", default="",
                        help="comma-separated routes that get frame faults and refusals (market,public,private,spot; "
                             "default all)")


def run_exchange(args: argparse.Namespace) -> int:
    """Replay the recording until a signal (or, with ``--exit-when-done``, its end); print stats."""
    from quantpanel.feeds.exchange import Exchange, Faults
    from quantpanel.feeds.exchange.simulated import MarketModel
    from quantpanel.feeds.recording import load_recording

    cfg = load_config(args.config, {})
    data = Path(args.data) if args.data else cfg.replay.data
    quotes, spot_path = getattr(args, "quotes", None), getattr(args, "spot", None)
    recording = load_recording(data, quotes=quotes)
    spot = load_recording(spot_path) if spot_path else None

    try:
        faults = Faults(drop_every=args.drop_every, garbage_every=args.garbage_every,
                        every=args.faults_every, kinds=tuple(k for k in args.fault_kinds.split(",") if k),
                        seed=args.fault_seed, stall_s=args.stall_s, rest_fail_every=args.rest_fail_every,
                        routes=tuple(r for r in getattr(args, "fault_routes", "").split(",") if r))
    except ValueError as exc:
        raise ConfigError(f"--fault-kinds / --fault-routes: {exc}") from None
    try:
        model = None if getattr(args, "no_simulated", False) else MarketModel(
            seed=getattr(args, "market_seed", 0), funding_interval_s=getattr(args, "funding_interval_s", 60))
    except ValueError as exc:
        raise ConfigError(f"--funding-interval-s: {exc}") from None

    async def run() -> None:
        ex = Exchange(
            recording, speed=args.speed, loop=args.loop, rebase_to_now=args.rebase_to_now,
            host=args.host, port=args.port, pause_when_idle=not args.free_run,
            faults=faults,
            sent_log=Path(args.sent_log) if args.sent_log else None,
            spot=spot, market_model=model,
        )
        await ex.start()
        print(f"exchange listening on {ex.url} replaying {len(recording.trades)} trades of "
              f"{','.join(recording.symbols)} from {data}", flush=True)
        print(f"  market route {ex.market_url} (aggTrade{', SIMULATED markPrice, forceOrder' if model else ''})",
              flush=True)
        print(f"  public route {ex.public_url} ({len(recording.quotes)} bookTicker from {quotes})"
              if quotes else f"  public route {ex.public_url} (no quotes: --quotes PATH)", flush=True)
        if spot is not None:
            print(f"  spot route   {ex.spot_url} ({len(spot.trades)} spot trades from {spot_path})", flush=True)
        print(f"  REST         {ex.rest_url} (aggTrades{', SIMULATED fundingRate, openInterest' if model else ''})",
              flush=True)
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
                          "connections": ex.stats.connections,
                          "market_frames": dict(ex.stats.market_frames)}), flush=True)

    asyncio.run(run())
    return 0

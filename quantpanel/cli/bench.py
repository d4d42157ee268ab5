"""``quantpanel bench``: the benchmark suite (``quantpanel.bench``) against its targets."""

from __future__ import annotations

import argparse
from pathlib import Path

from quantpanel.config import load_config

__all__ = ["run_bench"]


def run_bench(args: argparse.Namespace) -> int:
    """Run the suite on ``--data`` (default: the replay recording); its exit status is the bench's."""
    from quantpanel.bench import main as bench_main

    cfg = load_config(args.config, {})
    soak = args.soak_minutes if args.soak_minutes is not None else (30.0 if args.soak else 0.0)
    quotes = None if args.data else cfg.replay.quotes  # the bundled quotes go with the bundled trades
    return bench_main(Path(args.data) if args.data else cfg.replay.data, quick=args.quick,
                      as_json=args.json, push=not args.no_push, broker=not args.no_broker,
                      soak_minutes=soak, quotes=quotes)

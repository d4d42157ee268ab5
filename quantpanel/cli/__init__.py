"""The ``quantpanel`` command line (``quantpanel.cli:main``; ``python -m quantpanel.cli``).

Every command reads config.yaml (``--config``) and its flags override the config. Errors the user
can fix (bad config, bad file, unreachable DB) print one clear message and exit with status 2.

``parser`` builds the command line; one module per concern runs its commands: ``serve``,
``exchange``, ``record``, ``data`` (import, bars), ``pair`` (analyze, backtest, sweep), ``bench``.
Each command imports what it needs (Panel, pandas, statsmodels) when it runs, so ``--help`` and
the light commands start fast.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from quantpanel.cli.parser import build_parser, parse_time
from quantpanel.cli.serve import app_options
from quantpanel.errors import QuantPanelError

__all__ = ["app_options", "main", "parse_time"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a ``QuantPanelError`` is the user's to fix: its message, then status 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except QuantPanelError as exc:
        print(f"quantpanel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

"""quantpanel: real-time quantitative analytics for Binance USD-M Futures.

In a notebook::

    import quantpanel as qp
    series = qp.plots.pair_series(closes_a, closes_b, window=60)
    qp.plots.zscore(series, entry=2)
    qp.analytics.ols_hedge(closes_a, closes_b)

``qp.plots`` (Panel/HoloViews) and ``qp.analytics`` load on first use, so the command line does not
pay for them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {"plots": "quantpanel.dashboard.notebook", "analytics": "quantpanel.analytics"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(_LAZY[name])
    raise AttributeError(f"module 'quantpanel' has no attribute {name!r}")

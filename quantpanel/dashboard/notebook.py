"""The dashboard's charts for notebooks: ``import quantpanel as qp; qp.plots.zscore(...)``.

A leaf facade: every function returns the same HoloViews elements the dashboard draws
(``dashboard.plots``), built by the same analytics, from DataFrames or from a stored range. ``live``
streams a symbol's candles in the notebook from the process's one runtime (``hub.get_hub``; a
replay of the bundled data by default). Nothing in quantpanel imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import holoviews as hv
import pandas as pd
import panel as pn

from quantpanel.analytics.correlation import correlation_matrix
from quantpanel.analytics.series import pair_series
from quantpanel.config import Config, load_config
from quantpanel.dashboard import plots
from quantpanel.dashboard.hub import Hub, get_hub
from quantpanel.dashboard.views import SymbolView
from quantpanel.models import timeframe_ms
from quantpanel.pipeline.history import load_bars
from quantpanel.storage.store import Store

__all__ = ["bars", "candles", "pair_series", "spread", "zscore", "correlation", "hedge_ratios",
           "correlation_heatmap", "live", "LiveColumn"]

candles = plots.candles_chart
spread = plots.spread_chart
zscore = plots.zscore_chart
correlation = plots.corr_chart
hedge_ratios = plots.betas_chart


def bars(symbol: str, timeframe: str = "1m", *, db: str | None = None, start: int | None = None,
         end: int | None = None, config: Config | None = None) -> pd.DataFrame:
    """Stored closed bars of ``symbol`` as the charts' DataFrame (``time`` = bar open, UTC)."""
    cfg = config or load_config()
    with Store(db or cfg.storage.db_path, readonly=True) as store:
        closed = load_bars(store, symbol.upper(), timeframe, start, end, include_forming=False)
    return plots.bars_frame(closed, timeframe_ms(timeframe))


def correlation_heatmap(closes: pd.DataFrame, *, window: int | None = 60) -> hv.Overlay:
    """One column of closes per symbol -> the Correlation tab's heatmap."""
    return plots.heatmap_chart(correlation_matrix(closes, window=window))


class LiveColumn(pn.Column):
    """What ``live`` returns: its symbols' views, with ``views`` (for notebooks that poll what
    arrived) and ``hub``."""

    views: list[SymbolView]
    hub: Hub


def live(symbols: Sequence[str] | None = None, *, timeframe: str = "1s", source: str = "replay",
         config: Config | None = None, period_ms: int = 500) -> LiveColumn:
    """Streaming candles in the notebook, fed by the kernel's one runtime (started on first use,
    as ``panel serve`` starts it; a start-up failure shows in ``column.hub.status().error``).

    ``source="replay"`` replays the bundled real recording through the local exchange, so it
    works offline; ``"live"`` connects to Binance.
    """
    cfg = config or load_config()
    hub = get_hub(cfg, source=source)
    views = [SymbolView(hub, symbol=s, timeframe=timeframe) for s in (symbols or cfg.symbols[:2])]
    column = LiveColumn(*views, sizing_mode="stretch_width")
    column.views = views
    column.hub = hub

    def pull() -> None:
        for v in views:
            v.pull()

    pn.state.add_periodic_callback(pull, period=period_ms)
    return column

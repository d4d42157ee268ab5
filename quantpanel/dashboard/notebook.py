"""The dashboard's charts for notebooks: ``import quantpanel as qp; qp.plots.zscore(...)``.

Every function returns the same HoloViews elements the dashboard draws (``dashboard.plots``), built
by the same analytics, from DataFrames or from a stored range. ``live`` streams a symbol's candles
in the notebook from the process's one runtime (a replay of the bundled data by default).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn

from quantpanel.analytics import align, kalman_hedge, ols_hedge, rolling_correlation, rolling_zscore
from quantpanel.analytics import spread as spread_values
from quantpanel.analytics.correlation import correlation_matrix
from quantpanel.config import Config, load_config
from quantpanel.dashboard import plots
from quantpanel.dashboard.hub import Hub
from quantpanel.models import timeframe_ms
from quantpanel.pipeline.history import load_bars
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.store import Store

__all__ = ["bars", "candles", "pair_series", "spread", "zscore", "correlation", "hedge_ratios",
           "correlation_heatmap", "live"]


def bars(symbol: str, timeframe: str = "1m", *, db: str | None = None, start: int | None = None,
         end: int | None = None, config: Config | None = None) -> pd.DataFrame:
    """Stored closed bars of ``symbol`` as the charts' DataFrame (``time`` = bar open, UTC)."""
    cfg = config or load_config()
    with Store(db or cfg.storage.db_path, readonly=True) as store:
        closed = load_bars(store, symbol.upper(), timeframe, start, end, include_forming=False)
    return plots.bars_frame(closed, timeframe_ms(timeframe))


def candles(bars_df: pd.DataFrame, *, title: str = "") -> hv.Layout:
    """Candlesticks over volume, as on the Market tab."""
    price = plots.candles(bars_df).opts(height=300, responsive=True, xaxis=None, title=title, ylabel="price")
    vol = plots.volume(bars_df).opts(height=140, responsive=True)
    return (price + vol).cols(1).opts(shared_axes=True)


def pair_series(y: pd.Series, x: pd.Series, *, window: int = 60, lookback: int | None = None,
                delta: float = 1e-4, ve: float = 1e-3) -> pd.DataFrame:
    """The Pair tab's series over a whole history, by the batch analytics: static OLS over the
    last ``lookback`` bars (all when None), its spread, rolling z, rolling correlation of log
    returns, and the Kalman filter's beta and z."""
    ya, xa = align(y, x)
    h = ols_hedge(ya, xa, lookback=lookback)
    s = spread_values(ya, xa, beta=h.beta, alpha=h.alpha)
    k = kalman_hedge(ya, xa, delta=delta, ve=ve)
    return pd.DataFrame({
        "time": pd.DatetimeIndex(ya.index).astype("datetime64[ns]"), "spread": s,
        "zscore": rolling_zscore(s, window=window),
        "corr": rolling_correlation(ya, xa, window=window),
        "beta": np.full(len(ya), h.beta), "alpha": np.full(len(ya), h.alpha),
        "kalman_beta": np.asarray(k.beta), "kalman_z": np.asarray(k.zscore)})


def spread(series: pd.DataFrame) -> hv.Curve:
    return plots.spread_curve(series).opts(responsive=True, height=220, title="spread")


def zscore(series: pd.DataFrame, *, entry: float = 2.0, exit: float = 0.0) -> hv.Overlay:
    """The rolling z-score with ±entry and ±exit lines."""
    return (plots.zscore_curve(series) * plots.thresholds(entry, exit)).opts(
        responsive=True, height=220, title="rolling z-score")


def correlation(series: pd.DataFrame) -> hv.Curve:
    return plots.corr_curve(series).opts(responsive=True, height=220, title="rolling correlation")


def hedge_ratios(series: pd.DataFrame) -> hv.Overlay:
    return plots.betas(series).opts(responsive=True, height=220, title="OLS vs Kalman hedge ratio")


def correlation_heatmap(closes: pd.DataFrame, *, window: int | None = 60) -> hv.Overlay:
    """One column of closes per symbol -> the Correlation tab's heatmap."""
    return plots.corr_heatmap(plots.corr_frame(correlation_matrix(closes, window=window))).opts(
        hv.opts.HeatMap(responsive=True, height=380))


_LIVE: Hub | None = None


def live(symbols: Sequence[str] | None = None, *, timeframe: str = "1s", source: str = "replay",
         config: Config | None = None, period_ms: int = 500) -> pn.Column:
    """Streaming candles in the notebook, fed by one runtime per kernel (started on first use).

    ``source="replay"`` replays the bundled real recording through the local exchange, so it
    works offline; ``"live"`` connects to Binance.
    """
    from quantpanel.dashboard.views import SymbolView  # views build on this module's charts

    global _LIVE
    cfg = config or load_config()
    if _LIVE is None:
        runtime = Runtime(cfg, source=source)
        _LIVE = Hub(runtime, cfg.dashboard.buffer_bars)
        asyncio.get_event_loop().create_task(runtime.start(), context=contextvars.Context())
    hub = _LIVE
    views = [SymbolView(hub, symbol=s, timeframe=timeframe) for s in (symbols or cfg.symbols[:2])]
    column = pn.Column(*views, sizing_mode="stretch_width")
    column.views = views  # for notebooks that want to poll what arrived
    column.hub = hub
    pn.state.add_periodic_callback(lambda: [v.pull() for v in views], period=period_ms)
    return column

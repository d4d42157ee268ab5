"""Bars -> DataFrames -> HoloViews elements. Pure: no state, no I/O, usable in notebooks.

Every glyph reads its own columns of one frame and has a fixed colour: up and down candles are
separate layers whose columns are NaN where the other colour applies (Bokeh skips NaN quads).
HoloViews can then stream only the new rows of a Buffer into the browser; a per-row colour
mapping would force it to resend everything on every update.
"""

from __future__ import annotations

from collections.abc import Sequence

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  registers the Bokeh backend's options
import numpy as np
import pandas as pd

from quantpanel.models import Bar

__all__ = ["bars_frame", "empty_bars_frame", "candles", "volume", "BAR_FRAME_COLUMNS"]

# Select Bokeh without hv.extension(), which would also emit notebook output on import.
hv.Store.set_current_backend("bokeh")

UP, DOWN, WICK = "#26a69a", "#ef5350", "#546e7a"
_TIME = hv.Dimension("t0", label="time (UTC)")
BAR_FRAME_COLUMNS = (
    "time", "open", "high", "low", "close", "volume", "trades", "vwap", "buy_volume",
    "t0", "t1", "up_lo", "up_hi", "dn_lo", "dn_hi", "up_vol", "dn_vol", "zero",
)
_TIME_COLUMNS = ("time", "t0", "t1")


def bars_frame(bars: Sequence[Bar], tf_ms: int) -> pd.DataFrame:
    """Bars as a DataFrame: the bar fields plus the columns the candle glyphs draw from."""
    if not bars:
        return empty_bars_frame()
    t = np.array([b.time for b in bars], dtype="int64")
    o = np.array([b.open for b in bars], dtype="float64")
    c = np.array([b.close for b in bars], dtype="float64")
    v = np.array([b.volume for b in bars], dtype="float64")
    up = c >= o
    half = int(tf_ms * 0.4)
    lo, hi = np.minimum(o, c), np.maximum(o, c)
    return pd.DataFrame({
        "time": pd.to_datetime(t, unit="ms").astype("datetime64[ns]"),
        "open": o,
        "high": np.array([b.high for b in bars], dtype="float64"),
        "low": np.array([b.low for b in bars], dtype="float64"),
        "close": c,
        "volume": v,
        "trades": np.array([b.trades for b in bars], dtype="int64"),
        "vwap": np.array([b.vwap for b in bars], dtype="float64"),
        "buy_volume": np.array([b.buy_volume for b in bars], dtype="float64"),
        "t0": pd.to_datetime(t - half, unit="ms").astype("datetime64[ns]"),
        "t1": pd.to_datetime(t + half, unit="ms").astype("datetime64[ns]"),
        "up_lo": np.where(up, lo, np.nan),
        "up_hi": np.where(up, hi, np.nan),
        "dn_lo": np.where(up, np.nan, lo),
        "dn_hi": np.where(up, np.nan, hi),
        "up_vol": np.where(up, v, np.nan),
        "dn_vol": np.where(up, np.nan, v),
        "zero": np.zeros(len(bars)),
    })


def empty_bars_frame() -> pd.DataFrame:
    return pd.DataFrame({
        c: pd.Series(dtype="datetime64[ns]" if c in _TIME_COLUMNS else
                     "int64" if c == "trades" else "float64")
        for c in BAR_FRAME_COLUMNS
    })


def candles(data: pd.DataFrame) -> hv.Overlay:
    """Candlesticks: up and down bodies (Rectangles) over high-low wicks (Segments)."""
    up = hv.Rectangles(data, kdims=[_TIME, "up_lo", "t1", "up_hi"]).opts(
        color=UP, line_color=UP)
    down = hv.Rectangles(data, kdims=[_TIME, "dn_lo", "t1", "dn_hi"]).opts(
        color=DOWN, line_color=DOWN)
    wicks = hv.Segments(data, kdims=["time", "low", "time", "high"]).opts(color=WICK, line_width=1)
    return up * down * wicks


def volume(data: pd.DataFrame) -> hv.Overlay:
    """Volume bars, coloured like their candles."""
    up = hv.Rectangles(data, kdims=[_TIME, "zero", "t1", "up_vol"]).opts(color=UP, line_color=UP, alpha=0.6)
    down = hv.Rectangles(data, kdims=[_TIME, "zero", "t1", "dn_vol"]).opts(
        color=DOWN, line_color=DOWN, alpha=0.6)
    return up * down

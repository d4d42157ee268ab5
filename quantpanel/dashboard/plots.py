"""Bars -> DataFrames -> HoloViews elements. Pure: no state, no I/O, usable in notebooks."""

from __future__ import annotations

from collections.abc import Sequence

import holoviews as hv
import numpy as np
import pandas as pd

from quantpanel.models import Bar

__all__ = ["bars_frame", "candles", "volume", "BAR_FRAME_COLUMNS", "empty_bars_frame"]

UP, DOWN = "#26a69a", "#ef5350"
BAR_FRAME_COLUMNS = (
    "time", "open", "high", "low", "close", "volume", "trades", "vwap", "buy_volume",
    "t0", "t1", "body_lo", "body_hi", "color",
)


def bars_frame(bars: Sequence[Bar], tf_ms: int) -> pd.DataFrame:
    """Bars as a DataFrame with the columns the candle glyphs draw from (body edges, colour)."""
    if not bars:
        return empty_bars_frame()
    t = np.array([b.time for b in bars], dtype="int64")
    o = np.array([b.open for b in bars], dtype="float64")
    c = np.array([b.close for b in bars], dtype="float64")
    half = int(tf_ms * 0.4)
    df = pd.DataFrame({
        "time": pd.to_datetime(t, unit="ms").astype("datetime64[ns]"),
        "open": o,
        "high": np.array([b.high for b in bars], dtype="float64"),
        "low": np.array([b.low for b in bars], dtype="float64"),
        "close": c,
        "volume": np.array([b.volume for b in bars], dtype="float64"),
        "trades": np.array([b.trades for b in bars], dtype="int64"),
        "vwap": np.array([b.vwap for b in bars], dtype="float64"),
        "buy_volume": np.array([b.buy_volume for b in bars], dtype="float64"),
        "t0": pd.to_datetime(t - half, unit="ms").astype("datetime64[ns]"),
        "t1": pd.to_datetime(t + half, unit="ms").astype("datetime64[ns]"),
        "body_lo": np.minimum(o, c),
        "body_hi": np.maximum(o, c),
        "color": pd.Series(np.where(c >= o, UP, DOWN), dtype="str"),
    })
    return df


def empty_bars_frame() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="float64") for c in BAR_FRAME_COLUMNS})
    for c in ("time", "t0", "t1"):
        df[c] = pd.Series(dtype="datetime64[ns]")
    df["trades"] = pd.Series(dtype="int64")
    df["color"] = pd.Series(dtype="str")
    return df


def candles(data: pd.DataFrame, *, title: str = "") -> hv.Overlay:
    """Candlesticks: high-low wicks (Segments) under open-close bodies (Rectangles)."""
    wicks = hv.Segments(data, kdims=["time", "low", "time", "high"], label="wick").opts(
        color="color", line_width=1)
    bodies = hv.Rectangles(data, kdims=["t0", "body_lo", "t1", "body_hi"], vdims=["color"]).opts(
        color="color", line_color="color")
    return (wicks * bodies).opts(title=title)


def volume(data: pd.DataFrame) -> hv.Rectangles:
    """Volume bars under the candles, coloured like them."""
    vol = data.assign(zero=0.0)
    return hv.Rectangles(vol, kdims=["t0", "zero", "t1", "volume"], vdims=["color"]).opts(
        color="color", line_color="color", alpha=0.6)

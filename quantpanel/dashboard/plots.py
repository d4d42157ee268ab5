"""Bars -> DataFrames -> HoloViews elements. Pure: no state, no I/O, usable in notebooks.

Each HoloViews element costs ~20 ms per refresh whatever its size, so a chart uses as few as it
can: wicks (Segments) and bodies (Rectangles) of all candles, coloured through a colour map on the
numeric ``side`` column (1 up, 0 down). A colour mapped that way is applied in the browser, so
HoloViews can still stream only the new rows of a Buffer (a per-row style column would make it
resend all); numeric, because HoloViews finds a string column's values one Python object at a
time on every refresh (a fifth of a chart's refresh cost with pandas' Arrow strings).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import holoviews as hv
import holoviews.plotting.bokeh  # registers the Bokeh backend's options
import numpy as np
import pandas as pd
from holoviews.util.transform import dim

from quantpanel.models import BAR_COLUMNS, Bar, Liquidation

if TYPE_CHECKING:  # for annotations only: this module of pure frame -> element functions stays light
    from quantpanel.alerts.engine import Alert
    from quantpanel.analytics.backtest import SweepResult
    from quantpanel.pipeline.pairs import PairPoint

# Select Bokeh without hv.extension(), which would also emit notebook output on import.
hv.Store.set_current_backend("bokeh")

__all__ = ["BAR_COLUMNS", "BAR_FRAME_COLUMNS", "bars_frame", "candle_frame", "empty_bars_frame", "candles", "volume",
           "live", "live_candles", "marks_frame", "liquidations_frame", "liquidation_size", "mark_line",
           "liquidation_markers", "MARK_COLUMNS", "LIQUIDATION_COLUMNS", "candles_chart", "pair_frame",
           "spread_curve", "zscore_curve", "corr_curve",
           "thresholds", "betas", "spread_chart", "zscore_chart", "corr_chart", "betas_chart", "equity_frame",
           "equity_curve", "alert_markers", "markers_frame", "drawdown_area", "sweep_frame", "sweep_heatmap",
           "corr_frame", "empty_corr_frame", "corr_heatmap", "heatmap_chart"]

UP, DOWN = "#26a69a", "#ef5350"
_SIDE_COLOURS = {"cmap": [DOWN, UP], "clim": (0, 1)}  # side 0 down, 1 up
_TIME = hv.Dimension("t0", label="time (UTC)")
BAR_FRAME_COLUMNS = (*BAR_COLUMNS, "t0", "t1", "body_lo", "body_hi", "zero", "side")  # + candle geometry
_TIME_COLUMNS = ("time", "t0", "t1")


def bars_frame(bars: Sequence[Bar], tf_ms: int) -> pd.DataFrame:
    """Bars as a DataFrame: the bar fields plus the columns the candle glyphs draw from.
    (Built from numpy columns in one go: every session converts each closed bar.)"""
    if not bars:
        return empty_bars_frame()
    n = len(bars)
    cols = {f: np.fromiter((getattr(b, f) for b in bars), dtype="int64" if f == "trades" else "float64", count=n)
            for f in ("open", "high", "low", "close", "volume", "trades", "vwap", "buy_volume")}
    t = np.fromiter((b.time for b in bars), dtype="int64", count=n).astype("datetime64[ms]").astype("datetime64[ns]")
    return pd.DataFrame({"time": t, **cols, **_geometry(t, cols["open"], cols["close"], tf_ms)})


def candle_frame(df: pd.DataFrame, tf_ms: int) -> pd.DataFrame:
    """Add the candle geometry (t0, t1, body_lo, body_hi, zero, side) to a frame with time (UTC
    datetime) and open/high/low/close/volume: live bars and uploaded OHLC draw the same way."""
    return df.assign(**_geometry(df["time"].to_numpy().astype("datetime64[ns]"), df["open"].to_numpy(dtype="float64"),
                                 df["close"].to_numpy(dtype="float64"), tf_ms))


def _geometry(t: np.ndarray, o: np.ndarray, c: np.ndarray, tf_ms: int) -> dict[str, np.ndarray]:
    half = np.timedelta64(int(tf_ms * 0.4), "ms")
    return {"t0": t - half, "t1": t + half, "body_lo": np.minimum(o, c), "body_hi": np.maximum(o, c),
            "zero": np.zeros(len(t)), "side": (c >= o).astype("float64")}


def empty_bars_frame() -> pd.DataFrame:
    return pd.DataFrame({
        c: pd.Series(dtype="datetime64[ns]" if c in _TIME_COLUMNS else "int64" if c == "trades"
                     else "float64")
        for c in BAR_FRAME_COLUMNS
    })


def candles(data: pd.DataFrame) -> hv.Overlay:
    """Candlesticks: high-low wicks under open-close bodies, green up, red down."""
    wicks = hv.Segments(data, kdims=["time", "low", "time", "high"], vdims=["side"]).opts(
        color="side", **_SIDE_COLOURS, line_width=1, show_legend=False)
    bodies = hv.Rectangles(data, kdims=[_TIME, "body_lo", "t1", "body_hi"], vdims=["side"]).opts(
        color="side", **_SIDE_COLOURS, line_color=None, show_legend=False)
    return (wicks * bodies).opts(show_legend=False)


def volume(data: pd.DataFrame) -> hv.Rectangles:
    """Volume bars, coloured like their candles."""
    return hv.Rectangles(data, kdims=[_TIME, "zero", "t1", "volume"], vdims=["side"]).opts(
        color="side", **_SIDE_COLOURS, line_color=None, alpha=0.6, show_legend=False, ylabel="volume")


def live(template: hv.Element | hv.Overlay, stream: hv.streams.Stream) -> hv.DynamicMap:
    """``template`` (a styled element or overlay) redrawn with each of ``stream``'s data.

    The styling is applied once: each refresh clones the template with its data, and a clone
    keeps it. (``.opts`` in a DynamicMap's callback, on the DynamicMap, or on a Layout holding it
    re-applies options on every refresh: about a third of a chart's refresh cost.)
    """
    def draw(data: pd.DataFrame) -> hv.Element | hv.Overlay:
        if isinstance(template, hv.Overlay):
            return template.clone([el.clone(data) for el in template])
        return template.clone(data)
    return hv.DynamicMap(draw, streams=[stream])


def live_candles(stream: hv.streams.Stream, *, title: str, marks: hv.streams.Stream | None = None,
                 liquidations: hv.streams.Stream | None = None) -> hv.Layout:
    """Candles over volume, redrawn from ``stream`` (a Buffer of ``bars_frame`` rows); they share
    their time axis (a Layout's default: no ``.opts`` on it, see ``live``).

    With ``marks`` (a stream of ``marks_frame`` rows, its data renamed ``marks``) and
    ``liquidations`` (``liquidations_frame`` rows, renamed ``liquidations``), the mark price line
    and the liquidation markers are drawn over the candles: one overlay, one DynamicMap.
    """
    empty = empty_bars_frame()
    price = candles(empty)
    if marks is not None and liquidations is not None:
        price = price * mark_line(marks_frame([])) * liquidation_markers(liquidations_frame([]))
    price = price.opts(height=300, responsive=True, xaxis=None, ylabel="price", title=title,
                       tools=["xwheel_zoom", "xpan"], active_tools=["xpan"], show_legend=False)
    vol = volume(empty).opts(height=140, responsive=True, ylabel="volume", xlabel="time (UTC)")
    if marks is None or liquidations is None:
        return (live(price, stream) + live(vol, stream)).cols(1)

    def draw(data: pd.DataFrame, marks: pd.DataFrame, liquidations: pd.DataFrame) -> hv.Overlay:
        frames = (data, data, marks, liquidations)  # wicks, bodies, mark line, markers
        return price.clone([el.clone(f) for el, f in zip(price, frames, strict=True)])
    return (hv.DynamicMap(draw, streams=[stream, marks, liquidations]) + live(vol, stream)).cols(1)


# -- futures-native layers of the Market chart --------------------------------------------------
MARK_COLUMNS = ("time", "mark")
LIQUIDATION_COLUMNS = ("time", "liq_price", "liq_notional", "liq_side", "liq_size")


def _ms_times(ms: Sequence[int]) -> np.ndarray:
    return np.asarray(ms, dtype="int64").astype("datetime64[ms]").astype("datetime64[ns]")


def marks_frame(points: Sequence[tuple[int, float]]) -> pd.DataFrame:
    """(bar time ms, mark price) points as the mark line's rows."""
    return pd.DataFrame({"time": _ms_times([p[0] for p in points]),
                         "mark": np.array([p[1] for p in points], dtype="float64")})


def liquidation_size(notional: np.ndarray) -> np.ndarray:
    """Marker size in pixels: 5 at 1k of notional or less, +4 per tenfold, at most 28."""
    return np.clip(5 + 4 * np.log10(np.maximum(notional, 1.0) / 1_000), 5, 28)


def liquidations_frame(liqs: Sequence[Liquidation]) -> pd.DataFrame:
    """Liquidations as markers: at the average fill price (else the order price), sized by
    notional, side 1 for BUY (a short liquidated), 0 for SELL (a long liquidated)."""
    price = np.array([x.avg_price if x.avg_price > 0 else x.price for x in liqs], dtype="float64")
    notional = np.array([x.notional if x.notional > 0 else x.price * x.qty for x in liqs], dtype="float64")
    return pd.DataFrame({"time": _ms_times([x.time for x in liqs]), "liq_price": price, "liq_notional": notional,
                         "liq_side": np.array([x.side == "BUY" for x in liqs], dtype="float64"),
                         "liq_size": liquidation_size(notional)})


def mark_line(data: pd.DataFrame) -> hv.Curve:
    """The mark price per bar (the last mark update in it)."""
    return hv.Curve(data, "time", ("mark", "mark price")).opts(color="#6a1b9a", line_width=1.5, alpha=0.8)


def liquidation_markers(data: pd.DataFrame) -> hv.Points:
    """Liquidations: red a long liquidated (SELL), green a short (BUY), area growing with notional."""
    return hv.Points(data, ["time", ("liq_price", "price")], ["liq_notional", "liq_side", "liq_size"]).opts(
        color="liq_side", **_SIDE_COLOURS, size=dim("liq_size"), marker="circle", alpha=0.7,
        line_color="#212121", tools=["hover"], show_legend=False)


def candles_chart(bars_df: pd.DataFrame, *, title: str = "") -> hv.Layout:
    """Candlesticks over volume, sized as on the Market tab (a static frame: notebooks, Offline)."""
    price = candles(bars_df).opts(height=300, responsive=True, xaxis=None, title=title, ylabel="price")
    vol = volume(bars_df).opts(height=140, responsive=True)
    return (price + vol).cols(1).opts(shared_axes=True)


# -- pair analytics -------------------------------------------------------------------------------
PAIR_FRAME_COLUMNS = ("time", "spread", "zscore", "corr", "beta", "alpha", "kalman_beta", "kalman_z")


def pair_frame(points: Sequence[PairPoint]) -> pd.DataFrame:
    """PairPoints as a DataFrame (NaN where a statistic is undefined)."""
    cols = {c: np.array([getattr(p, c) for p in points], dtype="float64") for c in PAIR_FRAME_COLUMNS[1:]}
    t = np.array([p.time for p in points], dtype="int64")
    return pd.DataFrame({"time": pd.to_datetime(t, unit="ms").astype("datetime64[ns]"), **cols})


def spread_curve(data: pd.DataFrame) -> hv.Curve:
    return hv.Curve(data, "time", "spread").opts(color="#5c6bc0", line_width=1.5)


def zscore_curve(data: pd.DataFrame) -> hv.Curve:
    return hv.Curve(data, "time", "zscore").opts(color="#00897b", line_width=1.5)


def corr_curve(data: pd.DataFrame) -> hv.Curve:
    return hv.Curve(data, "time", "corr").opts(color="#8e24aa", line_width=1.5, ylim=(-1.05, 1.05))


def betas(data: pd.DataFrame) -> hv.Overlay:
    """The static OLS beta (steps at each refit) against the Kalman filter's dynamic beta."""
    return (hv.Curve(data, "time", ("beta", "hedge ratio β"), label="OLS").opts(color="#5c6bc0")
            * hv.Curve(data, "time", ("kalman_beta", "hedge ratio β"), label="Kalman").opts(
                color="#ef6c00")).opts(legend_position="top_left")


def thresholds(entry: float, exit: float) -> hv.Overlay:
    """±entry (red, dashed) and ±exit (grey, dotted) lines on the z-score chart."""
    lines = [hv.HLine(v).opts(color="#e53935", line_dash="dashed", line_width=1) for v in (entry, -entry)]
    lines += [hv.HLine(v).opts(color="#757575", line_dash="dotted", line_width=1)
              for v in sorted({exit, -exit})]
    return hv.Overlay(lines)


def spread_chart(series: pd.DataFrame) -> hv.Curve:
    """The spread of a ``pair_series`` frame, sized as on the Pair tab."""
    return spread_curve(series).opts(responsive=True, height=220, title="spread")


def zscore_chart(series: pd.DataFrame, *, entry: float = 2.0, exit: float = 0.0) -> hv.Overlay:
    """The rolling z-score with ±entry and ±exit lines."""
    return (zscore_curve(series) * thresholds(entry, exit)).opts(responsive=True, height=220,
                                                                 title="rolling z-score")


def corr_chart(series: pd.DataFrame) -> hv.Curve:
    return corr_curve(series).opts(responsive=True, height=220, title="rolling correlation")


def betas_chart(series: pd.DataFrame) -> hv.Overlay:
    return betas(series).opts(responsive=True, height=220, title="OLS vs Kalman hedge ratio")


# -- backtest, sweep, correlation -----------------------------------------------------------------
def equity_frame(times: pd.DatetimeIndex, equity: np.ndarray, *, max_points: int = 5_000) -> pd.DataFrame:
    """Equity and drawdown per bar, thinned to at most ~``max_points`` rows for the browser.

    Thinning keeps every k-th bar plus the bars of the running peak's largest drawdown and the last
    bar, so the chart never understates the worst drawdown the metric card reports.
    """
    eq = np.asarray(equity, dtype="float64")
    dd = np.maximum.accumulate(np.maximum(eq, 0.0)) - eq
    keep = np.arange(len(eq))
    if len(eq) > max_points:
        k = -(-len(eq) // max_points)
        keep = np.unique(np.concatenate([keep[::k], [int(dd.argmax()), len(eq) - 1]]))
    t = pd.DatetimeIndex(times)[keep].astype("datetime64[ns]")
    return pd.DataFrame({"time": t, "equity": eq[keep], "drawdown": -dd[keep]})


def equity_curve(data: pd.DataFrame) -> hv.Curve:
    return hv.Curve(data, "time", ("equity", "P&L (quote)")).opts(color="#1e88e5", line_width=1.5)


def drawdown_area(data: pd.DataFrame) -> hv.Area:
    return hv.Area(data, "time", ("drawdown", "drawdown (quote)")).opts(color="#e53935", alpha=0.5,
                                                                       line_width=0)


SWEEP_METRICS = ("total_pnl", "sharpe", "max_drawdown", "n_trades")


def sweep_frame(result: SweepResult) -> pd.DataFrame:
    """A SweepResult in long form: one row per (entry, exit) cell."""
    e, x = np.meshgrid(result.entries, result.exits, indexing="ij")
    return pd.DataFrame({"entry": e.ravel(), "exit": x.ravel(),
                         **{m: np.asarray(getattr(result, m), dtype="float64").ravel() for m in SWEEP_METRICS}})


def sweep_heatmap(data: pd.DataFrame) -> hv.HeatMap:
    """Total P&L over the entry x exit grid; hover shows every metric."""
    return hv.HeatMap(data, kdims=["exit", "entry"], vdims=list(SWEEP_METRICS)).opts(
        cmap="RdYlGn", colorbar=True, tools=["hover", "tap"], xlabel="exit |z|", ylabel="entry |z|",
        nonselection_alpha=1.0)


def corr_frame(matrix: pd.DataFrame) -> pd.DataFrame:
    """A correlation matrix in long form (a, b, corr, and the cell's label text) for the heatmap."""
    m = matrix.rename_axis(index="a", columns="b").stack(future_stack=True).rename("corr").reset_index()
    m = m.astype({"a": "str", "b": "str", "corr": "float64"})
    return m.assign(text=m["corr"].map(lambda v: f"{v:.2f}" if v == v else "—").astype("str"))


def empty_corr_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c == "corr" else "str") for c in ("a", "b", "corr", "text")})


def corr_heatmap(data: pd.DataFrame) -> hv.Overlay:
    """Correlations of log returns (a ``corr_frame``), -1 blue to +1 red, each cell labelled."""
    heat = hv.HeatMap(data, kdims=["b", "a"], vdims=["corr"]).opts(
        cmap="RdBu_r", clim=(-1, 1), colorbar=True, tools=["hover"], xrotation=45)
    labels = hv.Labels(data, kdims=["b", "a"], vdims=["text"]).opts(text_font_size="10pt", text_color="#212121")
    return heat * labels


def heatmap_chart(matrix: pd.DataFrame) -> hv.Overlay:
    """A correlation matrix as the Correlation tab's heatmap, sized for a page."""
    return corr_heatmap(corr_frame(matrix)).opts(hv.opts.HeatMap(responsive=True, height=380))


def markers_frame(alerts: Sequence[Alert]) -> pd.DataFrame:
    """Alerts as points (time, value, rule) for the chart of their metric."""
    t = np.array([a.time for a in alerts], dtype="int64")
    return pd.DataFrame({"time": pd.to_datetime(t, unit="ms").astype("datetime64[ns]"),
                         "alert_value": np.array([a.value for a in alerts], dtype="float64"),
                         "rule": pd.Series([a.rule for a in alerts], dtype="str")})


def alert_markers(data: pd.DataFrame) -> hv.Points:
    """Alerts on the z-score chart: red triangles at the value that fired, rule on hover."""
    # its own column name: a chart's data sources stay told apart by their columns
    return hv.Points(data, ["time", ("alert_value", "zscore")], ["rule"]).opts(
        color="#d50000", marker="triangle", size=11, tools=["hover"])

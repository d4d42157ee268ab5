"""One live chart update through the dashboard's path against raw Bokeh, in one process.

The chart is the Market tab's: one symbol's candles and volume, ``buffer_bars`` (600) bars
buffered, one new bar appended per update. Three ways, each ending with the update serialised as
the one PATCH-DOC message a session sends (what a Bokeh server does per session):

- ``dashboard``: ``LiveChart.append`` (the path every live chart uses);
- ``holoviews``: ``Buffer.send``, HoloViews re-rendering the elements (the path before);
- ``raw_bokeh``: ``ColumnDataSource.stream`` of the same rows into an equivalent hand-built
  Bokeh figure (a segment and two quad glyphs).

CPU is ``time.process_time`` per update, median of ``runs`` runs of ``updates`` updates. Bars are
*simulated* (a seeded random walk): cost depends on the shape of the data, not its values.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["run_refresh_bench", "simulated_bars"]


def simulated_bars(n: int, *, start_ms: int = 1_700_000_000_000, tf_ms: int = 1000, seed: int = 3) -> pd.DataFrame:
    """``n`` simulated 1s bars as ``plots.bars_frame`` rows (a seeded random walk)."""
    from quantpanel.dashboard.plots import candle_frame

    rnd = np.random.default_rng(seed)
    close = 60_000 + np.cumsum(rnd.normal(0, 5, n))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rnd.normal(0, 3, n))
    vol = rnd.gamma(2.0, 1.5, n)
    df = pd.DataFrame({
        "time": pd.to_datetime(start_ms + tf_ms * np.arange(n), unit="ms").astype("datetime64[ns]"),
        "open": open_, "high": np.maximum(open_, close) + spread, "low": np.minimum(open_, close) - spread,
        "close": close, "volume": vol, "trades": rnd.integers(1, 50, n).astype("int64"),
        "vwap": (open_ + close) / 2, "buy_volume": vol / 2,
    })
    return candle_frame(df, tf_ms)


def _patch_cost(events: list[Any], update: Callable[[], None]) -> None:
    """Run ``update`` and serialise the events it adds to ``events`` (the document's change
    log) as one PATCH-DOC message."""
    from bokeh.protocol import Protocol

    events.clear()
    update()
    if events:
        msg = Protocol().create("PATCH-DOC", list(events))
        _ = (msg.header_json, msg.metadata_json, msg.content_json, [b.to_bytes() for b in msg.buffers])


def _dashboard(history: pd.DataFrame, *, holoviews_path: bool) -> tuple[Any, Callable[[pd.DataFrame], None]]:
    import holoviews as hv
    from bokeh.document import Document

    from quantpanel.dashboard.plots import empty_bars_frame, live_candles
    from quantpanel.dashboard.streaming import LiveChart

    buffer = hv.streams.Buffer(empty_bars_frame(), length=len(history), index=False)
    chart = LiveChart(live_candles(buffer, title="SIM"), linked_axes=False)
    buffer.send(history)
    doc = Document()
    doc.add_root(chart.pane.get_root(doc))
    if holoviews_path:
        return doc, buffer.send
    return doc, lambda rows: chart.append(buffer, rows)


def _raw(history: pd.DataFrame) -> tuple[Any, Callable[[pd.DataFrame], None]]:
    from bokeh.document import Document
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    def cols(df: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        a = {c: df[c].to_numpy() for c in ("time", "low", "high", "side", "t0", "t1", "body_lo", "body_hi",
                                           "zero", "volume")}
        return ({"time": a["time"], "low": a["low"], "high": a["high"], "color": a["side"]},
                {"left": a["t0"], "right": a["t1"], "bottom": a["body_lo"], "top": a["body_hi"], "color": a["side"]},
                {"left": a["t0"], "right": a["t1"], "bottom": a["zero"], "top": a["volume"], "color": a["side"]})

    wicks, bodies, vol = (ColumnDataSource(d) for d in cols(history))
    price = figure(x_axis_type="datetime", height=300, sizing_mode="stretch_width")
    price.segment("time", "low", "time", "high", source=wicks)
    price.quad(left="left", right="right", bottom="bottom", top="top", source=bodies)
    volume = figure(x_axis_type="datetime", height=140, sizing_mode="stretch_width", x_range=price.x_range)
    volume.quad(left="left", right="right", bottom="bottom", top="top", source=vol)
    doc = Document()
    doc.add_root(column(price, volume))
    n = len(history)

    def update(rows: pd.DataFrame) -> None:
        for source, data in zip((wicks, bodies, vol), cols(rows), strict=True):
            source.stream(data, rollover=n)
    return doc, update


def run_refresh_bench(*, bars: int = 600, updates: int = 200, runs: int = 5) -> dict[str, Any]:
    """Server CPU of one chart update: the dashboard's path, HoloViews' re-render, raw Bokeh."""
    import holoviews.plotting.bokeh  # noqa: F401  (imported before timing)

    data = simulated_bars(bars + updates * runs * 3 + 50)
    history, rest = data.iloc[:bars].reset_index(drop=True), data.iloc[bars:].reset_index(drop=True)
    out: dict[str, Any] = {"data": f"simulated 1s bars, {bars} buffered, 1 appended per update",
                           "updates": updates, "runs": runs}
    k = 0
    for name, build in (("dashboard", lambda h: _dashboard(h, holoviews_path=False)),
                        ("holoviews", lambda h: _dashboard(h, holoviews_path=True)), ("raw_bokeh", _raw)):
        times = []
        for _ in range(runs):
            doc, update = build(history)
            events: list[Any] = []
            doc.on_change(events.append)
            for _ in range(5):  # warm up: the first patches also carry the models' first sync
                _patch_cost(events, partial(update, rest.iloc[k:k + 1]))
                k += 1
            n = updates if name != "holoviews" else max(updates // 5, 1)  # it is the slow one
            t0 = time.process_time()
            for _ in range(n):
                _patch_cost(events, partial(update, rest.iloc[k:k + 1]))
                k += 1
            times.append((time.process_time() - t0) / n * 1000)
        out[f"{name}_cpu_ms"] = round(statistics.median(times), 3)
    out["refresh_vs_raw_bokeh"] = round(out["dashboard_cpu_ms"] / out["raw_bokeh_cpu_ms"], 2)
    out["holoviews_vs_raw_bokeh"] = round(out["holoviews_cpu_ms"] / out["raw_bokeh_cpu_ms"], 2)
    return out


if __name__ == "__main__":
    print(run_refresh_bench())

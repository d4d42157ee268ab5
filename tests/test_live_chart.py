"""LiveChart: a Buffer append reaches a drawn plot as a Bokeh stream patch of the new rows only,
with no HoloViews re-render; a reset re-renders. Each chart is checked against a fresh HoloViews
rendering of the same data: the same source columns, the same ranges."""

from __future__ import annotations

from types import SimpleNamespace

import holoviews as hv
import numpy as np
import pandas as pd
from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent, ColumnsStreamedEvent, ModelChangedEvent

from quantpanel.bench.refresh import simulated_bars
from quantpanel.dashboard.plots import (
    alert_markers,
    corr_frame,
    corr_heatmap,
    empty_bars_frame,
    empty_corr_frame,
    live,
    live_candles,
    markers_frame,
    pair_frame,
    thresholds,
    zscore_curve,
)
from quantpanel.dashboard.streaming import LiveChart, _leaves, _number

N = 50  # buffer length


def drawn(chart: LiveChart) -> tuple[Document, list]:
    """``chart`` drawn into a document, and the list its change events go to."""
    doc = Document()
    doc.add_root(chart.pane.get_root(doc))
    events: list = []
    doc.on_change(events.append)
    return doc, events


def fresh(obj_for, data: pd.DataFrame) -> list:
    """The leaf plots of a new HoloViews rendering of ``data`` (the reference)."""
    stream = hv.streams.Buffer(data.iloc[:0], length=0, index=False)
    pane = LiveChart(obj_for(stream), linked_axes=False).pane
    stream.send(data)
    pane.get_root(Document())
    return list(_leaves(next(iter(pane._plots.values()))[0]))


def assert_same_as_fresh(chart: LiveChart, obj_for, data: pd.DataFrame, *, ranges: bool = True) -> None:
    ours = list(_leaves(chart._roots()[0]))
    ref = fresh(obj_for, data)
    assert [type(p).__name__ for p in ours] == [type(p).__name__ for p in ref]
    for a, b in zip(ours, ref):
        sa, sb = a.handles["source"].data, b.handles["source"].data
        assert sa.keys() == sb.keys()
        for k in sa:
            assert np.array_equal(np.asarray(sa[k]), np.asarray(sb[k])), (type(a).__name__, k)
        if ranges:
            ra, rb = a.handles["y_range"], b.handles["y_range"]
            assert (_number(ra.start), _number(ra.end)) == (_number(rb.start), _number(rb.end)), (type(a).__name__, "y")
            # x: every chart of a layout spans the first one's range (HoloViews pads the volume's
            # own t0..t1 a little differently: its bars sat slightly off the candles above)
            ra, rb = a.handles["x_range"], ref[0].handles["x_range"]
            assert (_number(ra.start), _number(ra.end)) == (_number(rb.start), _number(rb.end)), (type(a).__name__, "x")


def candles_for(stream):
    return live_candles(stream, title="SIM")


def test_an_append_is_a_stream_patch_of_the_new_rows_only_with_no_re_render(renders):
    bars = simulated_bars(N + 5)
    buffer = hv.streams.Buffer(empty_bars_frame(), length=N, index=False)
    chart = LiveChart(candles_for(buffer), linked_axes=False)
    buffer.send(bars.iloc[:N - 2])
    doc, events = drawn(chart)
    renders.clear()

    chart.append(buffer, bars.iloc[N - 2:N - 1])
    streamed = [e for e in events if isinstance(e, ColumnsStreamedEvent)]
    assert len(streamed) == 3  # wicks, bodies, volume: one patch each
    assert all(len(next(iter(e.data.values()))) == 1 for e in streamed)  # the new row only
    assert not [e for e in events if isinstance(e, ColumnDataChangedEvent)]
    changed = {e.attr for e in events if isinstance(e, ModelChangedEvent)}
    assert changed <= {"start", "end"}  # only the ranges follow
    assert renders == []
    assert chart.streamed == 3 and chart.refreshed == 0
    assert_same_as_fresh(chart, candles_for, buffer.data)

    # past the buffer's length the sources roll over with it, and the newest bar stays in view
    x = next(_leaves(chart._roots()[0])).handles["x_range"]
    before = _number(x.start)
    for i in range(N - 1, N + 5):
        chart.append(buffer, bars.iloc[i:i + 1])
    assert renders == []
    assert len(buffer.data) == N
    assert_same_as_fresh(chart, candles_for, buffer.data)
    newest = _number(bars["time"].iloc[N + 4])
    assert x.start < newest < x.end  # Bokeh's datetime axes count ms
    assert x.start > before  # it moved with the data


def test_a_reset_re_renders_and_holds_only_the_new_rows(renders):
    bars = simulated_bars(30)
    buffer = hv.streams.Buffer(empty_bars_frame(), length=N, index=False)
    chart = LiveChart(candles_for(buffer), linked_axes=False)
    buffer.send(bars.iloc[:20])
    drawn(chart)
    renders.clear()
    chart.reset(buffer, bars.iloc[25:30])
    assert renders  # HoloViews drew the chart again
    assert chart.refreshed == 1
    assert list(buffer.data["time"]) == list(bars["time"].iloc[25:30])
    assert_same_as_fresh(chart, candles_for, buffer.data)


def test_a_chart_not_drawn_yet_costs_nothing_and_draws_everything_when_shown():
    bars = simulated_bars(10)
    buffer = hv.streams.Buffer(empty_bars_frame(), length=N, index=False)
    chart = LiveChart(candles_for(buffer), linked_axes=False)
    for i in range(10):
        chart.append(buffer, bars.iloc[i:i + 1])
    assert chart.streamed == 0 and len(buffer.data) == 10
    drawn(chart)
    assert_same_as_fresh(chart, candles_for, buffer.data, ranges=False)  # HoloViews drew it all
    chart.append(buffer, simulated_bars(11).iloc[10:])
    assert chart.streamed == 3
    assert_same_as_fresh(chart, candles_for, buffer.data)


def pair_rows(n: int, start: int = 0) -> pd.DataFrame:
    rnd = np.random.default_rng(start)
    t = pd.to_datetime(1_700_000_000_000 + 1000 * np.arange(start, start + n), unit="ms").astype("datetime64[ns]")
    return pd.DataFrame({"time": t, **{c: rnd.normal(0, 1, n) for c in
                                       ("spread", "zscore", "corr", "beta", "alpha", "kalman_beta", "kalman_z")}})


def test_a_z_chart_with_threshold_lines_and_alert_markers(renders):
    """The Pair tab's z-score overlay: a Buffer curve, HLines and a Pipe of markers."""
    markers = hv.streams.Pipe(data=markers_frame([]))

    def z_for(stream):
        return (live(zscore_curve(pair_frame([])), stream) * hv.DynamicMap(lambda: thresholds(2.0, 0.5))
                * live(alert_markers(markers_frame([])), markers))

    buffer = hv.streams.Buffer(pair_frame([]), length=N, index=False)
    chart = LiveChart(z_for(buffer), linked_axes=False)
    buffer.send(pair_rows(10))
    drawn(chart)
    renders.clear()
    chart.append(buffer, pair_rows(1, 10))
    assert renders == [] and chart.streamed == 1
    assert_same_as_fresh(chart, z_for, buffer.data)
    x = next(p for p in _leaves(chart._roots()[0]) if "zscore" in p.handles["source"].data).handles["x_range"]
    assert x.end == _number(buffer.data["time"].iloc[-1])  # a curve is not padded in x

    fired = SimpleNamespace(rule="z", time=int(buffer.data["time"].iloc[-1].value // 1_000_000), value=2.5)
    chart.replace(markers, markers_frame([fired]))
    assert renders == []
    points = next(p for p in _leaves(chart._roots()[0]) if "alert_value" in p.handles["source"].data)
    assert list(points.handles["source"].data["alert_value"]) == [2.5]
    assert list(points.handles["source"].data["rule"]) == ["z"]
    # a marker far out widens the y range, on this and every later update
    far = SimpleNamespace(rule="z", time=fired.time, value=9.0)
    chart.replace(markers, markers_frame([fired, far]))
    chart.append(buffer, pair_rows(1, 11))
    y = points.handles["y_range"]
    assert y.end > 9.0 and renders == []


def test_the_heatmap_swaps_its_cells_and_re_renders_only_for_new_symbols(renders):
    pipe = hv.streams.Pipe(data=empty_corr_frame())
    chart = LiveChart(live(corr_heatmap(empty_corr_frame()), pipe))
    drawn(chart)
    m = pd.DataFrame([[1.0, 0.5], [0.5, 1.0]], index=["A", "B"], columns=["A", "B"])
    renders.clear()
    chart.replace(pipe, corr_frame(m))  # first symbols: HoloViews sets the axes' categories
    assert renders and chart.refreshed == 1
    renders.clear()
    chart.replace(pipe, corr_frame(m.replace(0.5, -0.25)))
    assert renders == [] and chart.refreshed == 1
    labels = next(p for p in _leaves(chart._roots()[0]) if "text" in p.handles["source"].data)
    assert sorted(labels.handles["source"].data["text"]) == ["-0.25", "-0.25", "1.00", "1.00"]
    assert_same_as_fresh(chart, lambda s: live(corr_heatmap(empty_corr_frame()), s), pipe.data, ranges=False)

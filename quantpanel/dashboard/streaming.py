"""How a Buffer append reaches a session's browser: a Bokeh stream patch, not a HoloViews re-render.

Every live chart of the dashboard is a ``pn.pane.HoloViews`` of ``plots.live`` DynamicMaps over
``hv.streams.Buffer`` / ``Pipe`` streams, drawn once per session by HoloViews (same elements, same
styling as in a notebook). Sending to a Buffer makes HoloViews re-render every element of every
plot watching it: ranges, styles, glyph properties, ~7-20 ms of server CPU per element per
session, whatever the size of the update. A raw ``ColumnDataSource.stream`` of the same rows costs
a fraction of that. So ``LiveChart``:

- **append** concatenates the rows into the Buffer without triggering it (``Buffer.update``), then,
  for each drawn plot, turns the new rows into the plot's own data-source columns through the
  plot's ``get_data`` and streams them into ``handles["source"]`` with rollover at the Buffer's
  length; then it sets the x and y ranges from the data shown, padded as HoloViews pads them
  (x follows the newest bar, y rescales);
- **replace** (a Pipe: alert markers, the heatmap) swaps a source's data the same way;
- **reset** (timeframe, symbol, window or lookback change, a rebuild) and anything the fast path
  cannot express (a new set of categories, a column it cannot compute) fall back to a full
  HoloViews refresh.

A session whose chart is not drawn yet (a hidden tab) pays nothing: the Buffer holds the data and
HoloViews draws it from there when the chart is shown. Exports read the same Buffers.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import Range1d
from holoviews.core import util
from holoviews.util.transform import dim
from panel.viewable import Viewer

__all__ = ["LiveChart"]

_Extent = tuple[float, float]


class LiveChart(Viewer):
    """A HoloViews pane whose stream updates reach each drawn plot as Bokeh data-source patches."""

    def __init__(self, obj: Any, **pane_params: Any) -> None:
        super().__init__()
        self.pane = pn.pane.HoloViews(obj, **pane_params)
        self.streamed = 0  # data-source patches sent (tests, bench)
        self.refreshed = 0  # full HoloViews refreshes

    def __panel__(self) -> pn.viewable.Viewable:
        return self.pane

    # -- the three updates ---------------------------------------------------------------------------
    def append(self, buffer: hv.streams.Buffer, rows: pd.DataFrame) -> None:
        """Append ``rows`` to ``buffer`` and stream only them to every drawn plot."""
        if not len(rows):
            return
        buffer.update(data=rows)  # concatenates and trims to the length; no HoloViews refresh
        rows = rows.iloc[-buffer.length:] if buffer.length else rows
        self._apply(buffer, rows, as_stream=True)

    def replace(self, pipe: hv.streams.Pipe, data: pd.DataFrame) -> None:
        """Replace ``pipe``'s data; each drawn plot's source gets the new columns whole."""
        pipe.update(data=data)
        self._apply(pipe, data, as_stream=False)

    def reset(self, buffer: hv.streams.Buffer, rows: pd.DataFrame | None = None) -> None:
        """Start ``buffer`` over with ``rows`` (a new timeframe, pair or window): one full
        HoloViews refresh, then every drawn plot's source set to the Buffer's data whole."""
        if len(buffer.data):
            buffer.clear()  # HoloViews redraws: styles and axes may change with more than the rows
            self.refreshed += 1
        if rows is not None and len(rows):
            buffer.update(data=rows)
        # HoloViews may keep a source it judges unchanged (a clone of the same template) or stream
        # onto what it held: set each one to exactly what the Buffer holds
        self._apply(buffer, buffer.data, as_stream=False)

    # -- internals -----------------------------------------------------------------------------------
    def _roots(self) -> list[Any]:
        # Panel can list one plot under several root refs (a template renders twice): once each
        return list({id(plot): plot for plot, _ in self.pane._plots.values()}.values())

    def _apply(self, stream: hv.streams.Pipe, rows: pd.DataFrame, *, as_stream: bool) -> None:
        roots = self._roots()
        if not roots:
            return  # not drawn in this session yet: HoloViews draws from the stream's data later
        columns = list(stream.data.columns)
        arrays = {c: rows[c].to_numpy() for c in rows.columns}  # one column read each, for all plots
        for root in roots:
            fed = [leaf for leaf in _leaves(root) if _data_columns(leaf) == columns]
            updates = [(leaf, _source_columns(leaf, rows, arrays)) for leaf in fed]
            if not fed or any(cols is None for _, cols in updates) or (
                    not as_stream and any(_categories_changed(leaf, rows) for leaf in fed)):
                hv.streams.Stream.trigger([stream])  # what the fast path cannot express
                self.refreshed += 1
                for leaf in _leaves(root):
                    _SHOWN.pop(leaf, None)  # HoloViews' frames are current again
                return
            for leaf, cols in updates:
                source = leaf.handles["source"]
                if as_stream:
                    source.stream(cols, rollover=getattr(stream, "length", None) or None)
                else:
                    source.data = cols
                _SHOWN[leaf] = stream.data
                self.streamed += 1
            _follow(root)


# Plot -> the data its source shows, where LiveChart set it (HoloViews' current frame is older)
_SHOWN: weakref.WeakKeyDictionary[Any, pd.DataFrame] = weakref.WeakKeyDictionary()


def _shown(leaf: Any) -> Any:
    return _SHOWN.get(leaf, leaf.current_frame.data)


def _leaves(root: Any) -> Iterator[Any]:
    """The element plots of ``root`` that draw from a data source."""
    yield from root.traverse(lambda p: p, [lambda p: "source" in getattr(p, "handles", {})
                                           and getattr(p, "current_frame", None) is not None])


def _data_columns(leaf: Any) -> list[str] | None:
    data = leaf.current_frame.data
    return list(data.columns) if isinstance(data, pd.DataFrame) else None


def _source_columns(leaf: Any, rows: pd.DataFrame, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """``rows`` as the columns of ``leaf``'s data source, as HoloViews would compute them; None
    when a column cannot be computed here (then HoloViews refreshes the chart)."""
    plan = _PLANS.get(leaf)
    if plan is None and leaf not in _PLANS:
        plan = _PLANS[leaf] = _plan(leaf)
    if plan is None:
        return _via_holoviews(leaf, rows)
    return {key: (arrays[op[1]] if op[0] == "col" else
                  np.minimum(arrays[op[1]], arrays[op[2]]) if op[0] == "min" else
                  np.maximum(arrays[op[1]], arrays[op[2]]))
            for key, op in plan.items()}


# Plot -> how each of its source's columns follows from the frame's columns (None: it does not
# simply). Cloning an element to ask HoloViews costs ~3 ms per plot per update (param
# instantiation); reading the columns costs microseconds.
_PLANS: weakref.WeakKeyDictionary[Any, dict[str, tuple[str, ...]] | None] = weakref.WeakKeyDictionary()


def _plan(leaf: Any) -> dict[str, tuple[str, ...]] | None:
    """Learn how ``leaf``'s source columns are computed by giving HoloViews two probe frames whose
    columns all differ, once in ascending and once in descending order: a source column equal to
    one frame column in both is a copy; one that switches between two columns is their min or
    max (Rectangles orders its corners). Anything else is not planned."""
    template = leaf.current_frame.data
    try:
        probes = [_probe(template, ascending) for ascending in (True, False)]
        outs = [_via_holoviews(leaf, probe) for probe in probes]
    except Exception:  # a probe HoloViews cannot draw: no plan, the HoloViews path stays correct
        return None
    drawn = [out for out in outs if out is not None]
    if len(drawn) < len(outs):
        return None
    plan: dict[str, tuple[str, ...]] = {}
    for key in drawn[0]:
        a, b = (_matching(out[key], probe) for out, probe in zip(drawn, probes, strict=True))
        if a is None or b is None:
            return None
        if a == b:
            plan[key] = ("col", a)
        else:
            lower = probes[0][a].iloc[0] < probes[0][b].iloc[0]  # what the ascending probe chose
            plan[key] = ("min" if lower else "max", a, b)
    return plan


def _probe(template: pd.DataFrame, ascending: bool) -> pd.DataFrame:
    """Three rows in ``template``'s columns and dtypes, every column's values unlike any other's."""
    n, cols = 3, list(template.columns)
    out = {}
    for i, c in enumerate(cols):
        rank = i if ascending else len(cols) - 1 - i
        kind = template[c].dtype.kind
        base = np.arange(n) + 1000 * (rank + 1)
        if kind == "M":
            out[c] = pd.to_datetime(base * 1_000_000 + 1_700_000_000_000_000, unit="us").astype(template[c].dtype)
        elif kind in "iuf":
            out[c] = pd.Series(base, dtype=template[c].dtype)
        else:
            out[c] = pd.Series([f"{c}|{k}" for k in range(n)], dtype=template[c].dtype)
    return pd.DataFrame(out)


def _matching(values: np.ndarray, probe: pd.DataFrame) -> str | None:
    found = [c for c in probe.columns if _equal(values, probe[c].to_numpy())]
    return found[0] if len(found) == 1 else None


def _equal(a: Any, b: np.ndarray) -> bool:
    a = np.asarray(a)
    if a.shape != b.shape or (a.dtype.kind == "M") != (b.dtype.kind == "M"):
        return False
    try:
        return bool(np.array_equal(a, b))
    except TypeError:
        return False


def _via_holoviews(leaf: Any, rows: pd.DataFrame) -> dict[str, np.ndarray] | None:
    """``rows`` through ``leaf``'s own ``get_data`` (the slow, always-right way)."""
    el = leaf.current_frame.clone(rows)
    style = dict(leaf.style[leaf.cyclic_index])
    data, _, _ = leaf.get_data(el, leaf.current_ranges or {}, style)
    data = leaf._postprocess_data(data)
    for key in leaf.handles["source"].data.keys() - data.keys():
        # style mapped from a column (colour by `side`): HoloViews adds it per refresh, and folds
        # it to a scalar when all rows agree, so compute it here for the rows themselves
        spec = style.get(key)
        if isinstance(spec, str) and spec in el:
            spec = dim(el.get_dimension(spec))
        if not isinstance(spec, dim):
            return None
        data[key] = np.asarray(spec.apply(el, flat=True))
    return data if data.keys() == leaf.handles["source"].data.keys() else None


def _categories_changed(leaf: Any, data: pd.DataFrame) -> bool:
    """New categories on a categorical axis (a heatmap's symbols): only HoloViews sets factors."""
    old = _shown(leaf)
    for d in leaf.current_frame.kdims:
        col = d.name
        if col in data and (data[col].dtype.kind in "OUS" or str(data[col].dtype) == "str"):
            if set(old[col].unique()) != set(data[col].unique()):
                return True
    return False


def _follow(root: Any) -> None:
    """Set each numeric x and y range of ``root`` to what its plots show, padded like HoloViews:
    x follows the newest bar, y rescales. A range with a fixed limit (``ylim``) keeps it."""
    spans: dict[int, tuple[Range1d, list[_Extent], tuple[float, float], bool]] = {}
    cache: dict[tuple[int, str], _Extent | None] = {}  # a column's extent, read once per update
    for leaf in _leaves(root):
        axes = _AXES.get(leaf)
        if axes is None:
            axes = _AXES[leaf] = _axes(leaf)
        data = _shown(leaf)
        for rng, cols, pad, is_time in axes:
            found = [cache[k] if (k := (id(data), c)) in cache else cache.setdefault(k, _span(data, c))
                     for c in cols]
            parts = [p for p in found if p is not None]
            if parts:
                spans.setdefault(id(rng), (rng, [], pad, is_time))[1].append(
                    (min(p[0] for p in parts), max(p[1] for p in parts)))
    for rng, extents, pad, is_time in spans.values():
        lo = min(e[0] for e in extents)
        hi = max(e[1] for e in extents)
        if hi > lo:
            start, end = util.range_pad(lo, hi, pad)
        else:
            start, end = lo - 0.5 * (abs(lo) * 0.01 or 1), hi + 0.5 * (abs(hi) * 0.01 or 1)
        if is_time:  # Bokeh's datetime axes count milliseconds (spans are in ns)
            start, end = start / 1e6, end / 1e6
        if (_number(rng.start), _number(rng.end)) != (start, end):
            rng.update(start=start, end=end)


_Axis = tuple[Range1d, list[str], tuple[float, float], bool]
# Plot -> the numeric ranges it draws on: (range, columns, padding, datetime axis)
_AXES: weakref.WeakKeyDictionary[Any, list[_Axis]] = weakref.WeakKeyDictionary()


def _axes(leaf: Any) -> list[_Axis]:
    el = leaf.current_frame
    pads = _padding(leaf.padding)
    kd, vd = el.kdims, el.vdims
    # (HLines, as in HoloViews, do not widen a range: the z chart's thresholds show once z nears them)
    if isinstance(el, (hv.Segments, hv.Rectangles)):
        dims = [("x", [kd[0].name, kd[2].name]), ("y", [kd[1].name, kd[3].name])]
    elif isinstance(el, hv.Points):
        dims = [("x", [kd[0].name]), ("y", [kd[1].name])]
    elif isinstance(el, (hv.Curve, hv.Area, hv.Scatter)):
        dims = [("x", [kd[0].name]), ("y", [vd[0].name])]
    else:
        return []  # categorical (a heatmap) or not drawn from columns: HoloViews' ranges stay
    out = []
    for axis, cols in dims:
        rng = leaf.handles.get(f"{axis}_range")
        lim = getattr(leaf, f"{axis}lim", (None, None))
        if isinstance(rng, Range1d) and not any(util.isfinite(v) for v in lim):
            data = el.data
            is_time = isinstance(data, pd.DataFrame) and any(c in data and data[c].dtype.kind == "M" for c in cols)
            out.append((rng, cols, pads["xy".index(axis)], is_time))
    return out


def _number(v: Any) -> float | None:
    """A range end as Bokeh counts it (datetimes in ms)."""
    if v is None:
        return None
    if isinstance(v, (np.datetime64, pd.Timestamp)):
        return float(pd.Timestamp(v).value) / 1e6
    return float(v)


def _padding(padding: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    """HoloViews' ``padding`` option as ((x lower, x upper), (y lower, y upper))."""
    xy = padding if isinstance(padding, tuple) else (padding, padding)
    out = []
    for p in xy[:2]:
        out.append(tuple(p) if isinstance(p, tuple) else (p, p))
    return out[0], out[1]


def _span(data: Any, col: str) -> _Extent | None:
    """Finite extent of one column (datetimes in ns)."""
    if not isinstance(data, pd.DataFrame) or col not in data or not len(data):
        return None
    v = data[col].to_numpy()
    if v.dtype.kind == "M":
        v = v.astype("datetime64[ns]").astype("int64")
    elif v.dtype.kind == "f":
        v = v[np.isfinite(v)]
    elif v.dtype.kind not in "iu":
        return None
    return (float(v.min()), float(v.max())) if len(v) else None

"""All configured symbols at once: the live correlation heatmap and the pair scanner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import holoviews as hv
import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from quantpanel.analytics.correlation import SCAN_COLUMNS, correlation_matrix, scan_pairs
from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.plots import corr_frame, corr_heatmap, empty_corr_frame, live
from quantpanel.dashboard.streaming import LiveChart
from quantpanel.errors import InsufficientDataError, QuantPanelError

if TYPE_CHECKING:
    from panel.models.tabulator import CellClickEvent

__all__ = ["CorrelationView"]

_SCAN_LABELS = {"a": "leg A", "b": "leg B", "n": "bars", "coint_pvalue": "Engle–Granger p",
                "half_life": "half-life (bars)", "corr": "corr (log ret)", "beta": "OLS β"}


class CorrelationView(Viewer):
    """Heatmap recomputed whenever a bar closes; scanner on demand, off the event loop.

    ``on_select(a, b)`` is called when the user clicks a scanner row.
    """

    timeframe: param.Selector[str] = param.Selector(default="1s", objects=["1s"])
    window = param.Integer(default=60, bounds=(2, 100_000), label="Window (returns)")
    lookback = param.Integer(default=1_000, bounds=(10, None), label="Scanner lookback (bars)")

    def __init__(self, hub: Hub, on_select: Callable[[str, str], None], **params: object) -> None:
        cfg = hub.config
        self.param.timeframe.objects = list(cfg.timeframes)
        params.setdefault("timeframe", cfg.dashboard.default_timeframe)
        params.setdefault("window", cfg.windows.correlation)
        super().__init__(**params)
        self._hub = hub
        self._on_select = on_select
        self._key: tuple[object, ...] | None = None
        self.matrix: pd.DataFrame | None = None
        self.heat = hv.streams.Pipe(data=empty_corr_frame())
        self.chart = LiveChart(
            live(corr_heatmap(empty_corr_frame()).opts(
                hv.opts.HeatMap(title="correlation of log returns (updates as bars close)",
                                responsive=True, height=380, framewise=True)), self.heat),
            sizing_mode="stretch_width", css_classes=["qp-corr"])
        self.heat_note = pn.pane.Markdown("", css_classes=["qp-corr-note"])
        self.scan_button = pn.widgets.Button(label="Scan pairs", color="primary", width=140)
        self.scan_button.on_click(self.run_scan)
        self.progress = pn.indicators.Progress(value=0, max=1, visible=False, width=240,
                                               bar_color="primary", css_classes=["qp-scan-progress"])
        self.scan_note = pn.pane.Markdown("", css_classes=["qp-scan-note"])
        self.table = pn.widgets.Tabulator(pd.DataFrame(columns=[_SCAN_LABELS[c] for c in SCAN_COLUMNS]),
                                          disabled=True, show_index=False, selectable=1, height=300,
                                          sizing_mode="stretch_width", css_classes=["qp-scan"])
        self.table.on_click(self._on_row)
        self._done = (0, 0)  # scanner progress, written by the worker thread, shown by pull()
        self._layout = pn.Column(
            pn.FlexBox(pn.widgets.Select.from_param(self.param.timeframe, width=120),
                   pn.widgets.IntInput.from_param(self.param.window, width=150)),
            self.heat_note, self.chart,
            pn.pane.Markdown("#### Pair scanner: every pair of the configured symbols, most "
                             "cointegrated first (click a row to open it in the Pair tab)"),
            pn.FlexBox(pn.widgets.IntInput.from_param(self.param.lookback, width=200), self.scan_button,
                   self.progress, self.scan_note),
            self.table, sizing_mode="stretch_width", name="Correlation")

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def _closes(self) -> pd.DataFrame:
        tf = self.timeframe
        return pd.DataFrame({s: pd.Series([b.close for b in bars], dtype="float64",
                                          index=pd.to_datetime([b.time for b in bars], unit="ms"))
                             for s in self._hub.config.symbols
                             for bars in [self._hub.closed_bars(s, tf)]}).sort_index()

    def pull(self) -> bool:
        """Recompute the heatmap if a bar closed (or the settings changed) since the last pull."""
        syms = self._hub.config.symbols
        key = (self.timeframe, self.window, *(self._hub.seq(s, self.timeframe) for s in syms))
        if self.progress.visible:
            done, total = self._done
            self.progress.max, self.progress.value = max(total, 1), done
        if key == self._key:
            return False
        self._key = key
        try:
            self.matrix = correlation_matrix(self._closes(), window=self.window)
        except InsufficientDataError as exc:
            self.heat_note.object = f"waiting for bars: {exc}"
            return False
        self.heat_note.object = (f"{len(syms)} symbols · {self.timeframe} bars · last {self.window} "
                                 f"log returns · Pearson")
        self.chart.replace(self.heat, corr_frame(self.matrix))
        return True

    async def run_scan(self, _event: object = None) -> None:
        """Scan every pair over the stored lookback in a worker thread, with progress."""
        syms, tf, lookback = list(self._hub.config.symbols), self.timeframe, self.lookback
        self.scan_button.disabled = True
        self._done = (0, len(syms) * (len(syms) - 1) // 2)
        self.progress.value, self.progress.max, self.progress.visible = 0, max(self._done[1], 1), True
        self.scan_note.object = f"scanning {self._done[1]} pairs…"

        def work() -> pd.DataFrame:
            closes = self._hub.load_closes(syms, tf, last=lookback + 1)
            return scan_pairs(closes, lookback=lookback, progress=lambda k, n: setattr(self, "_done", (k, n)))

        try:
            result = await asyncio.to_thread(work)
        except (QuantPanelError, ValueError) as exc:
            self.scan_note.object = f"**scan failed:** {exc}"
            return
        finally:
            self.scan_button.disabled = False
            self.progress.visible = False
        self.table.value = result.rename(columns=_SCAN_LABELS)
        self.scan_note.object = f"{len(result)} pairs · {tf} bars · last {lookback} bars"

    def _on_row(self, event: CellClickEvent) -> None:
        row = self.table.value.iloc[event.row]
        self._on_select(str(row[_SCAN_LABELS["a"]]), str(row[_SCAN_LABELS["b"]]))

"""Offline mode: upload an OHLC CSV, see its candles and the pair analytics of two uploaded series.

An upload is parsed and validated whole in a worker thread, then stored in one transaction: a bad
file shows its message (file, line, column) and changes nothing already loaded or stored.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.notebook import candles, pair_series, spread, zscore
from quantpanel.dashboard.plots import candle_frame
from quantpanel.errors import QuantPanelError
from quantpanel.storage.ohlc import OHLC_TIMEFRAMES, parse_ohlc_csv

__all__ = ["OfflineView"]


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


class OfflineView(Viewer):
    """Upload, the uploaded series, candles of one, spread and z-score of two."""

    series = param.Selector(default=None, objects=[], label="Series")
    leg_a = param.Selector(default=None, objects=[], label="Pair leg A (y)")
    leg_b = param.Selector(default=None, objects=[], label="Pair leg B (x)")
    window = param.Integer(default=20, bounds=(2, 10_000), label="z window (bars)")

    def __init__(self, hub: Hub, **params: object) -> None:
        super().__init__(**params)
        self._hub = hub
        self.upload = pn.widgets.FileInput(accept=".csv,.txt", multiple=False, css_classes=["qp-upload"])
        self.upload.param.watch(self._on_upload, ["value", "filename"])
        self.ok = pn.pane.Alert("", alert_type="success", visible=False, css_classes=["qp-upload-ok"])
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["qp-upload-error"])
        self.table = pn.widgets.Tabulator(pd.DataFrame(columns=["symbol", "timeframe", "bars", "first", "last"]),
                                          disabled=True, show_index=False, height=160,
                                          sizing_mode="stretch_width", css_classes=["qp-uploads"])
        self.chart = pn.Column(sizing_mode="stretch_width", css_classes=["qp-upload-chart"])
        self.pair_chart = pn.Column(sizing_mode="stretch_width", css_classes=["qp-upload-pair"])
        self.trades_upload = pn.widgets.FileInput(accept=".csv,.zip", multiple=False, css_classes=["qp-trades-upload"])
        self.trades_upload.param.watch(self._on_trades_upload, ["value", "filename"])
        self.trades_progress = pn.indicators.Progress(value=0, max=100, visible=False, width=300,
                                                      css_classes=["qp-trades-progress"])
        self.trades_message = pn.pane.Alert("", alert_type="info", visible=False, css_classes=["qp-trades-message"])
        self.uploads = 0
        self.loaded = False  # the stored series were listed (once the runtime has its database)
        self._layout = pn.Column(
            pn.pane.Markdown("#### Upload an OHLC CSV — a time column (ISO-8601 or epoch s/ms) and "
                             "open/high/low/close, volume optional; one symbol per file (named in the "
                             "file name, e.g. `BTCUSDT-1m.csv`) or a symbol column. The timeframe is "
                             "the data's own."),
            self.upload, self.ok, self.error, self.table,
            pn.Row(pn.widgets.Select.from_param(self.param.series, width=220)), self.chart,
            pn.pane.Markdown("#### Pair analytics of two uploaded series (same timeframe)"),
            pn.Row(pn.widgets.Select.from_param(self.param.leg_a, width=220),
                   pn.widgets.Select.from_param(self.param.leg_b, width=220),
                   pn.widgets.IntInput.from_param(self.param.window, width=140)),
            self.pair_chart,
            pn.pane.Markdown("#### Import trades — a data.binance.vision futures aggTrades file "
                             "(`BTCUSDT-aggTrades-2024-08-08.zip` or `.csv`, header or not). The trades "
                             "are stored (all or none) and can be replayed from the Replay tab."),
            self.trades_upload, self.trades_progress, self.trades_message,
            sizing_mode="stretch_width", name="Offline")

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    async def load(self) -> None:
        """Refresh the list of uploaded series from the store (on start and after an upload)."""
        rt = self._hub.runtime
        if rt.db_path is None:
            return
        rows = await asyncio.to_thread(rt.ohlc_series)
        self.loaded = True
        self.table.value = pd.DataFrame([(s, tf, n, _day(a), _day(b)) for s, tf, n, a, b in rows],
                                        columns=["symbol", "timeframe", "bars", "first", "last"])
        keys = [f"{s} {tf}" for s, tf, *_ in rows]
        for p in ("series", "leg_a", "leg_b"):
            self.param[p].objects = keys
        if keys:
            self.param.update(series=self.series if self.series in keys else keys[-1],
                              leg_a=self.leg_a if self.leg_a in keys else keys[0],
                              leg_b=self.leg_b if self.leg_b in keys else keys[min(1, len(keys) - 1)])

    async def _on_upload(self, *events: object) -> None:
        # Panel reports an empty file as value None with its filename: it gets its own message too
        if self.upload.filename:
            await self.ingest(self.upload.filename, bytes(self.upload.value or b""))

    async def ingest(self, name: str, data: bytes) -> None:
        """Validate the whole file, then store it; show what happened either way."""
        cap = int(self._hub.config.storage.max_upload_mb * 2**20)
        self.ok.visible = self.error.visible = False

        def work() -> list[tuple[str, str, int]]:
            series = parse_ohlc_csv(data, name=name, max_bytes=cap)
            self._hub.runtime.store_ohlc(series)
            return [(s.symbol, s.timeframe, len(s.frame)) for s in series]

        try:
            stored = await asyncio.to_thread(work)
        except QuantPanelError as exc:
            self.error.object = f"**Not imported** — {exc}"
            self.error.visible = True
            return
        self.uploads += 1
        self.ok.object = "Imported " + ", ".join(f"{s} {tf}: {n:,} bars" for s, tf, n in stored) + f" from {name}"
        self.ok.visible = True
        await self.load()
        self.series = f"{stored[-1][0]} {stored[-1][1]}"

    async def _on_trades_upload(self, *events: object) -> None:
        if self.trades_upload.filename:
            await self.ingest_trades(self.trades_upload.filename, bytes(self.trades_upload.value or b""))

    async def ingest_trades(self, name: str, data: bytes) -> None:
        """Store an aggTrades file through the runtime, showing its progress as it goes."""
        done = {"rows": 0, "total": 1}
        self.trades_message.visible = False
        self.trades_progress.param.update(value=0, visible=True)
        task = asyncio.ensure_future(self._hub.runtime.import_trades(
            name, data, lambda n, total: done.update(rows=n, total=total)))
        while not task.done():
            await asyncio.wait([task], timeout=0.2)
            pct = min(99, int(100 * done["rows"] / done["total"]))
            if pct != self.trades_progress.value:
                self.trades_progress.value = pct
        try:
            res = task.result()
        except QuantPanelError as exc:
            self.trades_progress.visible = False
            self.trades_message.param.update(object=f"**Not imported** — {exc}", alert_type="danger", visible=True)
            return
        self.trades_progress.value = 100
        self.trades_message.param.update(
            object=f"Imported {res.read:,} trades of {', '.join(sorted(res.symbols))} from {name}: "
                   f"{res.stored:,} new, {res.read - res.stored:,} already stored",
            alert_type="success", visible=True)

    @param.depends("series", watch=True)
    def _show_series(self) -> None:
        if not self.series:
            return
        sym, tf = self.series.split(" ")
        df = self._hub.runtime.read_ohlc(sym, tf)
        self.chart.objects = [pn.pane.HoloViews(
            candles(candle_frame(df, OHLC_TIMEFRAMES[tf]), title=f"{sym} {tf} (uploaded)"),
            sizing_mode="stretch_width", linked_axes=False)]

    @param.depends("leg_a", "leg_b", "window", watch=True)
    def _show_pair(self) -> None:
        if not self.leg_a or not self.leg_b or self.leg_a == self.leg_b:
            self.pair_chart.objects = [pn.pane.Markdown("*Upload two series and pick them as leg A and B.*")]
            return
        (a, tfa), (b, tfb) = self.leg_a.split(" "), self.leg_b.split(" ")
        if tfa != tfb:
            self.pair_chart.objects = [pn.pane.Markdown(f"*{a} is {tfa} and {b} is {tfb}: pick one timeframe.*")]
            return
        closes = [self._hub.runtime.read_ohlc(s, tfa).set_index("time")["close"] for s in (a, b)]
        try:
            series = pair_series(closes[0], closes[1], window=self.window)
        except QuantPanelError as exc:
            self.pair_chart.objects = [pn.pane.Markdown(f"*{exc}*")]
            return
        self.pair_chart.objects = [pn.pane.HoloViews((spread(series) + zscore(series)).cols(1),
                                                     sizing_mode="stretch_width", linked_axes=False)]

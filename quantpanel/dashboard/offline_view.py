"""Offline mode: upload an OHLC CSV (or load a bundled real pair in one click), see its candles and
the pair analytics of two stored series, and open them in the Pair and Backtest tabs.

An upload is parsed and validated whole in a worker thread, then stored in one transaction: a bad
file shows its message (file, line, column) and changes nothing already loaded or stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from quantpanel.analytics import align, ols_hedge
from quantpanel.analytics.series import pair_series
from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.plots import candle_frame, candles_chart, spread_chart, zscore_chart
from quantpanel.errors import QuantPanelError
from quantpanel.storage.ohlc import OHLC_TIMEFRAMES, OhlcSeries, parse_ohlc_csv, read_file_bytes

__all__ = ["OfflineView", "BUNDLED_PAIRS"]

#: Real OHLC pairs shipped in ``storage.bundled_ohlc_dir`` (data/SOURCES.md): label -> files (A, B).
BUNDLED_PAIRS: dict[str, tuple[str, str]] = {
    "Bybit daily data (real, not Binance): BTCUSDT / BNBUSDT, 2023-03-15 … 09-30":
        ("BTCUSDT-bybit-1d.csv", "BNBUSDT-bybit-1d.csv"),
    "Binance.US spot 1m (real, not futures): BTCUSDT / BTCUSDC over the USDC de-peg, 2023-03":
        ("binanceus-BTCUSDT-1m-2023-03-01_2023-03-21.csv.gz", "binanceus-BTCUSDC-1m-2023-03-01_2023-03-21.csv.gz"),
}


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


class OfflineView(Viewer):
    """Upload, the uploaded series, candles of one, spread and z-score of two."""

    series: param.Selector[str | None] = param.Selector(default=None, objects=[], label="Series")
    leg_a: param.Selector[str | None] = param.Selector(default=None, objects=[], label="Pair leg A (y)")
    leg_b: param.Selector[str | None] = param.Selector(default=None, objects=[], label="Pair leg B (x)")
    window = param.Integer(default=20, bounds=(2, 10_000), label="z window (bars)")

    def __init__(self, hub: Hub, *, on_stored: Callable[[], None] | None = None,
                 open_pair: Callable[[str, str, str], None] | None = None, **params: object) -> None:
        super().__init__(**params)
        self._hub = hub
        self._on_stored = on_stored  # the session's other tabs offer what was just stored
        self._open_pair = open_pair
        folder = Path(hub.config.storage.bundled_ohlc_dir)
        self.bundled = {label: tuple(folder / f for f in files) for label, files in BUNDLED_PAIRS.items()
                        if all((folder / f).is_file() for f in files)}
        self.bundled_select = pn.widgets.Select(options=list(self.bundled), width=560,
                                                label="Bundled real data", css_classes=["qp-bundled-select"])
        self.bundled_button = pn.widgets.Button(label="Load bundled pair", color="primary", width=170,
                                                css_classes=["qp-load-bundled"])
        self.bundled_button.on_click(self.load_bundled)
        self.open_pair_button = pn.widgets.Button(label="Analyse in Pair and Backtest tabs", width=260,
                                                  css_classes=["qp-open-pair"], visible=open_pair is not None)
        self.open_pair_button.on_click(self._on_open_pair)
        self.pair_summary = pn.pane.Markdown("", css_classes=["qp-offline-pair-summary"])
        self._labels: dict[str, str] = {}  # "SYMBOL tf" -> where a bundled series comes from
        self.upload = pn.widgets.FileInput(accept=".csv,.txt", multiple=False, css_classes=["qp-upload"])
        self.upload.param.watch(self._on_upload, ["value", "filename"])
        self.ok = pn.pane.Alert("", alert_type="success", visible=False, css_classes=["qp-upload-ok"])
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["qp-upload-error"])
        self.table = pn.widgets.Tabulator(pd.DataFrame(columns=["symbol", "timeframe", "bars", "first", "last"]),
                                          disabled=True, show_index=False, height=160,
                                          sizing_mode="stretch_width", css_classes=["qp-uploads"])
        self.chart = pn.Column(sizing_mode="stretch_width", css_classes=["qp-upload-chart"])
        self.pair_chart = pn.Column(sizing_mode="stretch_width", css_classes=["qp-upload-pair"])
        self.trades_upload = pn.widgets.FileInput(accept=".csv,.zip,.ndjson,.jsonl", multiple=False,
                                                  css_classes=["qp-trades-upload"])
        self.trades_upload.param.watch(self._on_trades_upload, ["value", "filename"])
        self.trades_progress = pn.indicators.Progress(value=0, max=100, visible=False, width=300,
                                                      css_classes=["qp-trades-progress"])
        self.trades_message = pn.pane.Alert("", alert_type="info", visible=False, css_classes=["qp-trades-message"])
        self.trades_rate = pn.pane.Str("", visible=False, css_classes=["qp-trades-rate"])
        self.uploads = 0
        self._pending: dict[str, asyncio.Future[None]] = {}
        self.loaded = False  # the stored series were listed (once the runtime has its database)
        bundled = ([pn.pane.Markdown("#### Try it on bundled real data — one click stores the pair and "
                                     "shows its analytics below"),
                    pn.FlexBox(self.bundled_select, self.bundled_button)] if self.bundled else [])
        self._layout = pn.Column(
            *bundled,
            pn.pane.Markdown("#### Upload an OHLC CSV — a time column (ISO-8601 or epoch s/ms/µs/ns) and "
                             "open/high/low/close, volume optional; one symbol per file (named in the "
                             "file name, e.g. `BTCUSDT-1m.csv`) or a symbol column. The timeframe is "
                             "the data's own."),
            self.upload, self.ok, self.error, self.table,
            pn.Row(pn.widgets.Select.from_param(self.param.series, width=220)), self.chart,
            pn.pane.Markdown("#### Pair analytics of two uploaded series (same timeframe)"),
            pn.FlexBox(pn.widgets.Select.from_param(self.param.leg_a, width=220),
                   pn.widgets.Select.from_param(self.param.leg_b, width=220),
                   pn.widgets.IntInput.from_param(self.param.window, width=140)),
            pn.FlexBox(self.pair_summary, self.open_pair_button), self.pair_chart,
            pn.pane.Markdown("#### Import trades — a data.binance.vision futures aggTrades file "
                             "(`BTCUSDT-aggTrades-2024-08-08.zip` or `.csv`, header or not) or a tick "
                             "collector's NDJSON (`{\"symbol\",\"ts\",\"price\",\"size\"}` per line; no ids "
                             "or sides, so keys are synthesised and buy volume is unknown). The trades "
                             "are stored (all or none) and can be replayed from the Replay tab."),
            self.trades_upload, pn.Row(self.trades_progress, self.trades_rate), self.trades_message,
            sizing_mode="stretch_width", name="Offline")

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    async def load(self) -> None:
        """Refresh the list of uploaded series from the store (on start and after an upload)."""
        if not self._hub.db_ready:
            return
        rows = await asyncio.to_thread(self._hub.ohlc_series)
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
        stored = await self._store([(name, lambda: data)])
        if stored:
            self.uploads += 1
            self.series = f"{stored[-1][0]} {stored[-1][1]}"
            await self._settled()

    async def _store(self, files: list[tuple[str, Callable[[], bytes]]], label: str = "",
                     ) -> list[tuple[str, str, int]]:
        """Parse every file whole, then store them together; the message says what happened."""
        cap = int(self._hub.config.storage.max_upload_mb * 2**20)
        self.ok.visible = self.error.visible = False

        def parse() -> list[OhlcSeries]:
            return [s for name, read in files for s in parse_ohlc_csv(read(), name=name, max_bytes=cap)]

        try:
            series = await asyncio.to_thread(parse)
            await self._hub.store_ohlc(series)
        except QuantPanelError as exc:
            self.error.object = f"**Not imported** — {exc}"
            self.error.visible = True
            return []
        stored = [(s.symbol, s.timeframe, len(s.frame)) for s in series]
        source = label or " and ".join(name for name, _ in files)
        for s, tf, _ in stored:
            self._labels[f"{s} {tf}"] = label
        self.ok.object = "Imported " + ", ".join(f"{s} {tf}: {n:,} bars" for s, tf, n in stored) + f" from {source}"
        self.ok.visible = True
        await self.load()
        if self._on_stored is not None:
            self._on_stored()
        return stored

    async def load_bundled(self, _event: object = None) -> None:
        """Store the chosen bundled pair and show its analytics (spread, z-score, hedge)."""
        label = self.bundled_select.value
        if label not in self.bundled:
            return
        cap = int(self._hub.config.storage.max_upload_mb * 2**20)
        self.bundled_button.loading = True
        try:
            stored = await self._store([(p.name, partial(read_file_bytes, p, max_bytes=cap))
                                        for p in self.bundled[label]], label)
        finally:
            self.bundled_button.loading = False
        if len(stored) == 2:
            (a, tf, _), (b, _, _) = stored
            self.param.update(series=f"{a} {tf}", leg_a=f"{a} {tf}", leg_b=f"{b} {tf}")
            await self._settled()

    def _on_open_pair(self, _event: object = None) -> None:
        if self._open_pair is not None and self.leg_a and self.leg_b and self.leg_a != self.leg_b:
            (a, tf), (b, _) = self.leg_a.split(" "), self.leg_b.split(" ")
            self._open_pair(a, b, tf)

    async def _on_trades_upload(self, *events: object) -> None:
        if self.trades_upload.filename:
            await self.ingest_trades(self.trades_upload.filename, bytes(self.trades_upload.value or b""))

    async def ingest_trades(self, name: str, data: bytes) -> None:
        """Store an aggTrades file through the runtime, showing its progress as it goes."""
        done = {"rows": 0, "total": 1}
        self.trades_message.visible = False
        self.trades_progress.param.update(value=0, visible=True)
        self.trades_rate.param.update(object="", visible=True)
        started = time.monotonic()
        task = asyncio.ensure_future(self._hub.import_trades(
            name, data, lambda n, total: done.update(rows=n, total=total)))
        while not task.done():
            await asyncio.wait([task], timeout=0.2)
            pct = min(99, int(100 * done["rows"] / done["total"]))
            if pct != self.trades_progress.value:
                self.trades_progress.value = pct
            if done["rows"]:
                self.trades_rate.object = _rate_text(done["rows"], done["total"], time.monotonic() - started)
        try:
            res = task.result()
        except QuantPanelError as exc:
            self.trades_progress.visible = self.trades_rate.visible = False
            self.trades_message.param.update(object=f"**Not imported** — {exc}", alert_type="danger", visible=True)
            return
        self.trades_progress.value = 100
        self.trades_rate.visible = False
        took = max(res.seconds, 1e-3)
        self.trades_message.param.update(
            object=f"Imported {res.read:,} trades of {', '.join(sorted(res.symbols))} from {name}: "
                   f"{res.stored:,} new, {res.read - res.stored:,} already stored; "
                   f"{sum(res.bars.values()):,} bars written in {res.seconds:.1f} s ({res.read / took:,.0f} rows/s)",
            alert_type="success", visible=True)

    # The charts read the store: in a worker thread, so no session's loop waits on disk.
    @param.depends("series", watch=True)
    def _on_series(self) -> None:
        self._pending["series"] = asyncio.ensure_future(self.show_series())

    @param.depends("leg_a", "leg_b", "window", watch=True)
    def _on_legs(self) -> None:
        self._pending["pair"] = asyncio.ensure_future(self.show_pair())

    async def _settled(self) -> None:
        """Wait for the charts the last change of series or legs started."""
        await asyncio.gather(*self._pending.values())

    async def show_series(self) -> None:
        """Candles of the chosen series."""
        if not self.series:
            return
        name = self.series
        sym, tf = name.split(" ")
        df = await asyncio.to_thread(self._hub.read_ohlc, sym, tf)
        if name != self.series:  # changed meanwhile: that change draws its own
            return
        label = self._labels.get(name) or "uploaded"
        self.chart.objects = [pn.pane.HoloViews(
            candles_chart(candle_frame(df, OHLC_TIMEFRAMES[tf]), title=f"{sym} {tf} ({label})"),
            sizing_mode="stretch_width", linked_axes=False)]

    async def show_pair(self) -> None:
        """Spread and z-score of leg A against leg B, with the OLS hedge."""
        self.pair_summary.object = ""
        self.open_pair_button.disabled = True
        legs = (self.leg_a, self.leg_b, self.window)
        if not self.leg_a or not self.leg_b or self.leg_a == self.leg_b:
            self.pair_chart.objects = [pn.pane.Markdown("*Upload two series and pick them as leg A and B.*")]
            return
        (a, tfa), (b, tfb) = self.leg_a.split(" "), self.leg_b.split(" ")
        if tfa != tfb:
            self.pair_chart.objects = [pn.pane.Markdown(f"*{a} is {tfa} and {b} is {tfb}: pick one timeframe.*")]
            return
        frames = await asyncio.gather(*(asyncio.to_thread(self._hub.read_ohlc, s, tfa) for s in (a, b)))
        if legs != (self.leg_a, self.leg_b, self.window):
            return
        closes = [f.set_index("time")["close"] for f in frames]
        try:
            series = pair_series(closes[0], closes[1], window=self.window)
            hedge = ols_hedge(*align(closes[0], closes[1]))
        except QuantPanelError as exc:
            self.pair_chart.objects = [pn.pane.Markdown(f"*{exc}*")]
            return
        z = series["zscore"].iloc[-1]
        self.pair_summary.object = (f"**{a}** (y) vs **{b}** (x), {tfa}: {len(series):,} aligned bars · OLS β "
                                    f"{hedge.beta:.4g} · R² {hedge.r2:.3f} · last z {z:.2f}")
        self.open_pair_button.disabled = False
        self.pair_chart.objects = [pn.pane.HoloViews((spread_chart(series) + zscore_chart(series)).cols(1),
                                                     sizing_mode="stretch_width", linked_axes=False)]


def _rate_text(rows: int, total: int, seconds: float) -> str:
    """Rows so far, their rate and the time left at that rate, for the upload's progress bar."""
    rate = rows / max(seconds, 1e-3)
    left = max(total - rows, 0) / rate
    return f"{rows:,} of {total:,} rows · {rate:,.0f} rows/s · ETA {left:.0f} s"

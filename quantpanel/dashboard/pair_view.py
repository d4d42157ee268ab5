"""The pair panel of one session: live spread, z-score and correlation, stats, on-demand tests.

A pair the feed follows at a timeframe it builds is live (the hub's pair analytics, every closed
bar). Any other stored pair (an imported OHLC series, a longer timeframe of stored trades) is
drawn once from every stored bar by the same batch analytics the notebook uses, into the same
charts: one tab for both."""

from __future__ import annotations

import asyncio
import math

import holoviews as hv
import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from quantpanel.analytics import HedgeResult, PairReport, align, ols_hedge, pair_report, pair_series, price_stats
from quantpanel.dashboard.exports import downloads, rename
from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.market_cards import CarryCard
from quantpanel.dashboard.plots import (
    PAIR_FRAME_COLUMNS,
    alert_markers,
    betas,
    corr_curve,
    live,
    markers_frame,
    pair_frame,
    spread_curve,
    thresholds,
    zscore_curve,
)
from quantpanel.dashboard.streaming import LiveChart
from quantpanel.errors import QuantPanelError
from quantpanel.models import SERIES_TIMEFRAMES, Bar, timeframe_ms
from quantpanel.pipeline.pairs import PairSpec

__all__ = ["PairView", "bar_closes"]


def bar_closes(bars: list[Bar]) -> pd.Series:
    """Closes of bars, indexed by bar time: the pair analytics' input (Pair and Backtest tabs)."""
    return pd.Series([b.close for b in bars], index=pd.to_datetime([b.time for b in bars], unit="ms"),
                     dtype="float64")


def _bars_df(bars: list[Bar]) -> pd.DataFrame:
    return pd.DataFrame({f: [getattr(b, f) for b in bars] for f in
                         ("open", "high", "low", "close", "volume", "vwap")},
                        index=pd.to_datetime([b.time for b in bars], unit="ms"))


def _fmt(v: object) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—" if v is None or math.isnan(v) else "∞"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


class PairView(Viewer):
    """Pick leg A (y) and leg B (x); charts update on every closed bar through Buffer streams."""

    # legs: None only until __init__ sets them
    a: param.Selector[str] = param.Selector(default=None, objects=[], label="Leg A (y)")
    b: param.Selector[str] = param.Selector(default=None, objects=[], label="Leg B (x)")
    timeframe: param.Selector[str] = param.Selector(default="1s", objects=["1s"])
    window = param.Integer(default=60, bounds=(2, 5_000), label="Window (bars)")
    lookback = param.Integer(default=0, bounds=(0, None), label="OLS lookback (bars, 0 = all)")
    entry = param.Number(default=2.0, bounds=(0, None), label="Entry |z|")
    exit = param.Number(default=0.0, bounds=(0, None), label="Exit |z|")

    def __init__(self, hub: Hub, **params: object) -> None:
        cfg = hub.config
        syms = list(cfg.symbols)
        self.param.a.objects = syms
        self.param.b.objects = syms
        self.param.timeframe.objects = list(cfg.timeframes)
        params.setdefault("a", syms[0])
        params.setdefault("b", syms[1] if len(syms) > 1 else syms[0])
        params.setdefault("timeframe", cfg.dashboard.default_timeframe)
        params.setdefault("window", cfg.windows.zscore)
        params.setdefault("lookback", cfg.windows.lookback)
        params.setdefault("entry", cfg.backtest.entry)
        params.setdefault("exit", cfg.backtest.exit)
        super().__init__(**params)
        self._hub = hub
        self._seq: int | None = None
        self.series_loaded = False  # the stored series were offered (once the runtime has its DB)
        self._stored: dict[str, list[Bar]] = {}  # a stored pair's bars, by leg
        self._stored_hedge: HedgeResult | None = None
        self.buffer = hv.streams.Buffer(pair_frame([]), length=hub.buffer_bars, index=False)
        opts = {"responsive": True, "height": 220, "tools": ["hover"], "show_grid": True}
        zlines = hv.DynamicMap(thresholds, streams=[hv.streams.Params(self, ["entry", "exit"])])
        self.markers = hv.streams.Pipe(data=markers_frame([]))
        self._markers_key: tuple[object, ...] | None = None
        empty = pair_frame([])
        self.chart = LiveChart(
            (live(spread_curve(empty).opts(title="spread", **opts), self.buffer)
             + (live(zscore_curve(empty), self.buffer) * zlines
                * live(alert_markers(markers_frame([])), self.markers)).opts(
                 title="rolling z-score", responsive=True, height=220)
             + live(corr_curve(empty).opts(title="rolling correlation of log returns", **opts), self.buffer)
             + live(betas(empty).opts(title="hedge ratio: static OLS vs Kalman filter", responsive=True,
                                      height=220), self.buffer)).cols(1),
            sizing_mode="stretch_width", linked_axes=False)
        num = {"font_size": "20pt", "title_size": "10pt", "format": "{value:.4g}"}
        self.beta_card = pn.indicators.Number(label="hedge ratio β", value=float("nan"), **num)
        self.r2_card = pn.indicators.Number(label="R²", value=float("nan"), **num)
        self.z_card = pn.indicators.Number(label="last z", value=float("nan"), **num)
        self.stats = pn.pane.DataFrame(pd.DataFrame(), sizing_mode="stretch_width", css_classes=["qp-leg-stats"])
        self.run_button = pn.widgets.Button(label="Run tests", color="primary", width=140)
        self.run_button.on_click(self._run_tests)
        self.tests = pn.pane.DataFrame(pd.DataFrame(), sizing_mode="stretch_width", css_classes=["qp-tests"])
        self.verdict = pn.pane.Alert("", alert_type="info", visible=False, css_classes=["qp-verdict"])
        self.error = pn.pane.Alert("", alert_type="danger", visible=False)
        self.carry = CarryCard()
        self.last_report: PairReport | None = None
        self.downloads = downloads(self.series_export, "pair", "pair series", css="qp-pair-download")
        self._name_downloads()
        controls = pn.FlexBox(*(pn.widgets.Select.from_param(self.param[p], width=130)
                                for p in ("a", "b", "timeframe")),
                          pn.widgets.IntInput.from_param(self.param.window, width=110),
                          pn.widgets.IntInput.from_param(self.param.lookback, width=190),
                          pn.widgets.FloatInput.from_param(self.param.entry, width=90, step=0.1),
                          pn.widgets.FloatInput.from_param(self.param.exit, width=90, step=0.1))
        self._layout = pn.Column(
            controls, self.error, pn.FlexBox(self.beta_card, self.r2_card, self.z_card, *self.downloads),
            self.carry, self.chart,
            pn.pane.Markdown("#### Legs over the window"), self.stats,
            pn.FlexBox(self.run_button,
                       pn.pane.Markdown("ADF, Engle–Granger, half-life and Hurst over the loaded bars")),
            self.verdict, self.tests, sizing_mode="stretch_width", name="Pair")

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    @property
    def spec(self) -> PairSpec:
        cfg = self._hub.config
        return PairSpec(self.a, self.b, self.timeframe, self.window, self.lookback,
                        cfg.windows.hedge_refit_bars, cfg.kalman.delta, cfg.kalman.ve)

    @property
    def stored(self) -> bool:
        """Not a live pair: drawn from stored bars (an imported series, an unbuilt timeframe)."""
        cfg = self._hub.config
        return not (self.a in cfg.symbols and self.b in cfg.symbols and self.timeframe in cfg.timeframes)

    def offer_series(self, tick_symbols: list[str], series: list[tuple[str, str]]) -> None:
        """Add what the database holds to the pickers (symbols, timeframes), keeping the choice."""
        cfg = self._hub.config
        syms = list(dict.fromkeys([*cfg.symbols, *tick_symbols, *(s for s, _ in series)]))
        tfs = set(cfg.timeframes) | {tf for _, tf in series}
        self.param.a.objects = self.param.b.objects = syms
        self.param.timeframe.objects = [tf for tf in SERIES_TIMEFRAMES if tf in tfs]
        self.series_loaded = True

    def offer_symbols(self, symbols: list[str]) -> None:
        """Symbols followed now (one was added): in both pickers, beside what was offered."""
        objs = list(dict.fromkeys([*symbols, *self.param.a.objects]))
        if list(self.param.a.objects) != objs:
            self.param.a.objects = self.param.b.objects = objs

    def update_carry(self) -> None:
        """Both legs' latest funding rates and the long spread's carry at the live static beta."""
        hedge = self._stored_hedge if self.stored else self._hub.pair_hedge(self.spec)
        m = self._hub.market
        self.carry.refresh(self.a, self.b, m.view(self.a), m.view(self.b), hedge.beta if hedge else None,
                           simulated=self._hub.replaying)

    async def load_series(self) -> None:
        """Offer the stored series (at session start, after an import)."""
        if not self._hub.db_ready:
            return
        self.offer_series(*await asyncio.to_thread(self._hub.stored_series))

    @param.depends("a", "b", "timeframe", "window", "lookback", watch=True)
    def _on_spec(self) -> None:
        self._seq = None  # the next pull replaces the series with the new spec's
        self._stored, self._stored_hedge = {}, None
        self._name_downloads()
        if self.stored and self.a != self.b:
            pn.state.execute(self.load_stored)

    async def load_stored(self) -> None:
        """Draw a stored pair from every stored bar (in a worker thread), with its cards."""
        a, b, tf, window, lookback = self.a, self.b, self.timeframe, self.window, self.lookback
        k = self._hub.config.kalman

        def work() -> tuple[dict[str, list[Bar]], pd.DataFrame, HedgeResult]:
            bars = self._hub.load_bars([a, b], tf)
            y, x = align(bar_closes(bars[a]), bar_closes(bars[b]))
            frame = pair_series(y, x, window=window, lookback=lookback or None, delta=k.delta, ve=k.ve)
            return bars, frame, ols_hedge(y, x, lookback=lookback or None)

        try:
            bars, frame, hedge = await asyncio.to_thread(work)
        except (QuantPanelError, ValueError) as exc:
            self.chart.reset(self.buffer)
            self.error.object, self.error.visible = f"{a}/{b} {tf}: {exc}", True
            return
        if (a, b, tf, window, lookback) != (self.a, self.b, self.timeframe, self.window, self.lookback):
            return  # the choice changed meanwhile: its own load draws it
        self.error.visible = False
        self._stored, self._stored_hedge = bars, hedge
        self.chart.reset(self.buffer, frame.iloc[-self._hub.buffer_bars:].reset_index(drop=True))
        self._update_cards()

    def _name_downloads(self) -> None:
        rename(self.downloads, f"pair-{self.a}-{self.b}-{self.timeframe}-w{self.window}")

    def series_export(self) -> pd.DataFrame:
        """The pair series the charts show: spread, z, correlation, OLS and Kalman betas."""
        return self.buffer.data[list(PAIR_FRAME_COLUMNS)].reset_index(drop=True)

    def pull(self) -> int:
        """Catch up with the hub; returns the number of new points (a stored pair has none)."""
        if self.a == self.b:
            self.error.object, self.error.visible = "Pick two different symbols for leg A and leg B.", True
            return 0
        self.update_carry()
        if self.stored:
            return 0
        self.error.visible = False
        d = self._hub.pair_since(self.spec, self._seq)
        rows = pair_frame(d.items) if d.items else None
        if d.reset:
            self.chart.reset(self.buffer, rows)
        elif rows is not None:
            self.chart.append(self.buffer, rows)
        self._seq = d.seq
        if d.items or d.reset:
            self._update_cards()
        self._update_markers()
        return len(d.items)

    def _update_markers(self) -> None:
        """z-score alerts of this pair and timeframe, as markers on the z chart."""
        key = (self._hub.alerts_seq, self.a, self.b, self.timeframe)
        if key == self._markers_key:
            return
        self._markers_key = key
        subject = f"{self.a}/{self.b}"
        self.chart.replace(self.markers, markers_frame([a for a in self._hub.alerts() if a.metric == "zscore"
                                         and a.subject == subject and a.timeframe == self.timeframe]))

    def _leg_bars(self, symbol: str) -> list[Bar]:
        """The closed bars the pair's analytics use: the hub's (live) or every stored one."""
        return self._stored.get(symbol, []) if self.stored else self._hub.closed_bars(symbol, self.timeframe)

    def _update_cards(self) -> None:
        data = self.buffer.data
        hedge = self._stored_hedge if self.stored else self._hub.pair_hedge(self.spec)
        self.beta_card.value = hedge.beta if hedge else float("nan")
        self.r2_card.value = hedge.r2 if hedge else float("nan")
        self.z_card.value = float(data["zscore"].iloc[-1]) if len(data) else float("nan")
        rows = {}
        tf_s = timeframe_ms(self.timeframe) / 1000
        for sym in dict.fromkeys((self.a, self.b)):
            bars = self._leg_bars(sym)
            if len(bars) >= 2:
                st = price_stats(_bars_df(bars), timeframe_s=tf_s, window=self.window)
                rows[sym] = {"last": st.last, "change %": st.change_pct, "high": st.high, "low": st.low,
                             "mean": st.mean, "σ log ret": st.std_log_return,
                             "vol (ann.)": st.realised_vol, "volume": st.volume, "vwap": st.vwap}
        self.stats.object = pd.DataFrame(rows).T

    async def _run_tests(self, _event: object = None) -> None:
        """Run the statistical tests in a thread: ingestion and other sessions never wait."""
        self.run_button.loading = True
        try:
            y, x = align(bar_closes(self._leg_bars(self.a)), bar_closes(self._leg_bars(self.b)))
            w = self._hub.config.windows
            report = await asyncio.to_thread(
                pair_report, y, x, window=self.window, lookback=self.lookback or None,
                adf_maxlag=w.adf_maxlag, hurst_max_lag=w.hurst_max_lag)
            self.show_report(report)
        finally:
            self.run_button.loading = False

    def show_report(self, report: PairReport) -> None:
        self.last_report = report
        rows = [
            ("aligned bars", report.n, ""),
            ("ADF statistic", report.adf_stat, f"5 % critical {_fmt(report.adf_crit_5)}"),
            ("ADF p-value", report.adf_pvalue, f"lag {_fmt(report.adf_lag)}"),
            ("Engle–Granger statistic", report.coint_stat, ""),
            ("Engle–Granger p-value", report.coint_pvalue, ""),
            ("half-life (bars)", report.half_life, ""),
            ("Hurst exponent", report.hurst, ""),
        ]
        rows += [(f"not computed: {k}", None, why) for k, why in report.errors.items()]
        self.tests.object = pd.DataFrame([(k, _fmt(v), note) for k, v, note in rows],
                                         columns=["test", "value", "note"]).set_index("test")
        self.verdict.object = report.verdict
        self.verdict.visible = True

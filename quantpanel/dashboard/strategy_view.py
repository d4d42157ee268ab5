"""The backtest panel of one session: backtest and entry x exit sweep of the Pair tab's pair.

The pair, timeframe, window, lookback and entry/exit thresholds are the Pair tab's own parameters
(one place to set them; the z-score chart's threshold lines follow). Runs read every stored bar of
the pair, not just the buffered ones, and compute in a worker thread: the event loop, ingestion
and other sessions never wait for them.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from quantpanel.analytics import align
from quantpanel.analytics.backtest import (
    BacktestResult,
    BetaMode,
    SweepResult,
    backtest,
    pair_signal,
    parse_grid,
    sweep,
    trades_frame,
)
from quantpanel.dashboard.exports import downloads, rename
from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.pair_view import PairView, bar_closes
from quantpanel.dashboard.plots import (
    drawdown_area,
    equity_curve,
    equity_frame,
    sweep_frame,
    sweep_heatmap,
)
from quantpanel.errors import QuantPanelError
from quantpanel.models import timeframe_ms
from quantpanel.pipeline.pair_costs import FundingMode, PairCosts, SlippageModel

__all__ = ["StrategyView", "StrategyRun", "costs_note"]


def costs_note(run: StrategyRun, result: BacktestResult, costs: PairCosts) -> str:
    """What the run charged beyond fees, and why funding is off when it is."""
    events = ", ".join(f"{n} for {leg}" for leg, n in costs.funding_events.items())
    if result.funding_included:
        text = (f"**Funding included**: {result.funding:+,.6g} ({'received' if result.funding >= 0 else 'paid'}) "
                f"from the stored funding events ({events}), in equity, total P&L and Sharpe; each trade's "
                "funding is in the trades table.")
        if costs.funding_unmatched:
            text += f" {costs.funding_unmatched} events fell in no aligned bar and were not charged."
    else:
        why = "funding set to off" if run.funding == "off" else costs.why_no_funding or "no funding events"
        text = f"**Funding off**: {why}."
    if result.slippage_model == "half_spread":
        quoted = ", ".join(f"{n:,} bars quoted for {leg}" for leg, n in costs.quoted_bars.items())
        text += (f" Slippage: half the quoted spread of each fill's bar ({quoted}); {result.quote_fallbacks} "
                 f"leg-trades had no stored quote and paid {run.slippage_bps:g} bps instead.")
    else:
        text += f" Slippage: fixed {run.slippage_bps:g} bps per leg."
    return text


@dataclass(frozen=True)
class StrategyRun:
    """What one run was asked: enough to label its results and name its export."""

    a: str
    b: str
    timeframe: str
    window: int
    lookback: int
    beta_mode: BetaMode
    stop: float | None
    fee_bps: float
    slippage_bps: float
    funding: FundingMode = "auto"
    slippage_model: SlippageModel = "fixed"


@dataclass(frozen=True)
class _Inputs:
    times: pd.DatetimeIndex
    y: np.ndarray
    x: np.ndarray
    z: np.ndarray
    beta: np.ndarray
    bars_per_year: float
    costs: PairCosts  # funding per bar and quoted spreads: keyword arguments of backtest/sweep


class StrategyView(Viewer):
    """Backtest controls, metric cards, equity and drawdown, trades table, CSV export, sweep."""

    beta_mode: param.Selector[BetaMode] = param.Selector(
        default="ols", objects={"static OLS β, rolling z": "ols", "Kalman β_t, Kalman z": "kalman"}, label="Signal")
    stop = param.Number(default=0.0, bounds=(0, None), label="Stop |z| (0 = none)")
    fee_bps = param.Number(default=4.0, bounds=(0, None), label="Fee (bps per leg)")
    slippage_bps = param.Number(default=0.0, bounds=(0, None), label="Slippage (bps per leg)")
    funding: param.Selector[FundingMode] = param.Selector(
        default="auto", objects={"auto (when stored for both legs)": "auto", "off": "off"}, label="Funding")
    slippage_model: param.Selector[SlippageModel] = param.Selector(
        default="fixed", objects={"fixed slippage bps": "fixed", "half the quoted spread": "half_spread"},
        label="Cost mode")
    entry_grid = param.String(default="1:3:0.25", label="Entry grid (start:stop:step)")
    exit_grid = param.String(default="0:1:0.25", label="Exit grid (start:stop:step)")

    def __init__(self, hub: Hub, pair: PairView, **params: object) -> None:
        bt = hub.config.backtest
        params.setdefault("stop", bt.stop or 0.0)
        params.setdefault("fee_bps", bt.fee_bps)
        params.setdefault("slippage_bps", bt.slippage_bps)
        params.setdefault("funding", bt.funding)
        params.setdefault("slippage_model", bt.slippage_model)
        super().__init__(**params)
        self._hub = hub
        self.pair = pair
        self.result: BacktestResult | None = None
        self.sweep_result: SweepResult | None = None
        self.run: StrategyRun | None = None
        self.costs: PairCosts | None = None
        self._trades = pd.DataFrame()

        self.equity = hv.streams.Pipe(data=equity_frame(pd.DatetimeIndex([]), np.zeros(0)))
        # framewise: each Pipe push is a whole new series, so the axes follow it
        chart_opts = {"responsive": True, "height": 200, "show_grid": True, "tools": ["hover"],
                      "framewise": True}
        self._equity_pane = pn.pane.HoloViews(
            (hv.DynamicMap(equity_curve, streams=[self.equity]).opts(title="equity (cumulative P&L, net of costs)",
                                                                     **chart_opts)
             + hv.DynamicMap(drawdown_area, streams=[self.equity]).opts(title="drawdown", **chart_opts)).cols(1),
            sizing_mode="stretch_width", linked_axes=False, css_classes=["qp-equity"])
        self.grid = hv.streams.Pipe(data=pd.DataFrame(columns=["entry", "exit", "total_pnl", "sharpe",
                                                               "max_drawdown", "n_trades"], dtype="float64"))
        heat = hv.DynamicMap(sweep_heatmap, streams=[self.grid]).opts(
            title="sweep: total P&L by entry x exit (click a cell to load it)", responsive=True, height=360,
            framewise=True)
        self.tap = hv.streams.Tap(source=heat, x=None, y=None)
        self.tap.param.watch(self._on_tap, ["x", "y"])
        self._heat_pane = pn.pane.HoloViews(heat, sizing_mode="stretch_width", css_classes=["qp-sweep"])
        # Shown once a sweep has data: an empty heatmap's colour bar (no range) keeps the page
        # from ever reporting itself loaded, so no session would start pulling.
        self._heat_slot = pn.Column(pn.pane.Markdown("*Run a sweep to see its heatmap.*"),
                                    sizing_mode="stretch_width")
        # Before the first run: a plain placeholder, not empty charts with axes at 1 Jan 1970.
        self._results_slot = pn.Column(
            pn.pane.Alert("No backtest yet: press **Run backtest** to see the P&L cards, the equity "
                          "curve and drawdown of the pair picked in the Pair tab, and its trades below.",
                          alert_type="light", css_classes=["qp-backtest-placeholder"]),
            sizing_mode="stretch_width")

        cards = {"total_pnl": ("total P&L", "{value:,.4g}"), "n_trades": ("trades", "{value:.0f}"),
                 "win_rate": ("win rate", "{value:.0%}"), "avg_trade": ("avg trade", "{value:,.4g}"),
                 "max_drawdown": ("max drawdown", "{value:,.4g}"), "sharpe": ("Sharpe (ann.)", "{value:.3g}"),
                 "fees": ("costs", "{value:,.4g}"), "slippage": ("of which slippage", "{value:,.4g}"),
                 "funding": ("funding (− = paid)", "{value:+,.4g}")}
        self.cards = {k: pn.indicators.Number(label=label, format=fmt, value=float("nan"), font_size="18pt",
                                              title_size="10pt", css_classes=[f"qp-card-{k}"])
                      for k, (label, fmt) in cards.items()}
        self.trades_table = pn.widgets.Tabulator(pd.DataFrame(), disabled=True, show_index=False,
                                                 pagination="local", page_size=15, height=420,
                                                 sizing_mode="stretch_width", css_classes=["qp-trades"])
        self.downloads = downloads(lambda: self._trades, "trades", "trades", css="qp-trades-download",
                                   disabled=True)
        self.run_button = pn.widgets.Button(label="Run backtest", color="primary", width=150)
        self.run_button.on_click(self.run_backtest)
        self.sweep_button = pn.widgets.Button(label="Run sweep", color="primary", width=150)
        self.sweep_button.on_click(self.run_sweep)
        self.progress = pn.indicators.Progress(active=True, visible=False, width=200, bar_color="primary")
        self.message = pn.pane.Markdown("", css_classes=["qp-strategy-message"])
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["qp-strategy-error"])
        self.summary = pn.pane.Markdown("", css_classes=["qp-strategy-summary"])
        self.costs_note = pn.pane.Markdown("", css_classes=["qp-costs-note"])

        controls = pn.FlexBox(
            pn.widgets.FloatInput.from_param(pair.param.entry, width=100, step=0.1),
            pn.widgets.FloatInput.from_param(pair.param.exit, width=100, step=0.1),
            pn.widgets.FloatInput.from_param(self.param.stop, width=140, step=0.5),
            pn.widgets.FloatInput.from_param(self.param.fee_bps, width=140, step=0.5),
            pn.widgets.FloatInput.from_param(self.param.slippage_bps, width=160, step=0.5),
            pn.widgets.Select.from_param(self.param.beta_mode, width=200),
            pn.widgets.Select.from_param(self.param.funding, width=220),
            pn.widgets.Select.from_param(self.param.slippage_model, width=200),
        )
        sweep_controls = pn.FlexBox(
            pn.widgets.TextInput.from_param(self.param.entry_grid, width=200),
            pn.widgets.TextInput.from_param(self.param.exit_grid, width=200),
            self.sweep_button,
        )
        self._layout = pn.Column(
            self.summary, controls, pn.FlexBox(self.run_button, *self.downloads, self.progress, self.message),
            self.error, self._results_slot, self.costs_note,
            pn.pane.Markdown("#### Trades"), self.trades_table,
            pn.pane.Markdown("#### Parameter sweep"), sweep_controls, self._heat_slot,
            sizing_mode="stretch_width", name="Backtest")
        self.pair.param.watch(self._describe, ["a", "b", "timeframe", "window", "lookback"])
        self._describe()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def _describe(self, *_: object) -> None:
        p = self.pair
        self.summary.object = (
            f"**{p.a}** (y) vs **{p.b}** (x) · {p.timeframe} bars · z window {p.window} · "
            f"OLS lookback {p.lookback or 'all'} — every stored bar of the pair; pick the pair, "
            f"timeframe and window in the Pair tab.")

    # -- runs ----------------------------------------------------------------------------------
    def _request(self) -> StrategyRun:
        p = self.pair
        if p.a == p.b:
            raise QuantPanelError("pick two different symbols for leg A and leg B in the Pair tab")
        return StrategyRun(p.a, p.b, p.timeframe, p.window, p.lookback, self.beta_mode,
                           self.stop or None, self.fee_bps, self.slippage_bps, self.funding, self.slippage_model)

    def _inputs(self, run: StrategyRun) -> _Inputs:
        """Blocking: stored closes -> aligned legs -> signal. Runs in a worker thread."""
        bars = self._hub.load_bars([run.a, run.b], run.timeframe)  # names what is stored if not these
        y, x = align(bar_closes(bars[run.a]), bar_closes(bars[run.b]))
        k = self._hub.config.kalman
        sig = pair_signal(y, x, mode=run.beta_mode, window=run.window, lookback=run.lookback or None,
                          delta=k.delta, ve=k.ve)
        costs = self._hub.pair_costs(run.a, run.b, run.timeframe, y, x, funding=run.funding,
                                     slippage_model=run.slippage_model)
        return _Inputs(pd.DatetimeIndex(y.index), y.to_numpy(), x.to_numpy(), sig.z, sig.beta,
                       365 * 86_400_000 / timeframe_ms(run.timeframe), costs)

    def _backtest(self, run: StrategyRun, entry: float, exit: float) -> tuple[_Inputs, BacktestResult]:
        i = self._inputs(run)
        return i, backtest(i.y, i.x, i.z, i.beta, entry=entry, exit=exit, stop=run.stop,
                           fee_bps=run.fee_bps, slippage_bps=run.slippage_bps,
                           bars_per_year=i.bars_per_year, **i.costs.kwargs)

    def _sweep(self, run: StrategyRun, entries: np.ndarray, exits: np.ndarray) -> tuple[_Inputs, SweepResult]:
        i = self._inputs(run)
        return i, sweep(i.y, i.x, i.z, i.beta, entries=entries, exits=exits, stop=run.stop,
                        fee_bps=run.fee_bps, slippage_bps=run.slippage_bps, bars_per_year=i.bars_per_year,
                        **i.costs.kwargs)

    def _busy(self, what: str | None) -> None:
        running = what is not None
        self.progress.visible = running
        self.run_button.disabled = self.sweep_button.disabled = running
        self.message.object = what or ""
        if running:
            self.error.visible = False

    def _fail(self, exc: Exception) -> None:
        self.error.object = f"{type(exc).__name__}: {exc}"
        self.error.visible = True

    async def run_backtest(self, _event: object = None) -> None:
        """Backtest the pair at the current thresholds and show it."""
        self._busy("running backtest…")
        try:
            run = self._request()
            entry, exit = self.pair.entry, self.pair.exit
            inputs, result = await asyncio.to_thread(self._backtest, run, entry, exit)
        except (QuantPanelError, ValueError) as exc:
            self._fail(exc)
            return
        finally:
            self._busy(None)
        self.show_backtest(run, inputs, result)

    async def run_sweep(self, _event: object = None) -> None:
        """Backtest every (entry, exit) cell of the grids; show total P&L as a heatmap."""
        self._busy("running sweep…")
        try:
            run = self._request()
            entries, exits = parse_grid(self.entry_grid), parse_grid(self.exit_grid)
            self.message.object = (f"running sweep: {len(entries)} x {len(exits)} cells…")
            _, result = await asyncio.to_thread(self._sweep, run, entries, exits)
        except (QuantPanelError, ValueError) as exc:
            self._fail(exc)
            return
        finally:
            self._busy(None)
        self.sweep_result = result
        self.grid.send(sweep_frame(result))
        if self._heat_pane not in self._heat_slot.objects:
            self._heat_slot.objects = [self._heat_pane]
        i, j = divmod(int(np.nanargmax(result.total_pnl)), len(result.exits))
        self.message.object = (f"sweep done: best total P&L {result.total_pnl[i, j]:,.4g} at entry "
                               f"{result.entries[i]:g}, exit {result.exits[j]:g} — click a cell to load it")

    def _on_tap(self, *_: object) -> None:
        """Load the clicked sweep cell's thresholds and backtest them."""
        r = self.sweep_result
        if r is None or self.tap.x is None or self.tap.y is None:
            return
        try:
            x, y = float(self.tap.x), float(self.tap.y)
        except (TypeError, ValueError):
            return
        entry = float(r.entries[np.abs(r.entries - y).argmin()])
        exit = float(r.exits[np.abs(r.exits - x).argmin()])
        self.pair.param.update(entry=entry, exit=exit)
        pn.state.execute(self.run_backtest)

    # -- showing -------------------------------------------------------------------------------
    def show_backtest(self, run: StrategyRun, inputs: _Inputs, result: BacktestResult) -> None:
        self.run, self.result, self.costs = run, result, inputs.costs
        if self._equity_pane not in self._results_slot.objects:
            self._results_slot.objects = [pn.FlexBox(*self.cards.values()), self._equity_pane]
        for key, card in self.cards.items():
            v = float(getattr(result, key))
            card.value = v if math.isfinite(v) else float("nan")
        self.equity.send(equity_frame(inputs.times, result.equity))
        self._trades = trades_frame(result, inputs.times)
        self.trades_table.value = self._trades
        rename(self.downloads, f"trades-{run.a}-{run.b}-{run.timeframe}-{run.beta_mode}")
        for button in self.downloads:
            button.disabled = False
        label = "funding (− = paid)" if result.funding_included else "funding (off)"
        if self.cards["funding"].label != label:  # a Number redraws its text on value changes only
            self.cards["funding"].label = label
            self.cards["funding"].param.trigger("value")
        self.costs_note.object = costs_note(run, result, inputs.costs)
        self.message.object = (f"{len(inputs.times):,} bars · entry {result.entry:g} · exit "
                               f"{result.exit:g} · stop {result.stop if result.stop else 'none'} · "
                               f"{run.beta_mode} signal")

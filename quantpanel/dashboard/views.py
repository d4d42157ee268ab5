"""Per-session views. Each takes the shared hub and pulls from it; none touches the pipeline."""

from __future__ import annotations

import time
from functools import cached_property
from html import escape
from typing import ClassVar

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from quantpanel.dashboard.alerts_view import AlertsView
from quantpanel.dashboard.correlation_view import CorrelationView
from quantpanel.dashboard.exports import downloads, rename
from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.offline_view import OfflineView
from quantpanel.dashboard.pair_view import PairView
from quantpanel.dashboard.plots import BAR_COLUMNS
from quantpanel.dashboard.replay_view import ReplayView, replay_clock
from quantpanel.dashboard.session import LivePush, every, one_message, session_doc
from quantpanel.dashboard.strategy_view import StrategyView
from quantpanel.dashboard.symbol_view import SymbolView
from quantpanel.dashboard.symbols_control import SymbolControls
from quantpanel.pipeline.runtime import Status

__all__ = ["SymbolView", "StatusStrip", "SourceBanner", "Dashboard"]


class SourceBanner(Viewer):
    """Says plainly when the dashboard is replaying, what, and whether it is real or simulated."""

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._alert = pn.pane.Alert("", alert_type="warning", visible=False,
                                    sizing_mode="stretch_width", css_classes=["qp-source-banner"])

    def __panel__(self) -> pn.viewable.Viewable:
        return self._alert

    def refresh(self, status: Status) -> None:
        if status.source == "REPLAY":
            kind = "SIMULATED data" if status.simulated else "REAL recorded data"
            text = f"**REPLAY** — Binance is not connected; replaying {kind}: {escape(status.label)}"
            if "simulated" not in status.label.lower():  # the local exchange simulates them
                text += ". Mark price, funding, liquidations and open interest are SIMULATED"
        else:
            text = ""
        if text != self._alert.object:
            self._alert.object = text
        self._alert.visible = bool(text)


class StatusStrip(Viewer):
    """Source, connection state, ticks/s and the age of the last tick."""

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._html = pn.pane.HTML("starting…", sizing_mode="stretch_width",
                                  css_classes=["qp-status"])

    def __panel__(self) -> pn.viewable.Viewable:
        return self._html

    def refresh(self, status: Status, *, load: int = 1, sessions: int = 0, chart_s: float = 1.0) -> None:
        """``load`` > 1: this server sheds load (``sessions`` watching), so this session's
        charts refresh every ``chart_s`` × ``load`` seconds: say so, never fall behind silently."""
        colour = {"LIVE": "#2e7d32", "REPLAY": "#ef6c00"}.get(status.source, "#616161")
        age = "—" if status.last_tick_age_s is None else f"{status.last_tick_age_s:.1f} s"
        err = f" · <span style='color:#c62828'>{escape(status.error)}</span>" if status.error else ""
        clock = f" · {replay_clock(status)}" if status.source == "REPLAY" else ""
        if status.gaps:
            unfilled = f", <b>{status.gaps_unfilled} unfilled</b>" if status.gaps_unfilled else ""
            clock += (f" · <span class='qp-gaps'>{status.gaps} gaps, {status.backfilled:,} trades "
                      f"backfilled{unfilled}</span>")
        if status.silent_streams:
            names = ", ".join(status.silent_streams)
            clock += (f" · <span class='qp-silent' style='color:#c62828'>silent streams: {escape(names)} "
                      f"(subscribed, nothing delivered: wrong route?)</span>")
        if load > 1:
            clock += (f" · <span class='qp-throttled' style='color:#6a1b9a'>throttled: {sessions} sessions "
                      f"watching, charts every {chart_s * load:g} s</span>")
        self._html.object = (
            f"<div style='font-family:monospace'>"
            f"<b style='color:{colour}' data-source='{status.source}'>{status.source}</b>"
            f" · <span class='qp-state'>{status.state}</span>"
            f" · <span class='qp-rate'>{status.ticks_per_s:,.0f}</span> ticks/s"
            f" · last tick <span class='qp-age'>{age}</span> ago"
            f" · {status.ticks:,} ticks · {status.malformed} malformed · {status.reconnects} reconnects"
            f"{clock}{err}</div>"
        )


class Dashboard(Viewer):
    """The page of one session: controls, source banner, status strip and one view per symbol."""

    symbols = param.ListSelector(default=[])
    timeframe: param.Selector[str] = param.Selector(default="1s", objects=["1s"])

    def __init__(self, hub: Hub, **params: object) -> None:
        cfg = hub.config
        self.param.symbols.objects = list(hub.symbols)
        self.param.timeframe.objects = list(cfg.timeframes)
        params.setdefault("symbols", list(hub.symbols[:2]))
        params.setdefault("timeframe", cfg.dashboard.default_timeframe)
        super().__init__(**params)
        self._hub = hub
        self.banner = SourceBanner()
        self.status = StatusStrip()
        self._views: dict[str, SymbolView] = {}
        self._charts = pn.Column(sizing_mode="stretch_width")
        self.bar_downloads = downloads(self.bars_export, "bars", "bars", css="qp-bars-download")
        self.alerts = AlertsView(hub)  # its toasts show in every tab
        self.replay = ReplayView(hub)  # its control bar is above the tabs
        self.symbol_controls = SymbolControls(hub, on_added=self._symbol_added)
        self._symbols_version = hub.symbols_version
        self._controls = pn.Column(
            pn.widgets.MultiChoice.from_param(self.param.symbols, name="Symbols"),
            pn.widgets.RadioButtonGroup.from_param(self.param.timeframe, name="Timeframe"),
            self.symbol_controls,
        )
        self._callback: object | None = None  # every()'s handle, once started
        self._live: LivePush | None = None
        self._last_charts = 0.0
        self._pulls = 0
        self._sync_views()
        market = pn.Column(pn.Row(*self.bar_downloads), self._charts, sizing_mode="stretch_width")
        # The Pair, Backtest, Correlation and Offline views are built when first shown (or used):
        # opening a session builds only what it shows.
        self._slots = {name: pn.Column(sizing_mode="stretch_width") for name in self._LAZY}
        built = {"Market": market, "Alerts": self.alerts, "Replay": self.replay}
        self.tabs = pn.Tabs(*((name, built.get(name) or self._slots[name]) for name in self.TABS),
                            dynamic=True, sizing_mode="stretch_width")
        self.tabs.param.watch(lambda e: self._tab_shown(self.TABS[e.new]), "active")
        self._layout = pn.Column(self.banner, self.status, self.replay.bar, self.tabs,
                                 sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    @property
    def controls(self) -> pn.viewable.Viewable:
        return self._controls

    TABS = ("Market", "Pair", "Backtest", "Correlation", "Alerts", "Offline", "Replay")
    _LAZY: ClassVar[dict[str, str]] = {"Pair": "pair", "Backtest": "strategy", "Correlation": "correlation",
                                       "Offline": "offline"}

    @property
    def tab(self) -> str:
        """The name of the tab shown."""
        return self.TABS[self.tabs.active]

    def show_tab(self, tab: str) -> None:
        """Show the tab named ``tab`` (one of ``TABS``). Not ``show``: that is Panel's, which
        serves the view in a new server."""
        self.tabs.active = self.TABS.index(tab)

    @cached_property
    def pair(self) -> PairView:
        return PairView(self._hub)

    @cached_property
    def strategy(self) -> StrategyView:
        return StrategyView(self._hub, self.pair)

    @cached_property
    def correlation(self) -> CorrelationView:
        return CorrelationView(self._hub, self.select_pair)

    @cached_property
    def offline(self) -> OfflineView:
        return OfflineView(self._hub, on_stored=self._offer_stored, open_pair=self.select_pair)

    def _built(self, name: str) -> bool:
        return name in self.__dict__

    def _offer_stored(self) -> None:
        """An import stored new series: the Pair tab's pickers offer them (if it was built: it
        reads them all when it is)."""
        if self._built("pair"):
            pn.state.execute(self.pair.load_series)

    def _tab_shown(self, tab: str) -> None:
        name = self._LAZY.get(tab)
        if name is not None and not self._slots[tab].objects:
            self._slots[tab].objects = [getattr(self, name)]
        if self._callback is not None:
            self.pull()  # the tab shown catches up at once

    @param.depends("symbols", "timeframe", watch=True)
    def _sync_views(self) -> None:
        for sym in list(self._views):
            if sym not in self.symbols:
                del self._views[sym]
        for sym in self.symbols:
            view = self._views.get(sym)
            if view is None:
                self._views[sym] = SymbolView(self._hub, symbol=sym, timeframe=self.timeframe)
            else:
                view.timeframe = self.timeframe
        self._charts.objects = [self._views[s] for s in self.symbols]
        rename(self.bar_downloads, f"bars-{'-'.join(self.symbols)}-{self.timeframe}")
        if self._callback is not None:
            self.pull()

    def _symbol_added(self, symbol: str) -> None:
        """This session added ``symbol``: its Market tab shows it at once."""
        self.refresh_symbols()
        if symbol not in self.symbols:
            self.symbols = [*self.symbols, symbol]

    def refresh_symbols(self) -> None:
        """Offer the symbols followed now in every picker (one was added or removed somewhere)."""
        self._symbols_version = self._hub.symbols_version
        syms = list(self._hub.symbols)
        if list(self.param.symbols.objects) != syms:
            self.param.symbols.objects = syms
        chosen = [s for s in self.symbols if s in syms]
        if chosen != self.symbols:
            self.symbols = chosen
        self.symbol_controls.refresh(syms)
        self.alerts.offer_symbols(syms)
        if self._built("pair"):
            self.pair.offer_symbols(syms)

    def bars_export(self) -> pd.DataFrame:
        """The closed bars the Market charts show, one symbol after another."""
        frames = [v.buffer.data[list(BAR_COLUMNS)].assign(symbol=s) for s, v in self._views.items()]
        if not frames:
            return pd.DataFrame(columns=["symbol", *BAR_COLUMNS])
        return pd.concat(frames, ignore_index=True)[["symbol", *BAR_COLUMNS]]

    def select_pair(self, a: str, b: str, timeframe: str | None = None) -> None:
        """Open the pair ``a`` (y) / ``b`` (x) in the Pair tab (the scanner's row click, the
        Offline tab's stored pair), at ``timeframe`` if given."""
        p = self.pair.param
        for sel, values in ((p.a, (a, b)), (p.b, (a, b)), (p.timeframe, (timeframe,) if timeframe else ())):
            missing = [v for v in values if v not in sel.objects]
            if missing:  # only then: a new options list re-sends every picker of the tab
                sel.objects = [*sel.objects, *missing]
        self.pair.param.update(a=a, b=b, **({"timeframe": timeframe} if timeframe else {}))
        shown = self.tab != "Pair" and self._callback is not None  # showing the tab pulls
        self.show_tab("Pair")
        if not shown:
            self.pull()

    def start(self) -> None:
        """Begin this session's pulls (call once the page has loaded): the periodic one for
        everything, and live ones of the visible charts, woken by the hub on new ticks."""
        if self._callback is None:
            self.pull()
            cfg = self._hub.config.dashboard
            doc = session_doc()
            self._callback = every(cfg.push_interval_ms, self.pull, doc)
            if cfg.live_push_ms and doc is not None:
                self._live = LivePush(doc, self.pull_live, cfg.live_push_ms / 1000, self._hub.load)
                self._live.unsubscribe = self._hub.subscribe(self._live.wake)

    def pull_live(self) -> None:
        """The visible tab's live charts and cards only: what a new tick changes."""
        tab = self.tab
        # Live charts (and the slower cards) redraw at most every `chart_refresh_ms`, times the
        # load beyond full-rate sessions; the last price stays live.
        now = time.monotonic()
        due = now - self._last_charts >= self._hub.config.dashboard.chart_refresh_ms / 1000 * self._hub.load()
        if tab == "Market":
            views = list(self._views.values())
            charts = due and any(v.behind() for v in views)
            for view in views:  # a chart update is a data-source patch: no model-graph change
                view.pull(charts=charts, cards=due)
            if due:
                self._last_charts = now
        elif tab == "Pair" and due and self.pair.pull():
            self._last_charts = now

    def pull(self) -> None:
        with one_message():
            self._pull()

    def _pull(self) -> None:
        started = time.perf_counter()
        status = self._hub.status()
        self.banner.refresh(status)
        cfg = self._hub.config.dashboard
        self.status.refresh(status, load=self._hub.load(), sessions=self._hub.sessions_subscribed,
                         chart_s=cfg.chart_refresh_ms / 1000)
        self.replay.pull(status)
        if self._symbols_version != self._hub.symbols_version:
            self.refresh_symbols()
        self.alerts.pull()  # toasts in every tab
        # Only the visible tab: every chart refresh costs server CPU; a hidden one catches up
        # with a single update when it is shown.
        self.pull_live()
        tab = self.tab
        if self._built("pair") and not self.pair.series_loaded and self._hub.db_ready:
            self.pair.series_loaded = True  # once: later imports offer theirs as they are stored
            pn.state.execute(self.pair.load_series)
        if tab == "Correlation":
            self.correlation.pull()
        elif tab == "Offline" and not self.offline.loaded:
            pn.state.execute(self.offline.load)
        elif tab == "Replay" and not self.replay.loaded:
            pn.state.execute(self.replay.load)
        self._pulls += 1
        self.last_pull_s = time.perf_counter() - started

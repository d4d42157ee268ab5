"""One symbol of the Market tab: price cards, the futures-native cards, and the candles with the
mark price line and the liquidation markers over them, all fed from the hub through streams."""

from __future__ import annotations

import holoviews as hv
import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.market_cards import MarketCards, liquidation_note
from quantpanel.dashboard.plots import bars_frame, empty_bars_frame, liquidations_frame, live_candles, marks_frame
from quantpanel.dashboard.session import show_live
from quantpanel.dashboard.streaming import LiveChart
from quantpanel.models import Bar, timeframe_ms

__all__ = ["SymbolView"]


class SymbolView(Viewer):
    """Metric cards and a candlestick + volume chart for one symbol, fed through Buffer streams;
    the mark price per bar (a Buffer) and the recent liquidations (a Pipe) are drawn over it."""

    symbol = param.String()
    timeframe = param.String(default="1s")

    def __init__(self, hub: Hub, **params: object) -> None:
        super().__init__(**params)
        self._hub = hub
        self._seq: int | None = None
        n = hub.buffer_bars
        # Closed bars only: each HoloViews refresh costs far more than the data, and ANALYTICS.md
        # leaves drawing the forming bar optional. Its live price is in the cards.
        self.buffer = hv.streams.Buffer(empty_bars_frame(), length=n, index=False)
        # the chart's other layers: their `data` renamed, as one DynamicMap draws all three
        self.marks = hv.streams.Buffer(marks_frame([]), length=n, index=False, rename={"data": "marks"})
        self.liquidations = hv.streams.Pipe(data=liquidations_frame([]), rename={"data": "liquidations"})
        self._marks_seq: int | None = None
        self._liq_key: tuple[int, int, int] | None = None
        # panes of other symbols must not share y
        self.chart = LiveChart(live_candles(self.buffer, title=self.symbol, marks=self.marks,
                                            liquidations=self.liquidations),
                               sizing_mode="stretch_width", linked_axes=False)
        self.note = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["qp-liq-note"])
        # the bars so far, before the chart is first drawn: HoloViews draws them in its first
        # render, and the session's first pull has only newer bars to stream
        d = hub.since(self.symbol, self.timeframe, None)
        if d.closed:
            self.buffer.update(data=bars_frame(d.closed, timeframe_ms(self.timeframe)))
        self._seq = d.seq if d.closed else None
        self._pull_market()  # likewise the mark line and markers (the chart is not drawn yet)
        fmt = "{value:,.6g}"
        self.last = pn.indicators.Number(label=f"{self.symbol} last", value=0.0, format=fmt,
                                         font_size="22pt", title_size="10pt")
        self.change = pn.indicators.Number(
            label="change % (window)", value=0.0, format="{value:+.3f}%", font_size="22pt",
            title_size="10pt", colors=[(0.0, "#ef5350"), (1e9, "#26a69a")])
        self.volume = pn.indicators.Number(label="volume (window)", value=0.0, format=fmt,
                                           font_size="22pt", title_size="10pt")
        self.market = MarketCards(self.symbol)
        self._layout = pn.Column(pn.Row(self.last, self.change, self.volume), self.market, self.chart,
                                 self.note, sizing_mode="stretch_width", name=self.symbol)
        if d.closed:
            self._update_cards(d.forming, all_cards=True)
        self._update_market_cards()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    @param.depends("timeframe", watch=True)
    def _on_timeframe(self) -> None:
        self._seq = self._marks_seq = None  # next pull replaces the buffers with the new timeframe's

    def behind(self) -> bool:
        """Bars (or mark points, liquidations) since the last pull: the next pull refreshes the chart."""
        m = self._hub.market
        return (self._seq is None or self._hub.seq(self.symbol, self.timeframe) != self._seq
                or self._marks_seq != m.marks_seq(self.symbol, self.timeframe)
                or (self._liq_key or (0,))[0] != m.liquidations_seq(self.symbol))

    def pull(self, *, charts: bool = True, cards: bool = True) -> int:
        """Catch up with the hub; returns the number of closed bars sent. ``charts=False``: the
        closed bars wait for a later pull; ``cards=False``: of the cards, only the last price
        (the window's change and volume and the market cards follow at the charts' pace: each
        card change is a model update the session's browser is sent)."""
        if cards:
            self._update_market_cards()
        if not charts and self._seq is not None:
            self._update_cards(self._hub.forming(self.symbol, self.timeframe), all_cards=cards)
            return 0
        d = self._hub.since(self.symbol, self.timeframe, self._seq)
        tf_ms = timeframe_ms(self.timeframe)
        rows = bars_frame(d.closed, tf_ms) if d.closed else None
        if d.reset:
            self.chart.reset(self.buffer, rows)
        elif rows is not None:
            self.chart.append(self.buffer, rows)
        self._seq = d.seq
        self._pull_market()
        self._update_cards(d.forming, all_cards=True)
        return len(d.closed)

    def _pull_market(self) -> None:
        """New mark points (streamed) and the liquidations within the candles' span (replaced,
        only when that set changed: the markers never widen the time axis past the candles)."""
        m = self._hub.market
        d = m.marks_since(self.symbol, self.timeframe, self._marks_seq)
        rows = marks_frame(d.items) if d.items else None
        if d.reset:
            self.chart.reset(self.marks, rows)
        elif rows is not None:
            self.chart.append(self.marks, rows)
        self._marks_seq = d.seq
        seq, liqs = m.liquidations(self.symbol)
        times = self.buffer.data["time"]
        first = int(pd.Timestamp(times.iloc[0]).value // 1_000_000) if len(times) else None
        kept = [x for x in liqs if first is None or x.time >= first]
        key = (seq, len(kept), kept[0].time if kept else 0)
        if key == self._liq_key:
            return
        self._liq_key = key
        self.chart.replace(self.liquidations, liquidations_frame(kept))
        note = liquidation_note(self._hub.replaying, len(kept))
        if self.note.object != note:
            self.note.object = note

    def _update_market_cards(self) -> None:
        simulated = self._hub.replaying
        self.market.refresh(self._hub.market.view(self.symbol), simulated=simulated)
        note = liquidation_note(simulated, self._liq_key[1] if self._liq_key else 0)
        if self.note.object != note:
            self.note.object = note

    def _update_cards(self, forming: Bar | None, *, all_cards: bool) -> None:
        data = self.buffer.data
        last = forming.close if forming is not None else (
            float(data["close"].iloc[-1]) if len(data) else None)
        if last is None:
            return
        show_live(self.last, last)
        if not all_cards:
            return
        first = float(data["open"].iloc[0]) if len(data) else (forming.open if forming else last)
        vol = float(data["volume"].sum()) + (forming.volume if forming is not None else 0.0)
        self.change.value = (last / first - 1.0) * 100.0 if first else 0.0
        self.volume.value = vol

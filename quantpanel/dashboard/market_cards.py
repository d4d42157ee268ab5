"""Cards of the futures-native market data: a symbol's mark, funding, quoted spread, best bid/ask
and open interest (Market tab), and a pair position's funding carry (Pair tab).

Each card is one HTML pane whose text is rebuilt from the pipeline's ``MarketView`` snapshot at
the cards' pace (about once a second) and sent only when it changed. The funding countdown runs
on the mark updates' own clock (their event time), so it is right at any replay speed.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape

import panel as pn
from panel.viewable import Viewer

from quantpanel.analytics import pair_carry
from quantpanel.pipeline.market import MarketView

__all__ = ["MarketCards", "CarryCard", "LIQUIDATION_NOTE", "countdown", "liquidation_note"]

LIQUIDATION_NOTE = "Binance pushes at most one liquidation per symbol per second"
_SIM = " · <b style='color:#ef6c00'>SIMULATED</b>"
_NONE = "—"


def _num(v: float | None, fmt: str = "{:,.6g}") -> str:
    return _NONE if v is None or not math.isfinite(v) else fmt.format(v)


def _hms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def countdown(ms: int) -> str:
    """A duration as ``1h 02m 03s`` / ``2m 03s`` / ``3s`` (negative: ``0s``)."""
    s = max(0, ms) // 1000
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s" if m else f"{sec}s"


def _card(label: str, value: str, sub: str) -> str:
    return (f"<div style='min-width:170px'><div style='font-size:10pt;color:#616161'>{label}</div>"
            f"<div class='qp-value' style='font-size:18pt;line-height:1.3'>{value}</div>"
            f"<div style='font-size:9pt;color:#757575'>{sub}</div></div>")


def liquidation_note(simulated: bool, shown: int) -> str:
    """The caption under a chart's liquidation markers: what they are, and that they undercount."""
    sim = "SIMULATED liquidations (replay) · " if simulated else ""
    return (f"<div style='font-size:9pt;color:#616161'>{sim}<b>●</b> {shown} liquidation"
            f"{'' if shown == 1 else 's'} in view: red a long liquidated (SELL), green a short (BUY), size by "
            f"notional · purple line: mark price · {LIQUIDATION_NOTE}, so the markers undercount.</div>")


class MarketCards(Viewer):
    """Mark price, funding rate (with the countdown to the next funding), quoted spread, best
    bid/ask and open interest of one symbol. ``refresh`` reads a ``MarketView`` snapshot."""

    KEYS = ("mark", "funding", "spread", "bidask", "oi")

    def __init__(self, symbol: str, **params: object) -> None:
        super().__init__(**params)
        self.symbol = symbol
        self.panes = {k: pn.pane.HTML("", css_classes=[f"qp-mkt-{k}"], margin=(0, 18, 0, 0)) for k in self.KEYS}
        self._layout = pn.FlexBox(*self.panes.values(), css_classes=["qp-market-cards"])
        self.refresh(None, simulated=False)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def texts(self, v: MarketView | None, *, simulated: bool) -> dict[str, str]:
        """Each card's HTML for the snapshot ``v`` (None: nothing received yet)."""
        sim = _SIM if simulated else ""
        m = v.mark if v is not None else None
        q = v.quote if v is not None else None
        oi = v.open_interest if v is not None else None
        out = {}
        if m is None:
            out["mark"] = _card(f"mark price{sim}", _NONE, "no mark price yet")
            out["funding"] = _card(f"funding rate{sim}", _NONE, "no mark price yet")
        else:
            out["mark"] = _card(f"mark price{sim}", _num(m.mark), f"at {_hms(m.time)} UTC")
            last = v.funding[-1] if v is not None and v.funding else None
            paid = f" · last {last.rate * 100:+.4f} % at {_hms(last.time)}" if last is not None else ""
            out["funding"] = _card(
                f"funding rate{sim}", _num(m.funding_rate * 100, "{:+.4f} %"),
                f"next funding in <span class='qp-countdown'>{countdown(m.next_funding - m.time)}</span>"
                f" ({_hms(m.next_funding)} UTC){paid}")
        if q is None or v is None:
            out["spread"] = _card("quoted spread", _NONE, "no quote yet")
            out["bidask"] = _card("best bid / ask", _NONE, "no quote yet")
        else:
            real = " (real bookTicker)" if simulated else ""
            out["spread"] = _card("quoted spread", _num(v.quoted_spread_bps, "{:.3f} bps"),
                                  f"mid {_num((q.bid + q.ask) / 2)}{real}")
            out["bidask"] = _card("best bid / ask", f"{_num(q.bid)} / {_num(q.ask)}",
                                  f"qty {q.bid_qty:g} / {q.ask_qty:g} at {_hms(q.time)} UTC")
        if oi is None or v is None:
            out["oi"] = _card(f"open interest{sim}", _NONE, "not polled yet")
        else:
            chg = v.open_interest_change_pct
            out["oi"] = _card(f"open interest{sim}", _num(oi.open_interest),
                              f"{_num(chg, '{:+.3f} %')} since the poll before · {_hms(oi.time)} UTC")
        return out

    def refresh(self, v: MarketView | None, *, simulated: bool) -> None:
        for key, text in self.texts(v, simulated=simulated).items():
            pane = self.panes[key]
            if pane.object != text:  # unchanged cards send nothing
                pane.object = text


class CarryCard(Viewer):
    """What a pair position receives at the next funding, from both legs' latest predicted rates:
    long spread = +1 A and -beta B (``pair_carry``); short spread receives the opposite."""

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.pane = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["qp-carry"])
        self.carry = math.nan  # long spread's, per funding interval (quote currency)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.pane

    def refresh(self, a: str, b: str, va: MarketView | None, vb: MarketView | None, beta: float | None, *,
                simulated: bool) -> None:
        ma = va.mark if va is not None else None
        mb = vb.mark if vb is not None else None
        legs = []
        for sym, m in ((a, ma), (b, mb)):
            rate = _num(m.funding_rate * 100, "{:+.4f} %") if m else _NONE
            nxt = f", next in {countdown(m.next_funding - m.time)}" if m else ""
            legs.append(f"<b>{escape(sym)}</b> funding <span class='qp-leg-rate'>{rate}</span>{nxt}")
        if ma is None or mb is None or beta is None or not math.isfinite(beta):
            self.carry = math.nan
            why = "no hedge ratio yet" if ma is not None and mb is not None else "no mark price yet for both legs"
            carry = f"{_NONE} ({why})"
        else:
            self.carry = pair_carry(1.0, ma.mark, ma.funding_rate, -beta, mb.mark, mb.funding_rate)
            carry = (f"<span class='qp-carry-value'>{self.carry:+,.6g}</span> per funding interval "
                     f"({'received' if self.carry >= 0 else 'paid'}; long spread = +1 {escape(a)}, "
                     f"−{beta:.4g} {escape(b)}, live static β). Short spread: the opposite, {-self.carry:+,.6g}.")
        sim = " <b style='color:#ef6c00'>SIMULATED</b> funding (replay)." if simulated else ""
        text = (f"<div style='font-size:10.5pt'><b>Funding carry, long spread:</b> {carry}<br>"
                f"{' · '.join(legs)} · −(pos_A·P_A·r_A + pos_B·P_B·r_B) at the mark prices; the legs' "
                f"funding intervals may differ.{sim}</div>")
        if self.pane.object != text:
            self.pane.object = text

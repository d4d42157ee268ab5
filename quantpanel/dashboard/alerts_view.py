"""The alerts panel of one session: define, edit, mute and delete rules; the alert log; toasts.

Rules live in the runtime (stored in SQLite, evaluated in the shared pipeline); every session sees
the same rules and the same log. New alerts reach each session through its own pull, which shows
a toast in that session.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from datetime import UTC, datetime

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from quantpanel.alerts.engine import ALERT_COLUMNS, Alert
from quantpanel.alerts.rules import (
    FEED_METRICS,
    MARKET_METRICS,
    METRICS,
    OPERATORS,
    PAIR_METRICS,
    Rule,
    RuleError,
    parse_rule,
)
from quantpanel.dashboard.exports import downloads
from quantpanel.dashboard.hub import Hub
from quantpanel.errors import QuantPanelError

__all__ = ["AlertsView", "alerts_frame"]

_RULE_COLUMNS = ["id", "name", "condition", "for bars", "reset", "cooldown s", "muted", "status"]


def alerts_frame(alerts: list[Alert]) -> pd.DataFrame:
    """The log as a table, newest first, times as UTC datetimes."""
    df = pd.DataFrame([tuple(getattr(a, c) for c in ALERT_COLUMNS) for a in alerts], columns=list(ALERT_COLUMNS))
    df["time"] = pd.to_datetime(df["time"].astype("int64"), unit="ms")
    return df.iloc[::-1].reset_index(drop=True)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


class AlertsView(Viewer):
    """Rule editor, rules table, alert log with CSV export; ``pull`` toasts new alerts."""

    name_ = param.String(default="", label="Rule name")
    metric: param.Selector[str] = param.Selector(default="zscore", objects=list(METRICS), label="Metric")
    # legs: None only until __init__ sets them
    leg_a: param.Selector[str] = param.Selector(default=None, objects=[], label="Pair leg A / symbol")
    leg_b: param.Selector[str] = param.Selector(default=None, objects=[], label="Pair leg B")
    timeframe: param.Selector[str] = param.Selector(default="1s", objects=["1s"], label="Timeframe")
    op: param.Selector[str] = param.Selector(default="outside", objects=list(OPERATORS), label="Operator")
    threshold = param.Number(default=2.0, label="Threshold")
    reset = param.String(default="", label="Re-arm at (blank = threshold)")
    for_bars = param.Integer(default=1, bounds=(1, 10_000), label="For N bars")
    cooldown_s = param.Number(default=0.0, bounds=(0, None), label="Cooldown (s)")

    def __init__(self, hub: Hub, **params: object) -> None:
        cfg = hub.config
        syms = list(cfg.symbols)
        self.param.leg_a.objects = syms
        self.param.leg_b.objects = syms
        self.param.timeframe.objects = list(cfg.timeframes)
        params.setdefault("leg_a", syms[0])
        params.setdefault("leg_b", syms[1] if len(syms) > 1 else syms[0])
        params.setdefault("timeframe", cfg.dashboard.default_timeframe)
        super().__init__(**params)
        self._hub = hub
        self._seq: int | None = None
        self._rules_version = -1
        self._log: list[Alert] = []
        self.toasts = 0  # toasts shown in this session

        self._leg_b = pn.widgets.Select.from_param(self.param.leg_b, width=130)
        self._timeframe = pn.widgets.Select.from_param(self.param.timeframe, width=100)
        form = [pn.widgets.TextInput.from_param(self.param.name_, width=220),
                pn.widgets.Select.from_param(self.param.metric, width=190),
                pn.widgets.Select.from_param(self.param.leg_a, width=150),
                self._leg_b, self._timeframe,
                pn.widgets.Select.from_param(self.param.op, width=140),
                pn.widgets.FloatInput.from_param(self.param.threshold, width=110),
                pn.widgets.TextInput.from_param(self.param.reset, width=190),
                pn.widgets.IntInput.from_param(self.param.for_bars, width=100),
                pn.widgets.FloatInput.from_param(self.param.cooldown_s, width=110)]
        self._on_metric()
        self.add_button = pn.widgets.Button(label="Add rule", color="primary", width=120)
        self.add_button.on_click(self.add_rule)
        self.update_button = pn.widgets.Button(label="Save changes to selected", width=200)
        self.update_button.on_click(self.update_rule)
        self.mute_button = pn.widgets.Button(label="Mute / unmute selected", width=190)
        self.mute_button.on_click(self.toggle_mute)
        self.delete_button = pn.widgets.Button(label="Delete selected", color="danger", width=150)
        self.delete_button.on_click(self.delete_rule)
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["qp-rule-error"])
        self.rules_table = pn.widgets.Tabulator(pd.DataFrame(columns=_RULE_COLUMNS), disabled=True,
                                                show_index=False, selectable=1, height=220,
                                                sizing_mode="stretch_width", css_classes=["qp-rules"])
        self.rules_table.param.watch(self._load_selected, "selection")
        self.log_table = pn.widgets.Tabulator(alerts_frame([]), disabled=True, show_index=False,
                                              pagination="local", page_size=20, height=420,
                                              sizing_mode="stretch_width", css_classes=["qp-alert-log"])
        self.downloads = downloads(self.log_frame, "alerts", "alert log", css="qp-alerts-download")
        self._layout = pn.Column(
            pn.pane.Markdown("#### Rules — evaluated in the shared pipeline: pair and symbol rules on every "
                             "closed bar, market rules (funding rate, quoted spread, liquidation notional, "
                             "open interest change, basis) on each market event of their symbol (leg A), "
                             "feed rules about once a second; stored, so they survive a restart"),
            pn.FlexBox(*form), pn.FlexBox(self.add_button, self.update_button, self.mute_button, self.delete_button),
            self.error, self.rules_table,
            pn.Row(pn.pane.Markdown("#### Alert log"), *self.downloads),
            self.log_table, sizing_mode="stretch_width", name="Alerts")

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    @param.depends("metric", watch=True)
    def _on_metric(self) -> None:
        """Leg B is a pair's; a market or feed rule has no timeframe (it runs on events)."""
        if hasattr(self, "_leg_b"):
            self._leg_b.disabled = self.metric not in PAIR_METRICS
            self._timeframe.disabled = self.metric in MARKET_METRICS + FEED_METRICS

    def offer_symbols(self, symbols: list[str]) -> None:
        """The symbols followed now (one was added or removed), keeping the form's choice."""
        for sel, chosen in ((self.param.leg_a, self.leg_a), (self.param.leg_b, self.leg_b)):
            objs = list(dict.fromkeys([*symbols, chosen]))
            if list(sel.objects) != objs:
                sel.objects = objs

    # -- rules ---------------------------------------------------------------------------------
    def form_rule(self, rule_id: int | None = None, muted: bool = False) -> Rule:
        """The form as a Rule; RuleError names the field that is wrong."""
        data: dict[str, object] = {"id": rule_id, "name": self.name_.strip(), "metric": self.metric,
                                   "timeframe": self.timeframe, "op": self.op, "threshold": self.threshold,
                                   "for_bars": self.for_bars, "cooldown_s": self.cooldown_s, "muted": muted}
        if self.reset.strip():
            try:
                data["reset"] = float(self.reset)
            except ValueError:
                raise RuleError(f"rule.reset: {self.reset!r} is not a number") from None
        if self.metric in PAIR_METRICS:
            data["pair"] = (self.leg_a, self.leg_b)
        elif self.metric not in FEED_METRICS:
            data["symbol"] = self.leg_a
        if not data["name"]:  # name it after what it watches
            data["name"] = parse_rule({**data, "name": "unnamed"}).describe()
        return parse_rule(data)

    def _require_selected(self) -> Rule:
        r = self._selected()
        if r is None:
            raise QuantPanelError("select a rule in the table first")
        return r

    def _selected(self) -> Rule | None:
        sel = self.rules_table.selection
        if not sel:
            return None
        rid = int(self.rules_table.value.iloc[sel[0]]["id"])
        return next((r for r in self._hub.rules() if r.id == rid), None)

    def _load_selected(self, *_: object) -> None:
        r = self._selected()
        if r is None:
            return
        legs = r.pair or (r.symbol or self.leg_a, self.leg_b)
        self.param.update(name_=r.name, metric=r.metric, leg_a=legs[0], leg_b=legs[1], timeframe=r.timeframe,
                          op=r.op, threshold=r.threshold, reset="" if r.reset is None else f"{r.reset:g}",
                          for_bars=r.for_bars, cooldown_s=r.cooldown_s)

    async def _do(self, action: Awaitable[None]) -> None:
        self.error.visible = False
        try:
            await action
        except (QuantPanelError, ValueError) as exc:
            self.error.object = str(exc)
            self.error.visible = True
        self.refresh_rules()

    async def add_rule(self, _event: object = None) -> None:
        async def run() -> None:
            await self._hub.save_rule(self.form_rule())
        await self._do(run())

    async def update_rule(self, _event: object = None) -> None:
        async def run() -> None:
            r = self._require_selected()
            await self._hub.save_rule(self.form_rule(r.id, r.muted))
        await self._do(run())

    async def toggle_mute(self, _event: object = None) -> None:
        async def run() -> None:
            r = self._require_selected()
            await self._hub.save_rule(r.model_copy(update={"muted": not r.muted}))
        await self._do(run())

    async def delete_rule(self, _event: object = None) -> None:
        async def run() -> None:
            rule_id = self._require_selected().id
            assert rule_id is not None  # a rule of the table is stored: it has its id
            await self._hub.delete_rule(rule_id)
        await self._do(run())

    def refresh_rules(self) -> None:
        if self._rules_version == self._hub.rules_version:
            return
        self._rules_version = self._hub.rules_version
        rows = [(r.id, r.name, r.describe(), r.for_bars, "" if r.reset is None else f"{r.reset:g}",
                 r.cooldown_s, "muted" if r.muted else "", "active" if why is None else f"inactive: {why}")
                for r, why in self._hub.rules_status()]
        self.rules_table.value = pd.DataFrame(rows, columns=_RULE_COLUMNS)

    # -- the log -------------------------------------------------------------------------------
    def pull(self) -> list[Alert]:
        """New alerts since the last pull: toast them (not the backlog of a fresh page), log them."""
        self.refresh_rules()
        d = self._hub.alerts_since(self._seq)
        self._seq = d.seq
        if d.reset:
            self._log = list(d.items)
        elif d.items:
            self._log = (self._log + d.items)[-self._hub.config.alerts.log_rows:]
            notes = pn.state.notifications
            for a in d.items[-5:]:  # a burst shows its newest few, the log has all
                if notes is not None:
                    notes.warning(f"⚠ {a.rule}: {a.metric} = {_value(a.value)} ({a.subject} "
                                  f"{a.timeframe}) at {_iso(a.time)} UTC", duration=8000)
                self.toasts += 1
        if d.reset or d.items:
            self.log_table.value = alerts_frame(self._log)
        return [] if d.reset else d.items

    def log_frame(self) -> pd.DataFrame:
        """The alert log, oldest first (the table shows it newest first)."""
        return alerts_frame(self._log).iloc[::-1]


def _value(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else str(v)

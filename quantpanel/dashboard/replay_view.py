"""Replay controls: pause, resume, speed, jump, and replaying a stored range through the pipeline.

They act on the server's one replay timeline (the local exchange the shared pipeline listens to),
so every open session sees the change; each session's controls follow the shared state on pull.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime

import panel as pn
from panel.viewable import Viewer

from quantpanel.dashboard.hub import Hub
from quantpanel.errors import QuantPanelError
from quantpanel.pipeline.runtime import Status

__all__ = ["ReplayView", "SPEEDS", "utc"]

SPEEDS = {"×1": 1.0, "×10": 10.0, "×100": 100.0, "×1000": 1000.0}
_FMT = "%Y-%m-%d %H:%M:%S"


def utc(ms: int) -> datetime:
    """Epoch ms as a naive UTC datetime (what the datetime inputs show)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None)


def _ms(dt: date) -> int:
    """A datetime input's value (naive UTC) as epoch ms. Its parameter also admits a plain date,
    which these inputs never hold."""
    if not isinstance(dt, datetime):
        raise TypeError(f"expected a datetime, got {dt!r}")
    return int(dt.replace(tzinfo=UTC).timestamp() * 1000)


class ReplayView(Viewer):
    """The Replay tab (jump, replay a stored range) and ``bar``: pause and speed, shown under the
    status strip (which shows the replay clock) on every tab while the server replays."""

    def __init__(self, hub: Hub, **params: object) -> None:
        super().__init__(**params)
        self._hub = hub
        self.pause = pn.widgets.Button(label="Pause", color="warning", width=110,
                                       css_classes=["qp-replay-pause"])
        self.pause.on_click(self._toggle)
        self.speed = pn.widgets.RadioButtonGroup(options=list(SPEEDS), value="×1", label="Speed",
                                                 css_classes=["qp-replay-speed"])
        self.speed.param.watch(self._on_speed, "value")
        self.jump_to = pn.widgets.DatetimeInput(label="Jump to (UTC, the recording's clock)", format=_FMT,
                                                width=240, css_classes=["qp-replay-jump-to"])
        self.jump = pn.widgets.Button(label="Jump", width=90, css_classes=["qp-replay-jump"])
        self.jump.on_click(self._on_jump)
        self.symbols = pn.widgets.MultiChoice(label="Stored symbols", options=[], width=320)
        self.start = pn.widgets.DatetimeInput(label="From (UTC)", format=_FMT, width=220)
        self.end = pn.widgets.DatetimeInput(label="To (UTC)", format=_FMT, width=220)
        self.play = pn.widgets.Button(label="Replay this range", color="primary",
                                      css_classes=["qp-replay-play"])
        self.play.on_click(self._on_play)
        self.stored = pn.pane.Markdown("", css_classes=["qp-replay-stored"])
        self.message = pn.pane.Alert("", alert_type="info", visible=False, css_classes=["qp-replay-message"])
        self.loaded = False
        self._spans: dict[str, tuple[int, int, int]] = {}
        self.bar = pn.Row(self.pause, self.speed, visible=False, css_classes=["qp-replay-bar"])
        self._layout = pn.Column(
            pn.pane.Markdown("Replay controls act on this server's one replay timeline: every open "
                             "session sees the change. Pause and speed are above, on every tab."),
            pn.Row(self.jump_to, self.jump),
            pn.pane.Markdown("#### Replay stored ticks through the live pipeline"),
            self.stored, pn.FlexBox(self.symbols, self.start, self.end), self.play, self.message,
            sizing_mode="stretch_width", name="Replay")

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def _say(self, text: str, kind: str = "info") -> None:
        self.message.param.update(object=text, alert_type=kind, visible=True)

    def _act(self, action: Callable[[], object]) -> bool:
        try:
            action()
        except QuantPanelError as exc:
            self._say(str(exc), "danger")
            return False
        return True

    def _toggle(self, event: object) -> None:
        hub = self._hub
        if hub.status().paused:
            self._act(lambda: hub.replay.resume())
        else:
            self._act(lambda: hub.replay.pause())
        self.pull(hub.status())

    def _on_speed(self, event: object) -> None:
        speed = SPEEDS[self.speed.value]
        if self._hub.status().speed != speed:
            self._act(lambda: self._hub.replay.set_speed(speed))

    def _on_jump(self, event: object) -> None:
        if self.jump_to.value is None:
            self._say("Pick a time to jump to.", "danger")
        elif self._act(lambda: self._hub.replay.jump(_ms(self.jump_to.value))):
            self._say(f"Jumped to {self.jump_to.value:%Y-%m-%d %H:%M:%S} UTC.")

    async def load(self) -> None:
        """List what is stored (when the tab is first shown)."""
        if not self._hub.replaying:
            self.loaded = True
            for w in (self.pause, self.speed, self.jump, self.play):
                w.disabled = True
            self._say("Replay controls work when the server replays (source: replay, or auto with "
                      "Binance unreachable); this server is on the live feed.", "warning")
            return
        replay = self._hub.replay
        spans = await asyncio.to_thread(replay.stored_spans)
        self.loaded = True
        self._spans = {s: (a, b, n) for s, a, b, n in spans}
        self.symbols.options = list(self._spans)
        if not self.symbols.value:
            self.symbols.value = list(self._spans)[:2]
        if spans:
            self.start.value = utc(min(a for _, a, _, _ in spans))
            self.end.value = utc(max(b for _, _, b, _ in spans))
        self.stored.object = "\n".join(f"- **{s}**: {n:,} ticks, {utc(a):{_FMT}} → {utc(b):{_FMT}} UTC"
                                       for s, a, b, n in spans) or "*Nothing stored yet.*"
        first, _ = replay.time_range()
        if self.jump_to.value is None:
            self.jump_to.value = utc(first)

    async def _on_play(self, event: object) -> None:
        if self.start.value is None or self.end.value is None:
            self._say("Pick the range's start and end.", "danger")
            return
        symbols, start, end = list(self.symbols.value), _ms(self.start.value), _ms(self.end.value)
        try:
            n = await asyncio.to_thread(self._hub.replay.replay_stored, symbols, start, end)
        except QuantPanelError as exc:
            self._say(str(exc), "danger")
            return
        self._say(f"Replaying {n:,} stored ticks of {', '.join(symbols)}.", "success")

    def pull(self, status: Status) -> None:
        """Follow the shared state (another session may have paused or changed the speed)."""
        replaying = status.source == "REPLAY"
        if self.bar.visible != replaying:
            self.bar.visible = replaying
        if not replaying:
            return
        label = "Resume" if status.paused else "Pause"
        if self.pause.label != label:
            self.pause.param.update(label=label, color="success" if status.paused else "warning")
        speed = next((k for k, v in SPEEDS.items() if v == status.speed), None)
        if speed and speed != self.speed.value:
            self.speed.value = speed


def replay_clock(status: Status) -> str:
    """The replay time, speed and state, as the status strip and the Replay tab show them."""
    if status.source != "REPLAY":
        return ""
    when = "—" if status.replay_time_ms is None else f"{utc(status.replay_time_ms):{_FMT}}"
    speed = "max" if status.speed == 0 else f"×{status.speed:g}"
    state = " · <b>PAUSED</b>" if status.paused else ""
    return (f"replay time <span class='qp-replay-time'>{when}</span> UTC · "
            f"<span class='qp-replay-speed-now'>{speed}</span>{state}")

"""The sidebar's symbol list: follow any USD-M symbol from now on, or stop following one.

The runtime does the work (subscribes every open connection, warms the new symbol from the store,
keeps it in the database's watch list); the hub tells every session, whose pickers then offer it.
"""

from __future__ import annotations

from collections.abc import Callable

import panel as pn
from panel.viewable import Viewer

from quantpanel.dashboard.hub import Hub

__all__ = ["SymbolControls"]


class SymbolControls(Viewer):
    """A text input and an Add button; a picker of the followed symbols and a Remove button."""

    def __init__(self, hub: Hub, *, on_added: Callable[[str], None] = lambda _s: None,
                 **params: object) -> None:
        super().__init__(**params)
        self._hub = hub
        self._on_added = on_added
        self.text = pn.widgets.TextInput(label="Add a USD-M symbol", placeholder="e.g. SOLUSDT", width=170,
                                         css_classes=["qp-add-symbol"])
        self.add_button = pn.widgets.Button(label="Add", color="primary", width=70, align="end")
        self.add_button.on_click(self.add)
        self.text.param.watch(lambda _e: pn.state.execute(self.add), "enter_pressed")
        self.followed = pn.widgets.Select(label="Followed symbols", options=list(hub.symbols), width=170)
        self.remove_button = pn.widgets.Button(label="Remove", width=70, align="end")
        self.remove_button.on_click(self.remove)
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["qp-symbol-error"])
        self.message = pn.pane.Markdown("", css_classes=["qp-symbol-message"])
        self._layout = pn.Column(pn.Row(self.text, self.add_button), pn.Row(self.followed, self.remove_button),
                                 self.error, self.message)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def _show(self, error: str = "", message: str = "") -> None:
        self.error.object = error.splitlines()[0] if error else ""  # one line, whatever was raised
        self.error.visible = bool(error)
        self.message.object = message

    async def add(self, _event: object = None) -> None:
        """Follow what the text input says (it is cleared once followed)."""
        text = (self.text.value_input or self.text.value or "").strip()
        if not text:
            self._show("Type a symbol to add, e.g. SOLUSDT")
            return
        self.add_button.disabled = True
        try:
            symbol = await self._hub.add_symbol(text)
        except ValueError as exc:
            self._show(str(exc))
            return
        finally:
            self.add_button.disabled = False
        self.text.param.update(value="", value_input="")
        self._show(message=f"following **{symbol}** from now on")
        self.refresh(self._hub.symbols)
        self._on_added(symbol)

    async def remove(self, _event: object = None) -> None:
        """Stop following the picked symbol (what is stored of it stays)."""
        symbol = self.followed.value
        if not symbol:
            return
        self.remove_button.disabled = True
        try:
            await self._hub.remove_symbol(symbol)
        except ValueError as exc:
            self._show(str(exc))
            return
        finally:
            self.remove_button.disabled = False
        self._show(message=f"stopped following **{symbol}** (its stored data stays)")
        self.refresh(self._hub.symbols)

    def refresh(self, symbols: list[str]) -> None:
        if list(self.followed.options) != list(symbols):
            self.followed.options = list(symbols)

"""One session's plumbing over Bokeh and Panel internals (documents, session contexts, model
text), kept in one place: an upgrade that changes them breaks here, not across the views."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import panel as pn
import param
from bokeh.document import Document
from panel.io.document import hold
from panel.io.state import set_curdoc

__all__ = ["LivePush", "show_live", "session_doc", "every", "one_message"]


def session_doc() -> Document | None:
    """The document of the served session being built, None elsewhere (a notebook, a test)."""
    doc = pn.state.curdoc
    return doc if doc is not None and doc.session_context is not None else None


def every(period_ms: int, fn: Callable[[], None], doc: Document | None = None) -> object:
    """Call ``fn`` every ``period_ms`` in ``doc`` (default: the current session's), as that
    session; the handle stops with the session (or ``.stop()`` for Panel's fallback).

    In a served session this is Bokeh's own periodic callback: Panel's would also flip the page's
    busy indicator twice per call (two more model updates sent, for background work).
    """
    doc = doc or session_doc()
    if doc is None:
        return pn.state.add_periodic_callback(fn, period=period_ms)

    def periodic() -> None:
        with set_curdoc(doc):
            fn()
    return doc.add_periodic_callback(periodic, period_ms)


@contextmanager
def one_message(doc: Document | None = None) -> Iterator[None]:
    """Send every model change made inside as one websocket message (Panel's ``hold``)."""
    with hold(doc or pn.state.curdoc):
        yield


class LivePush:
    """Runs ``pull`` in ``doc`` soon after the hub wakes it, at most once per ``min_s`` times the
    server's ``load`` (1 while it serves at full rate).

    ``wake`` is called on the event loop outside any session: it only schedules (one pending
    callback at a time, so a burst of updates costs one pull) and reports whether the session is
    still alive, so the hub drops destroyed ones.
    """

    def __init__(self, doc: Any, pull: Callable[[], None], min_s: float,
                 load: Callable[[], int] = lambda: 1) -> None:
        self.doc, self.pull, self.min_s, self.load = doc, pull, min_s, load
        self.pending = False
        self.last = 0.0
        self.pulls = 0
        self.unsubscribe: Callable[[], None] = lambda: None

    def alive(self) -> bool:
        ctx = self.doc.session_context
        return ctx is not None and not ctx.destroyed

    def wake(self) -> bool:
        if not self.alive():
            return False
        session = self.doc.session_context.session
        if self.pending or session is None or session.connection_count == 0:
            return True
        self.pending = True
        wait_ms = (self.last + self.min_s * self.load() - time.monotonic()) * 1000
        if wait_ms > 1:
            self.doc.add_timeout_callback(self._run, wait_ms)
        else:
            self.doc.add_next_tick_callback(self._run)
        return True

    def _run(self) -> None:
        self.pending = False
        if not self.alive():
            self.unsubscribe()
            return
        self.last = time.monotonic()
        self.pulls += 1
        with set_curdoc(self.doc), one_message(self.doc):
            self.pull()


def show_live(card: pn.indicators.Number, value: float) -> None:
    """Set a card that changes at tick rate: the text Panel renders for ``value``, written to the
    card's Bokeh models directly. (Panel's own path re-resolves the theme's styling on every
    update: a third of a watching session's server CPU at tick rate.)"""
    if value == card.value:
        return
    with param.parameterized.discard_events(card):
        card.value = value
    text = card._process_param_change({"value": value})["text"]
    for model, _ in card._models.values():
        model.text = text

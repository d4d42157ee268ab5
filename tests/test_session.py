"""dashboard/session.py, the one module over Bokeh/Panel session internals, in a real served
session: a Bokeh server in a thread, a websocket client connected to it (bokeh.client)."""

from __future__ import annotations

import socket
import time

import panel as pn
from bokeh.client import pull_session

from quantpanel.dashboard.session import LivePush, every, one_message, session_doc, show_live


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_session_helpers_in_a_served_session():
    assert session_doc() is None  # no session here: callers fall back (notebooks, tests)
    seen: dict = {"ticks": [], "pulls": []}

    def app():
        doc = session_doc()
        card = pn.indicators.Number(value=1.0, format="{value:.2f}", name="price")
        seen.update(doc=doc, card=card)
        # as the session, every period_ms
        every(50, lambda: seen["ticks"].append(pn.state.curdoc is doc), doc)

        def pull() -> None:
            with one_message():
                show_live(card, 2.5)
            seen["pulls"].append(pn.state.curdoc is doc)
        seen["push"] = LivePush(doc, pull, min_s=0.0)
        return card

    port = _free_port()
    server = pn.serve({"/": app}, port=port, address="127.0.0.1", threaded=True, show=False,
                      websocket_origin=[f"127.0.0.1:{port}"], check_unused_sessions_milliseconds=100,
                      unused_session_lifetime_milliseconds=100)  # a closed session is destroyed at once
    try:
        _wait(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0)
        client = pull_session(url=f"http://127.0.0.1:{port}/")
        try:
            _wait(lambda: "push" in seen and len(seen["ticks"]) >= 3)
            assert seen["doc"] is not None and all(seen["ticks"])  # ran inside the session's document
            push: LivePush = seen["push"]
            assert push.alive()
            _wait(lambda: push.wake() and seen["pulls"])  # a connected page is woken: one pull
            assert seen["pulls"] == [True]
            card = seen["card"]
            assert card.value == 2.5
            (model, _), = card._models.values()
            assert model.text == card._process_param_change({"value": 2.5})["text"]
        finally:
            client.close()
        _wait(lambda: not push.wake(), 30)  # a closed session is dropped by the hub
    finally:
        server.stop()

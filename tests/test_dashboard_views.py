"""Hub and views with a fixed hub state: no server, no browser."""

from __future__ import annotations

from dataclasses import replace

import pytest

from quantpanel.config import Config
from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.plots import bars_frame
from quantpanel.dashboard.views import Dashboard, SymbolView
from quantpanel.models import Bar
from quantpanel.pipeline.bars import BarUpdate
from quantpanel.pipeline.runtime import Runtime


def bar(t: int, c: float, *, closed: bool = True, sym: str = "BTCUSDT", tf: str = "1s") -> Bar:
    return Bar(sym, tf, t * 1000, c - 1, c + 1, c - 2, c, 2.0, 3, c, 1.0, closed)


@pytest.fixture
def hub() -> Hub:
    return Hub(Runtime(Config()), buffer_bars=5)


def test_hub_hands_each_session_only_what_it_has_not_seen(hub):
    hub.apply(BarUpdate(tuple(bar(t, 100 + t) for t in range(3)), (bar(3, 50, closed=False),)))
    first = hub.since("BTCUSDT", "1s", None)
    assert first.reset and [b.time for b in first.closed] == [0, 1000, 2000] and first.forming.time == 3000
    hub.apply(BarUpdate((bar(3, 103),), (bar(4, 60, closed=False),)))
    d = hub.since("BTCUSDT", "1s", first.seq)
    assert not d.reset and [b.time for b in d.closed] == [3000] and d.forming.close == 60
    assert hub.since("BTCUSDT", "1s", d.seq).closed == []
    # a session that fell further behind than the bounded buffer gets a reset, not a gap
    hub.apply(BarUpdate(tuple(bar(t, 100) for t in range(5, 12)), ()))
    late = hub.since("BTCUSDT", "1s", d.seq)
    assert late.reset and [b.time for b in late.closed] == [t * 1000 for t in range(7, 12)]
    assert late.forming is None  # the forming bar was closed meanwhile


def test_symbol_view_buffers_bars_and_cards_follow(hub):
    hub.apply(BarUpdate(tuple(bar(t, 100 + t) for t in range(3)), (bar(3, 110, closed=False),)))
    view = SymbolView(hub, symbol="BTCUSDT", timeframe="1s")
    # a new view holds the bars so far before it is drawn: its first pull has nothing to add
    assert list(view.buffer.data["close"]) == [100, 101, 102]
    assert view.pull() == 0
    assert view.last.value == 110  # the forming bar's price, live
    assert view.change.value == pytest.approx((110 / 99 - 1) * 100)  # from the window's first open
    assert view.volume.value == 8.0
    hub.apply(BarUpdate((bar(3, 103),), ()))
    assert view.pull() == 1
    assert list(view.buffer.data["close"]) == [100, 101, 102, 103] and view.last.value == 103
    # switching timeframe replaces the buffer with that timeframe's bars
    hub.apply(BarUpdate((bar(0, 7, tf="1m"),), ()))
    view.timeframe = "1m"
    view.pull()
    assert list(view.buffer.data["close"]) == [7]


def test_buffer_is_bounded(hub):
    view = SymbolView(hub, symbol="BTCUSDT", timeframe="1s")
    for t in range(20):
        hub.apply(BarUpdate((bar(t, 100 + t),), ()))
        view.pull()
    assert list(view.buffer.data["close"]) == [115, 116, 117, 118, 119]


def test_bars_frame_has_candle_geometry_and_side():
    df = bars_frame([replace(bar(0, 10), open=9.0), replace(bar(1, 10), open=11.0)], 1000)
    assert list(df.side) == [1.0, 0.0]  # up, down: a numeric colour-mapped column
    assert list(df.body_lo) == [9.0, 10.0] and list(df.body_hi) == [10.0, 11.0]
    assert (df.t1 - df.t0).dt.total_seconds().tolist() == [0.8, 0.8]


def test_dashboard_shows_starting_status_then_replay_banner(hub):
    dash = Dashboard(hub)
    assert dash.symbols == ["BTCUSDT", "ETHUSDT"] and dash.timeframe == "1s"
    dash.pull()
    assert not dash.banner._alert.visible
    assert "STARTING" in dash.status._html.object
    hub.runtime.source_kind = "REPLAY"
    dash.pull()
    assert dash.banner._alert.visible
    assert dash.banner._alert.object.startswith("**REPLAY**")
    assert "REAL recorded data" in dash.banner._alert.object
    assert "real Binance USD-M trades" in dash.banner._alert.object
    dash.symbols = ["ETHUSDT"]
    assert [o.name for o in dash._charts.objects] == ["ETHUSDT"] and list(dash._views) == ["ETHUSDT"]


def test_hub_wakes_sessions_on_every_update_and_drops_dead_or_broken_ones(hub):
    woken: list[str] = []
    alive = {"a": True}

    def a() -> bool:
        woken.append("a")
        return alive["a"]

    def broken() -> bool:
        raise RuntimeError("a destroyed document")

    unsubscribe_b = hub.subscribe(lambda: woken.append("b") or True)
    hub.subscribe(a)
    hub.subscribe(broken)
    hub.apply(BarUpdate((), (bar(0, 1, closed=False),)))
    assert woken == ["b", "a"] and hub.sessions_subscribed == 2  # the broken one is gone
    alive["a"] = False
    hub.apply(BarUpdate((bar(0, 1),), ()))
    assert woken == ["b", "a", "b", "a"] and hub.sessions_subscribed == 1
    unsubscribe_b()
    hub.apply(BarUpdate((bar(1, 1),), ()))
    assert woken == ["b", "a", "b", "a"] and hub.sessions_subscribed == 0


class _Doc:
    """A stand-in Bokeh document: records scheduled callbacks instead of running a loop."""

    def __init__(self) -> None:
        self.next_tick: list = []
        self.timeouts: list = []
        self.connections = 1
        self.destroyed = False
        doc = self

        class _Session:
            @property
            def connection_count(self) -> int:
                return doc.connections

        class _Ctx:
            session = _Session()

            @property
            def destroyed(self) -> bool:
                return doc.destroyed

        self.session_context = _Ctx()

    def add_next_tick_callback(self, cb) -> None:
        self.next_tick.append(cb)

    def add_timeout_callback(self, cb, ms) -> None:
        self.timeouts.append((cb, ms))


def test_live_push_coalesces_wakes_and_throttles_pulls(monkeypatch):
    from quantpanel.dashboard import session

    pulls: list[int] = []
    doc = _Doc()
    monkeypatch.setattr(session, "hold", lambda doc: __import__("contextlib").nullcontext())
    push = session.LivePush(doc, lambda: pulls.append(1), min_s=10.0)
    assert push.wake() and push.wake() and push.wake()
    assert len(doc.next_tick) == 1 and not doc.timeouts  # a burst: one pull scheduled
    doc.next_tick.pop()()
    assert pulls == [1]
    assert push.wake()  # within min_s of the last pull: scheduled for later, not now
    assert not doc.next_tick and len(doc.timeouts) == 1 and doc.timeouts[0][1] > 9_000
    doc.connections = 0  # page not connected (yet): not woken, still subscribed
    doc.timeouts.pop()[0]()
    assert push.wake() and not doc.next_tick and not doc.timeouts
    doc.destroyed = True
    assert push.wake() is False  # the hub drops it


def test_beyond_full_rate_sessions_pushes_and_charts_slow_down_cards_stay_live():
    assert Config().dashboard.full_rate_sessions == 10
    hub = Hub(Runtime(Config(dashboard={"full_rate_sessions": 4})), buffer_bars=5)
    assert hub.load() == 1
    unsubs = [hub.subscribe(lambda: True) for _ in range(9)]
    assert hub.load() == 3  # 9 sessions, 4 at full rate: each at a third of the rate
    hub.apply(BarUpdate(tuple(bar(t, 100 + t) for t in range(3)), (bar(3, 110, closed=False),)))
    view = SymbolView(hub, symbol="BTCUSDT", timeframe="1s")
    assert len(view.buffer.data) == 3  # a new view fills its chart at once
    hub.apply(BarUpdate((bar(3, 103),), (bar(4, 120, closed=False),)))
    assert view.pull(charts=False) == 0 and view.behind()  # the chart waits ...
    assert view.last.value == 120  # ... the price card does not
    assert view.pull() == 1 and not view.behind()
    dash = Dashboard(hub)
    dash.pull()  # the status strip says this session is slowed down, and why
    assert "throttled: 9 sessions watching, charts every 3 s" in dash.status._html.object
    for u in unsubs:
        u()
    assert hub.load() == 1
    dash.pull()
    assert "throttled" not in dash.status._html.object


def test_charts_redraw_at_most_every_chart_refresh_ms_while_cards_stay_live(hub):
    assert hub.config.dashboard.chart_refresh_ms == 1000
    dash = Dashboard(hub)
    view = dash._views["BTCUSDT"]
    hub.apply(BarUpdate((bar(0, 100),), (bar(1, 105, closed=False),)))
    dash.pull_live()
    assert len(view.buffer.data) == 1 and view.last.value == 105
    hub.apply(BarUpdate((bar(1, 101),), (bar(2, 120, closed=False),)))
    dash.pull_live()  # within the second: the card moves, the chart waits
    assert len(view.buffer.data) == 1 and view.behind() and view.last.value == 120
    dash._last_charts -= 1.0  # a second later
    dash.pull_live()
    assert len(view.buffer.data) == 2 and not view.behind()

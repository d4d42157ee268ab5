"""The dashboard in a real browser: it streams without reloads, and tabs share one pipeline.

`panel serve app.py --args --source replay` on a free port, the bundled real recording replayed
at x1 (about one new 1 s candle per second per symbol), read through headless Debian chromium.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .helpers import (
    ARTIFACTS,
    cds_rows,
    listening_ports,
    poll,
    status_strip,
    wait_for_growth,
    wait_for_replay_banner,
    x_ranges,
)

pytestmark = pytest.mark.browser

GROWTH_ROWS = 5  # new closed candles the largest chart must gain
GROWTH_TIMEOUT_S = 25
EXCHANGE_LINE = re.compile(r"exchange listening on ws://127\.0\.0\.1:(\d+)/stream replaying ")


def open_dashboard(context: object, url: str) -> tuple[object, list[str]]:
    """A loaded page, a marker in its window, and the list of navigations that happen after."""
    page = context.new_page()
    page.goto(url, timeout=90_000)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.evaluate("() => { window.__qp_loaded_once = true }")
    return page, navigations


def assert_same_document(page: object, navigations: list[str]) -> None:
    assert navigations == [], f"the page navigated/reloaded: {navigations}"
    assert page.evaluate("() => window.__qp_loaded_once === true"), "the page was reloaded"


def test_dashboard_streams_without_reload(panel_app, context) -> None:
    server = panel_app()
    page, navigations = open_dashboard(context, server.url)

    banner = wait_for_replay_banner(page)
    assert "Binance is not connected" in banner

    before, after = wait_for_growth(page, rows=GROWTH_ROWS, timeout=GROWTH_TIMEOUT_S)
    assert after["sources"] > 0 and after["total"] >= before["total"] + GROWTH_ROWS, (before, after)

    status = poll(lambda: status_strip(page),
                  lambda s: s.source == "REPLAY" and s.rate is not None and s.rate > 0
                  and s.state == "connected",
                  15, "the status strip to show REPLAY, connected and a ticks/s rate")
    assert status.text.startswith("REPLAY") and "ticks/s" in status.text, status.text
    assert status.ticks and status.ticks > 0, status.text

    assert_same_document(page, navigations)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot: Path = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.is_file() and shot.stat().st_size > 30_000, shot.stat().st_size
    assert_same_document(page, navigations)  # still the same document after all that


def test_two_tabs_share_the_pipeline_and_both_update(panel_app, context, tmp_path) -> None:
    # `panel serve` configures only the `bokeh` logger (even with --log-level): the quantpanel
    # logger's INFO lines are dropped. A --setup script (run in the server process) lets them
    # through to stderr, so the exchange's start-up line can be counted.
    setup = tmp_path / "log_info.py"
    setup.write_text("import logging\nlogging.getLogger('quantpanel').setLevel(logging.INFO)\n")
    server = panel_app("--setup", str(setup))

    tab1, nav1 = open_dashboard(context, server.url)
    wait_for_replay_banner(tab1)
    tab2, nav2 = open_dashboard(context, server.url)
    wait_for_replay_banner(tab2)

    # Both tabs grow over the same window of time.
    start1, start2 = cds_rows(tab1), cds_rows(tab2)

    def grown() -> tuple[dict[str, int], dict[str, int]]:
        return cds_rows(tab1), cds_rows(tab2)

    end1, end2 = poll(grown, lambda r: r[0]["max"] >= start1["max"] + GROWTH_ROWS
                      and r[1]["max"] >= start2["max"] + GROWTH_ROWS, GROWTH_TIMEOUT_S,
                      f"both tabs to gain {GROWTH_ROWS} rows (from {start1} / {start2})",
                      wait=lambda s: tab1.wait_for_timeout(s * 1000))
    assert end1["sources"] == end2["sources"] > 0, (end1, end2)
    for tab in (tab1, tab2):
        assert status_strip(tab).source == "REPLAY"
        # the charts streamed (no re-render) and their x ranges followed: the newest bar is in view
        ranges = x_ranges(tab)
        assert len(ranges) == 4, ranges  # candles and volume of both symbols
        for r in ranges:
            assert r["start"] <= r["newest"] <= r["end"], ranges
    assert_same_document(tab1, nav1)
    assert_same_document(tab2, nav2)

    # One shared runtime: the exchange started once, and the process listens on exactly two
    # ports: the web server's and that one exchange's.
    err = server.stderr()
    exchanges = EXCHANGE_LINE.findall(err)
    assert len(exchanges) == 1, f"expected one exchange, log says {exchanges}\n{err[-3000:]}"
    assert err.count("runtime started: REPLAY") == 1, err[-3000:]
    assert listening_ports(server.proc.pid) == {server.port, int(exchanges[0])}

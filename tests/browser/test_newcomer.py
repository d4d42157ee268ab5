"""What a newcomer sees, in a real browser (issue 13, items 4 and 10): no empty 1970 charts in the
Backtest tab before a run; one click in the Offline tab loads a bundled real OHLC pair and shows
its analytics, which the Pair and Backtest tabs then analyse and backtest; and at 1440 and
1024 px wide no control is cut off or drawn over another."""

from __future__ import annotations

import pytest

from .helpers import ARTIFACTS, _sleeper, column_counts, pane_text, poll, source, wait_for_replay_banner

pytestmark = pytest.mark.browser

TABS = ("Market", "Pair", "Backtest", "Correlation", "Alerts", "Offline", "Replay")

# Visible inputs, selects, buttons and labels that reach past the viewport or overlap another
# (a number input's spinner buttons, which have no text, sit on their input by design).
LAYOUT_PROBLEMS_JS = """(els) => {
  const vis = els.filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0
    && !(e.tagName === 'BUTTON' && !(e.innerText || '').trim()); });
  const name = e => `${e.tagName} '${(e.innerText || e.value || '').trim().slice(0, 30)}'`;
  const out = [];
  const boxes = vis.map(e => [e, e.getBoundingClientRect()]);
  for (const [e, r] of boxes) if (r.right > window.innerWidth - 4) out.push(`${name(e)} cut off at x=${Math.round(r.right)}`);
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const [a, ra] = boxes[i], [b, rb] = boxes[j];
    if (a.contains(b) || b.contains(a)) continue;
    const ox = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
    const oy = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
    if (ox > 2 && oy > 2) out.push(`${name(a)} overlaps ${name(b)}`);
  }
  return out;
}"""


def layout_problems(page) -> list[str]:
    return page.locator("input, select, button, label, textarea").evaluate_all(LAYOUT_PROBLEMS_JS)


def test_every_tab_fits_at_1440_and_1024_px(panel_app, browser) -> None:
    server = panel_app()
    problems: dict[str, list[str]] = {}
    for width in (1440, 1024):
        ctx = browser.new_context(viewport={"width": width, "height": 900})
        page = ctx.new_page()
        wait = _sleeper(page)
        try:
            page.goto(server.url, timeout=90_000)
            wait_for_replay_banner(page)
            for tab in TABS:
                page.get_by_text(tab, exact=True).first.click()
                wait(1.5)
                if found := layout_problems(page):
                    problems[f"{width}px {tab}"] = found
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(ARTIFACTS / f"layout-{width}-{tab}.png"), full_page=True)
            assert page.evaluate("() => document.documentElement.scrollWidth") <= width
        finally:
            ctx.close()
    assert not problems, problems


def test_a_bundled_pair_is_loaded_analysed_and_backtested_from_the_ui(panel_app, context) -> None:
    server = panel_app()
    page = context.new_page()
    wait = _sleeper(page)
    try:
        page.goto(server.url, timeout=90_000)
        wait_for_replay_banner(page)

        page.get_by_text("Backtest", exact=True).click()
        placeholder = poll(lambda: pane_text(page, "qp-backtest-placeholder"), lambda t: "No backtest yet" in t,
                           30, "the Backtest tab's placeholder", wait=wait)
        assert "Run backtest" in placeholder
        assert source(page, "equity") == {} and page.locator(".qp-equity").count() == 0  # no 1970 axes

        page.get_by_text("Offline", exact=True).click()
        page.get_by_role("button", name="Load bundled pair").click()
        ok = poll(lambda: pane_text(page, "qp-upload-ok"), lambda t: "BNBUSDT 1d" in t, 60,
                  "the bundled pair's import message", wait=wait)
        assert "Bybit daily data" in ok and "BTCUSDT 1d: 200 bars" in ok
        summary = poll(lambda: pane_text(page, "qp-offline-pair-summary"), lambda t: "aligned bars" in t, 30,
                       "the bundled pair's analytics", wait=wait)
        assert "BTCUSDT" in summary and "OLS β" in summary
        poll(lambda: column_counts(page, "zscore"), lambda n: any(k > 150 for k in n), 30,
             "the bundled pair's z-score", wait=wait)

        page.get_by_role("button", name="Analyse in Pair and Backtest tabs").click()
        poll(lambda: page.get_by_label("Timeframe", exact=True).first.input_value(), lambda v: v == "1d", 30,
             "the Pair tab on the daily pair", wait=wait)
        assert page.get_by_label("Leg B (x)", exact=True).input_value() == "BNBUSDT"
        spread = poll(lambda: source(page, "spread", "time"), lambda d: len(d.get("spread", [])) == 200, 60,
                      "the stored pair's spread over every daily bar", wait=wait)
        assert min(spread["time"]) > 1.6e12  # 2023, not 1970
        page.get_by_role("button", name="Run tests").click()
        poll(lambda: pane_text(page, "qp-tests"), lambda t: "ADF p-value" in t and "aligned bars" in t, 60,
             "the tests of the daily pair", wait=wait)

        page.get_by_text("Backtest", exact=True).click()
        poll(lambda: pane_text(page, "qp-strategy-summary"), lambda t: "BNBUSDT" in t and "1d bars" in t, 30,
             "the Backtest tab on the daily pair", wait=wait)
        page.get_by_role("button", name="Run backtest").click()
        poll(lambda: source(page, "equity"), lambda d: len(d.get("equity", [])) == 200, 60,
             "the equity curve of the daily pair", wait=wait)
        msg = poll(lambda: pane_text(page, "qp-strategy-message"), lambda t: "200 bars" in t, 30,
                   "the backtest's summary line", wait=wait)
        assert "ols signal" in msg
        assert pane_text(page, "qp-backtest-placeholder") == ""  # replaced by the results
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "newcomer.png"), full_page=True)
        raise

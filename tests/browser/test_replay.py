"""Replay controls in a real browser: pause stops the charts, resume continues them, the speed
changes the tick rate, a jump moves the replay clock, and a stored range is replayed; a second
tab follows the shared state."""

from __future__ import annotations

import re
import time

import pytest

from .helpers import ARTIFACTS, _sleeper, pane_text, poll, status_strip, wait_for_replay_banner

pytestmark = pytest.mark.browser

# the newest candle time on the page (Quad sources carry left/right/top/bottom)
LATEST_CANDLE_JS = """() => {
  let best = null;
  for (const d of Bokeh.documents) for (const m of d._all_models.values())
    if (m.type === 'ColumnDataSource') {
      const data = m.data instanceof Map ? Object.fromEntries(m.data) : m.data;
      if (data.left !== undefined && data.top !== undefined)
        for (const x of data.left) if (best === null || x > best) best = x;
    }
  return best;
}"""


def latest_candle(page) -> float | None:
    return page.evaluate(LATEST_CANDLE_JS)


def replay_time(page) -> str:
    m = re.search(r"replay time (\S+ \S+) UTC", status_strip(page).text)
    return m.group(1) if m else ""


def ticks(page) -> int:
    return status_strip(page).ticks or 0


def rate_over(page, seconds: float) -> float:
    """Ticks/s the status strip counted over ``seconds``."""
    wait = _sleeper(page)
    n0, t0 = ticks(page), time.monotonic()
    wait(seconds)
    return (ticks(page) - n0) / (time.monotonic() - t0)


def click_speed(page, label: str) -> None:
    page.locator(".qp-replay-speed").get_by_text(label, exact=True).click()


def test_pause_resume_speed_jump_and_stored_range(panel_app, context) -> None:
    server = panel_app()
    page = context.new_page()
    other = context.new_page()
    wait = _sleeper(page)
    try:
        page.goto(server.url, timeout=90_000)
        wait_for_replay_banner(page)
        poll(lambda: replay_time(page), bool, 30, "the status strip's replay time", wait=wait)

        # speed: x100 counts many times the ticks of x1 (the recording runs ~100 trades/s)
        click_speed(page, "×1")
        slow = rate_over(page, 4)
        click_speed(page, "×100")
        wait(1)
        fast = rate_over(page, 4)
        assert fast > 5 * max(slow, 1), (slow, fast)
        assert "×100" in status_strip(page).text

        # the charts move at x10 ...
        click_speed(page, "×10")
        first = poll(lambda: latest_candle(page), lambda v: v is not None, 30, "candles", wait=wait)
        poll(lambda: latest_candle(page), lambda v: v > first, 30, "the candles to move", wait=wait)

        # ... pause stops them (and the tick count and the replay clock) ...
        page.get_by_role("button", name="Pause").click()
        poll(lambda: status_strip(page).text, lambda t: "PAUSED" in t, 15, "PAUSED in the status strip",
             wait=wait)
        def state():
            return latest_candle(page), ticks(page), replay_time(page)

        def settled():  # what was in flight when the pause came has reached the page
            a = state()
            wait(2)
            return a, state()

        _, frozen = poll(settled, lambda ab: ab[0] == ab[1], 30, "the charts to stop", wait=wait)
        wait(5)
        assert state() == frozen

        # ... a second tab shows the shared state ...
        other.goto(server.url, timeout=90_000)
        poll(lambda: status_strip(other).text, lambda t: "PAUSED" in t, 30, "PAUSED in the other tab",
             wait=wait)
        assert other.get_by_role("button", name="Resume").is_visible()

        # ... and resume continues them
        page.get_by_role("button", name="Resume").click()
        poll(lambda: latest_candle(page), lambda v: v > frozen[0], 30, "the candles to move again", wait=wait)
        # the status strip follows on the periodic pull; charts come first, on the live push
        poll(lambda: ticks(page), lambda k: k > frozen[1], 15, "the tick count to move again", wait=wait)
        poll(lambda: status_strip(other).text, lambda t: "PAUSED" not in t, 30, "the other tab resumed",
             wait=wait)

        # jump: the replay clock moves to the chosen time of the recording
        click_speed(page, "×1")
        page.get_by_text("Replay", exact=True).click()
        box = page.get_by_label("Jump to (UTC, the recording's clock)", exact=True)
        poll(lambda: box.input_value(), bool, 30, "the jump box to show the recording's start", wait=wait)
        start = box.input_value()
        target = start[:-5] + "57:00" if start[-5:] < "57:00" else start
        box.fill(target)
        box.press("Enter")
        page.get_by_role("button", name="Jump", exact=True).click()
        poll(lambda: replay_time(page), lambda t: target <= t < target[:-5] + "59:00", 30,
             f"the replay clock at {target}", wait=wait)

        # a stored range replays through the pipeline
        poll(lambda: pane_text(page, "qp-replay-stored"), lambda t: "BTCUSDT" in t, 30,
             "the stored symbols", wait=wait)
        before = ticks(page)
        page.get_by_role("button", name="Replay this range").click()
        msg = poll(lambda: pane_text(page, "qp-replay-message"), lambda t: "Replaying" in t, 30,
                   "the replay's message", wait=wait)
        n = int(re.search(r"Replaying ([\d,]+) stored ticks", msg).group(1).replace(",", ""))
        assert n > 1000
        poll(lambda: ticks(page), lambda k: k > before + 500, 60, "the stored range's ticks", wait=wait)
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "replay.png"), full_page=True)
        (ARTIFACTS / "replay-server.log").write_text(server.output_tail(20_000))
        raise

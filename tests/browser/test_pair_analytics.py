"""The Pair tab in a real browser: live spread and z-score, Run tests, and the window control.

The replay runs at x8 with a 20-bar window so a z-score exists within seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .helpers import ARTIFACTS, _sleeper, poll, source, wait_for_replay_banner

pytestmark = pytest.mark.browser




@pytest.fixture
def replay_config(replay_config: Path) -> Path:
    cfg = yaml.safe_load(replay_config.read_text())
    cfg["replay"]["speed"] = 8
    cfg["windows"]["zscore"] = 20
    replay_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return replay_config


def series(page, col: str) -> list[float | None]:
    return source(page, col).get(col, [])


def finite(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def test_pair_tab_updates_live_runs_tests_and_follows_the_window(panel_app, context) -> None:
    server = panel_app()
    page = context.new_page()
    page.goto(server.url, timeout=90_000)
    wait_for_replay_banner(page)
    page.get_by_text("Pair", exact=True).click()
    wait = _sleeper(page)

    # spread and z-score charts receive points live
    z1 = poll(lambda: finite(series(page, "zscore")), lambda v: len(v) >= 5, 60,
              "the z-score chart to show 5 values", wait=wait)
    s1 = finite(series(page, "spread"))
    z2 = poll(lambda: finite(series(page, "zscore")), lambda v: len(v) >= len(z1) + 5, 30,
              "the z-score chart to grow by 5 more values", wait=wait)
    poll(lambda: finite(series(page, "spread")), lambda v: len(v) > len(s1), 15,
         "the spread chart to grow too", wait=wait)
    assert z2[: len(z1)] == z1  # appended, not recomputed
    assert all(-10 < v < 10 for v in z2)

    # Run tests: the ADF table and a verdict appear
    page.get_by_role("button", name="Run tests").click()
    page.get_by_text("ADF statistic").wait_for(timeout=30_000)
    page.get_by_text("Engle–Granger p-value").wait_for(timeout=5_000)
    verdict = page.locator(".qp-verdict").first
    poll(lambda: verdict.evaluate("e => (e.shadowRoot || e).textContent"),
         lambda t: "cointegrated at 5 %" in t and "ADF p =" in t, 15, "the verdict", wait=wait)

    # a different window gives a different z-score series
    before = finite(series(page, "zscore"))
    box = page.get_by_label("Window (bars)", exact=True)
    box.fill("40")
    box.press("Enter")
    after = poll(lambda: series(page, "zscore"), lambda v: v != [] and v[:39] == [None] * 39
                 and finite(v) != before, 30, "the z-score series for a 40-bar window", wait=wait)
    assert finite(after) and finite(after)[:5] != before[:5]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "pair.png"), full_page=True)

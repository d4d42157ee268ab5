"""Alerts in a real browser: a rule defined in the UI fires on the replayed data; both open tabs
get the toast and the log row; after a reload the rule and the log are still there."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import yaml

from .helpers import ARTIFACTS, _sleeper, poll, source, wait_for_replay_banner

pytestmark = pytest.mark.browser

RULE = "ui z rule"


@pytest.fixture
def replay_config(replay_config: Path) -> Path:
    cfg = yaml.safe_load(replay_config.read_text())
    cfg["replay"]["speed"] = 8
    cfg["windows"]["zscore"] = 20
    replay_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return replay_config


def log_rows(page) -> list[str]:
    return [t for t in page.locator(".qp-alert-log .tabulator-row").all_inner_texts() if RULE in t]


def rule_rows(page) -> list[str]:
    return page.locator(".qp-rules .tabulator-row").all_inner_texts()


def test_ui_rule_fires_toasts_and_logs_in_two_tabs_and_survives_a_reload(panel_app, context, tmp_path) -> None:
    server = panel_app()
    one, two = context.new_page(), context.new_page()
    pages = {"one": one, "two": two}
    try:
        for p in (one, two):
            p.goto(server.url, timeout=90_000)
            wait_for_replay_banner(p)
            p.get_by_text("Alerts", exact=True).click()
        wait = _sleeper(one)
        assert rule_rows(one) == []

        # define the rule in tab one: the pair's z-score outside ±0.5, re-armed inside ±0.2
        one.get_by_label("Rule name", exact=True).fill(RULE)
        one.get_by_label("Threshold", exact=True).fill("0.5")
        one.get_by_label("Threshold", exact=True).press("Enter")
        one.get_by_label("Re-arm at (blank = threshold)", exact=True).fill("0.2")
        one.get_by_label("Re-arm at (blank = threshold)", exact=True).press("Enter")
        one.get_by_role("button", name="Add rule").click()
        for p in (one, two):
            poll(lambda p=p: rule_rows(p), lambda rows: any(RULE in r and "outside [-0.5, 0.5]" in r for r in rows),
                 20, "the new rule in the rules table of both tabs", wait=wait)

        # the replay crosses it: a toast and a log row in both tabs
        for name, p in pages.items():
            p.locator(".notyf__toast", has_text=re.compile(f"{RULE}: zscore")).first.wait_for(timeout=60_000)
            poll(lambda p=p: log_rows(p), lambda rows: len(rows) >= 1, 20, f"a log row in tab {name}", wait=wait)

        # export the log
        with one.expect_download(timeout=30_000) as dl:
            one.get_by_role("button", name="Download alert log CSV").click()
        path = tmp_path / "alerts.csv"
        dl.value.save_as(path)
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        assert rows and {r["rule"] for r in rows} == {RULE} and all(abs(float(r["value"])) > 0.5 for r in rows)

        # a reload: the rule and the log are still there
        one.reload(timeout=90_000)
        wait_for_replay_banner(one)
        one.get_by_text("Alerts", exact=True).click()
        poll(lambda: rule_rows(one), lambda rows: any(RULE in r for r in rows), 20,
             "the rule after a reload", wait=wait)
        poll(lambda: log_rows(one), lambda r: len(r) >= 1, 20, "the log after a reload", wait=wait)

        # markers: the Pair tab's z chart shows the pair's alerts
        one.get_by_text("Pair", exact=True).click()
        poll(lambda: len(source(one, "rule").get("rule", [])), lambda n: n >= 1, 30,
             "alert markers on the z-score chart", wait=wait)
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for name, p in pages.items():
            p.screenshot(path=str(ARTIFACTS / f"alerts-{name}.png"), full_page=True)
        (ARTIFACTS / "alerts-server.log").write_text(server.output_tail(20_000))
        raise

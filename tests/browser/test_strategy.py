"""Backtest and Correlation tabs in a real browser: backtest, sweep, click-to-load, CSV export,
live correlation heatmap, and the scanner selecting a pair.

The replay runs at x8 with a 20-bar z window and entry 1.0 so trades exist within seconds.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import yaml

from quantpanel.analytics.backtest import TRADE_COLUMNS

from .helpers import ARTIFACTS, _sleeper, pane_text, poll, source, wait_for_replay_banner

pytestmark = pytest.mark.browser


@pytest.fixture
def replay_config(replay_config: Path) -> Path:
    cfg = yaml.safe_load(replay_config.read_text())
    cfg["replay"]["speed"] = 8
    cfg["windows"]["zscore"] = 20
    cfg["windows"]["correlation"] = 30
    cfg["backtest"]["entry"] = 1.0
    replay_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return replay_config


def card(page, key: str) -> str:
    return pane_text(page, f"qp-card-{key}")


def test_backtest_sweep_export_and_live_correlation_from_the_ui(panel_app, context, tmp_path) -> None:
    server = panel_app()
    page = context.new_page()
    wait = _sleeper(page)
    try:
        page.goto(server.url, timeout=90_000)
        wait_for_replay_banner(page)

        # Pair tab: swap the legs, so the scanner's row click visibly changes them back
        page.get_by_text("Pair", exact=True).click()
        page.get_by_label("Leg A (y)", exact=True).select_option("ETHUSDT")
        page.get_by_label("Leg B (x)", exact=True).select_option("BTCUSDT")
        wait(15)  # ~100 one-second bars of replay at x8

        # Backtest: equity curve, cards, trades table
        page.get_by_text("Backtest", exact=True).click()
        page.get_by_role("button", name="Run backtest").click()
        eq = poll(lambda: source(page, "equity"), lambda d: len(d.get("equity", [])) > 50, 60,
                  "the equity curve", wait=wait)
        assert "ETHUSDT" in pane_text(page, "qp-strategy-summary")
        trades = int(poll(lambda: card(page, "n_trades"), lambda t: t.split()[-1:] != ["NaN"]
                          and any(c.isdigit() for c in t), 15, "the trades card", wait=wait).split()[-1])
        assert trades > 0
        # the drawdown Area is a Bokeh Patch: the curve and its zero baseline, as x/y
        dd = poll(lambda: source(page, "y"), lambda d: len(d.get("y", [])) >= len(eq["equity"]),
                  15, "the drawdown chart", wait=wait)["y"]
        assert all(v <= 1e-12 for v in dd) and min(dd) < 0
        rows = page.locator(".qp-trades .tabulator-row")
        poll(lambda: rows.count(), lambda n: n == min(trades, 15), 15, "the trades table rows", wait=wait)

        # Export: the downloaded CSV holds exactly the trades the card counts
        with page.expect_download(timeout=30_000) as dl:
            page.get_by_role("button", name="Download trades CSV").click()
        path = tmp_path / "trades.csv"
        dl.value.save_as(path)
        assert dl.value.suggested_filename == "trades-ETHUSDT-BTCUSDT-1s-ols.csv"
        with path.open() as fh:
            got = list(csv.DictReader(fh))
        assert tuple(got[0].keys()) == TRADE_COLUMNS and len(got) == trades
        assert {r["side"] for r in got} <= {"long", "short"}

        # Sweep: a 4 x 3 heatmap; clicking a cell loads its thresholds and re-runs the backtest
        for label, value in (("Entry grid (start:stop:step)", "0.5:2:0.5"),
                             ("Exit grid (start:stop:step)", "0:0.5:0.25")):
            box = page.get_by_label(label, exact=True)
            box.fill(value)
            box.press("Enter")
        page.get_by_role("button", name="Run sweep").click()
        grid = poll(lambda: source(page, "total_pnl"), lambda d: len(d.get("total_pnl", [])) == 12, 60,
                    "the 4 x 3 sweep heatmap", wait=wait)
        assert {float(v) for v in grid["entry"]} == {0.5, 1.0, 1.5, 2.0}
        poll(lambda: pane_text(page, "qp-strategy-message"), lambda t: "sweep done" in t, 15,
             "the sweep summary", wait=wait)
        heat = page.locator(".qp-sweep canvas").first
        heat.scroll_into_view_if_needed()
        box = heat.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.3)
        entry_box, exit_box = page.get_by_label("Entry |z|", exact=True).last, page.get_by_label("Exit |z|", exact=True).last

        def shown() -> tuple[tuple[float, float], tuple[float, float] | None]:
            """(threshold inputs, thresholds of the backtest on show)."""
            m = re.search(r"entry ([\d.]+)\W+exit ([\d.]+)", pane_text(page, "qp-strategy-message"))
            inputs = (float(entry_box.input_value()), float(exit_box.input_value()))
            return inputs, ((float(m.group(1)), float(m.group(2))) if m else None)

        loaded, _ = poll(shown, lambda v: v[0] != (1.0, 0.0) and v[0] == v[1], 30,
                         "the clicked cell's thresholds in the inputs and its backtest", wait=wait)
        assert loaded[0] in {0.5, 1.0, 1.5, 2.0} and loaded[1] in {0.0, 0.25, 0.5}

        # Correlation: the heatmap updates live as bars close
        page.get_by_text("Correlation", exact=True).click()

        def off_diagonal() -> float | None:
            d = source(page, "a", "b", "zvalues")  # a HoloViews HeatMap's colour values
            cells = [c for a, b, c in zip(d.get("a", []), d.get("b", []), d.get("zvalues", []), strict=False)
                     if a != b]
            return cells[0] if cells else None

        first = poll(off_diagonal, lambda v: v is not None, 30, "the correlation heatmap", wait=wait)
        assert -1 <= first <= 1
        poll(off_diagonal, lambda v: v is not None and v != first, 30,
             "the correlation heatmap to change as bars close", wait=wait)

        # Scanner: a row per pair; clicking it opens that pair in the Pair tab
        page.get_by_role("button", name="Scan pairs").click()
        cell = page.locator(".qp-scan .tabulator-cell", has_text="BTCUSDT").first
        cell.wait_for(timeout=60_000)
        assert "1 pairs" in poll(lambda: pane_text(page, "qp-scan-note"), lambda t: "pairs ·" in t, 15,
                                 "the scan summary", wait=wait)
        cell.click()
        poll(lambda: page.get_by_label("Leg A (y)", exact=True).input_value(), lambda v: v == "BTCUSDT", 15,
             "the scanner's pair in the Pair tab", wait=wait)
        assert page.get_by_label("Leg B (x)", exact=True).input_value() == "ETHUSDT"
        assert page.get_by_label("Leg A (y)", exact=True).is_visible()
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "strategy.png"), full_page=True)
        for css in ("qp-sweep", "qp-equity", "qp-corr"):
            loc = page.locator(f".{css}")
            if loc.count() and loc.first.is_visible():
                loc.first.screenshot(path=str(ARTIFACTS / f"strategy-{css}.png"), timeout=5_000)
        (ARTIFACTS / "strategy-server.log").write_text(server.output_tail(20_000))
        raise

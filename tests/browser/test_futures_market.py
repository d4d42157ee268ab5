"""The futures-native market data in a real browser, on the embedded replay: real bookTicker
quotes; SIMULATED mark price, funding (every 60 s of recording), liquidations and open interest.

- the Market tab's quote, mark and funding cards move while the replay runs;
- a symbol added from the sidebar gets live candles without a reload;
- the Backtest tab charges the stored funding events and says so.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .helpers import _sleeper, pane_text, poll, wait_for_replay_banner, x_ranges

pytestmark = pytest.mark.browser
NONE = "—"


def _with(config: Path, **changes: object) -> None:
    cfg = yaml.safe_load(config.read_text())
    for dotted, value in changes.items():
        node = cfg
        *path, key = dotted.split("__")
        for p in path:
            node = node.setdefault(p, {})
        node[key] = value
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _cards(page) -> dict[str, str]:
    return {k: pane_text(page, f"qp-mkt-{k}") for k in ("mark", "funding", "spread", "bidask", "oi")}


def test_market_cards_show_quotes_mark_and_funding_moving(panel_app, context, replay_config) -> None:
    server = panel_app()
    page = context.new_page()
    wait = _sleeper(page)
    page.goto(server.url, timeout=90_000)
    wait_for_replay_banner(page)
    first = poll(lambda: _cards(page), lambda c: all(c[k] and NONE not in c[k].split("\n")[1]
                                                    for k in ("mark", "funding", "spread", "bidask")),
                 40, "the mark, funding and quote cards to get values", wait=wait)
    assert "SIMULATED" in first["mark"] and "SIMULATED" in first["funding"]
    assert re.search(r"[\d.]+ bps", first["spread"]), first["spread"]
    assert re.search(r"next funding in (\d+m )?\d+s", first["funding"]), first["funding"]
    later = poll(lambda: _cards(page), lambda c: all(c[k] != first[k] for k in ("mark", "funding", "bidask")),
                 30, "the cards to move", wait=wait)
    assert later["spread"] and "bps" in later["spread"]
    bid, ask = (float(v.replace(",", "")) for v in re.findall(r"[\d,]+\.?\d*", later["bidask"].split("\n")[1])[:2])
    assert 0 < bid <= ask
    note = poll(lambda: pane_text(page, "qp-liq-note"), lambda t: "in view" in t, 20, "the liquidation note",
                wait=wait)
    assert "SIMULATED" in note and "Binance pushes at most one liquidation per symbol per second" in note


def test_a_symbol_added_from_the_sidebar_gets_live_candles_without_a_reload(panel_app, context,
                                                                             replay_config) -> None:
    _with(replay_config, symbols=["BTCUSDT"])
    server = panel_app()
    page = context.new_page()
    wait = _sleeper(page)
    page.goto(server.url, timeout=90_000)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    wait_for_replay_banner(page)
    poll(lambda: len(x_ranges(page)), lambda n: n == 2, 30, "BTCUSDT's candles and volume", wait=wait)
    box = page.locator(".qp-add-symbol input")
    box.fill("nopeusdt")
    page.get_by_role("button", name="Add", exact=True).click()
    err = poll(lambda: pane_text(page, "qp-symbol-error"), lambda t: "NOPEUSDT" in t, 20,
               "the unknown symbol's error", wait=wait)
    assert "not a USD-M futures symbol" in err
    box.fill("ethusdt")
    page.get_by_role("button", name="Add", exact=True).click()
    poll(lambda: pane_text(page, "qp-symbol-message"), lambda t: "ETHUSDT" in t, 20, "ETHUSDT followed", wait=wait)
    poll(lambda: len(x_ranges(page)), lambda n: n == 4, 30, "ETHUSDT's candles and volume too", wait=wait)

    start = {tuple(r.values()) for r in x_ranges(page)}
    grown = poll(lambda: x_ranges(page), lambda rs: all(r["newest"] > max(s[2] for s in start) for r in rs),
                 30, "every chart (ETHUSDT's too) to take newer bars", wait=wait)
    assert len(grown) == 4
    assert navigations == [], navigations


def test_the_backtest_tab_charges_the_stored_funding(panel_app, context, replay_config) -> None:
    _with(replay_config, replay__speed=10, windows__zscore=20, backtest__entry=1.0)
    server = panel_app()
    page = context.new_page()
    wait = _sleeper(page)
    page.goto(server.url, timeout=90_000)
    wait_for_replay_banner(page)
    wait(20)  # ~200 s of recording at x10: three simulated fundings
    page.get_by_text("Backtest", exact=True).click()
    page.get_by_role("button", name="Run backtest").click()
    note = poll(lambda: pane_text(page, "qp-costs-note"), lambda t: "Funding" in t, 60,
                "the backtest's funding note", wait=wait)
    assert "Funding included" in note, note
    card = pane_text(page, "qp-card-funding")
    value = card.split()[-1]
    assert "funding" in card and re.fullmatch(r"[+-][\d,.]+(e-?\d+)?", value), card

"""The futures-native market data in a real browser, one served app for the module: the embedded
replay at x10 (real bookTicker quotes; SIMULATED mark price, funding every 60 s of recording,
liquidations and open interest), following only BTCUSDT at start.

The tests run in file order and build on each other: the cards move; ETHUSDT is added from the
sidebar and its candles grow without a reload; the Backtest tab of BTCUSDT/ETHUSDT then charges
the funding events stored meanwhile (each test adds ETHUSDT itself when run alone).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator

import pytest
import yaml

from .helpers import (
    ARTIFACTS,
    REPLAY_DATA,
    ROOT,
    Server,
    _sleeper,
    free_port,
    pane_text,
    poll,
    start_server,
    wait_for_replay_banner,
    x_ranges,
)

pytestmark = pytest.mark.browser
NONE = "—"
CARDS = ("mark", "funding", "spread", "bidask", "oi")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("market-data")
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["symbols"] = ["BTCUSDT"]
    cfg["storage"].update(db_path=str(tmp / "quantpanel.db"), replay_db_path=str(tmp / "replay.db"),
                          bundled_ohlc_dir=str(ROOT / "data" / "ohlc"))
    cfg["replay"].update(data=str(REPLAY_DATA), speed=10)
    for key in ("quotes", "spot"):  # the real quotes and spot trades of the same minutes
        cfg["replay"][key] = str(ROOT / cfg["replay"][key])
    cfg["windows"]["zscore"] = 20
    cfg["backtest"]["entry"] = 1.0
    cfg["alerts"]["rules"] = []
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTPANEL_")}
    env["QUANTPANEL_CONFIG"] = str(path)
    cmd = [sys.executable, "-m", "panel", "serve", "app.py", "--port", str(port), "--address", "127.0.0.1",
           "--allow-websocket-origin", f"127.0.0.1:{port}", "--args", "--source", "replay"]
    s = start_server(cmd, cwd=ROOT, env=env, port=port, logs=tmp / "server", path="/app")
    try:
        s.wait_http(90)
        yield s
    finally:
        s.stop()


@pytest.fixture
def page(server: Server, context, request: pytest.FixtureRequest) -> Iterator[object]:
    p = context.new_page()
    p.goto(server.url, timeout=90_000)
    wait_for_replay_banner(p)
    yield p
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        p.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        print(server.output_tail(6000))


def cards(page) -> dict[str, str]:
    return {k: pane_text(page, f"qp-mkt-{k}") for k in CARDS}


def value(card: str) -> str:
    lines = card.split("\n")
    return lines[1] if len(lines) > 1 else ""


def follow_eth(page) -> None:
    """Add ETHUSDT from the sidebar (a no-op message when an earlier test did)."""
    page.locator(".qp-add-symbol input").fill("ethusdt")
    page.get_by_role("button", name="Add", exact=True).click()
    wait = _sleeper(page)
    poll(lambda: pane_text(page, "qp-symbol-message") + pane_text(page, "qp-symbol-error"),
         lambda t: "ETHUSDT" in t, 20, "ETHUSDT followed", wait=wait)


def test_market_cards_of_quotes_mark_and_funding_move_in_replay(page) -> None:
    wait = _sleeper(page)
    first = poll(lambda: cards(page), lambda c: all(value(c[k]) not in ("", NONE) for k in CARDS[:4]),
                 40, "the mark, funding and quote cards to get values", wait=wait)
    assert "SIMULATED" in first["mark"] and "SIMULATED" in first["funding"] and "SIMULATED" in first["oi"]
    assert "SIMULATED" not in first["spread"].split("\n")[0]  # the quotes are the recording's real ones
    assert re.fullmatch(r"[\d.]+ bps", value(first["spread"])), first["spread"]
    assert re.search(r"next funding in (\d+m )?\d+s", first["funding"]), first["funding"]
    bid, ask = (float(v.replace(",", "")) for v in value(first["bidask"]).split(" / "))
    assert 0 < bid <= ask
    later = poll(lambda: cards(page), lambda c: all(c[k] != first[k] for k in ("mark", "funding", "bidask", "spread")),
                 30, "the quote, mark and funding cards to change", wait=wait)
    assert re.search(r"next funding in (\d+m )?\d+s", later["funding"])
    note = pane_text(page, "qp-liq-note")
    assert "SIMULATED" in note and "Binance pushes at most one liquidation per symbol per second" in note


def test_a_symbol_added_from_the_sidebar_gets_growing_candles_without_a_reload(page) -> None:
    wait = _sleeper(page)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.evaluate("() => { window.__qp_loaded_once = true }")
    poll(lambda: len(x_ranges(page)), lambda n: n >= 2, 30, "BTCUSDT's candles and volume", wait=wait)
    page.locator(".qp-add-symbol input").fill("nopeusdt")
    page.get_by_role("button", name="Add", exact=True).click()
    err = poll(lambda: pane_text(page, "qp-symbol-error"), lambda t: "NOPEUSDT" in t, 20,
               "the unknown symbol's one-line error", wait=wait)
    assert "not a USD-M futures symbol" in err and "\n" not in err.strip()
    follow_eth(page)
    poll(lambda: len(x_ranges(page)), lambda n: n == 4, 30, "ETHUSDT's candles and volume beside BTCUSDT's",
         wait=wait)

    def eth_newest() -> float:
        return max(r["newest"] for r in x_ranges(page)[2:]) if len(x_ranges(page)) == 4 else 0.0
    start = eth_newest()
    poll(eth_newest, lambda t: t > start + 3_000, 30, "ETHUSDT's candles to take newer bars", wait=wait)
    assert navigations == [] and page.evaluate("() => window.__qp_loaded_once === true"), navigations


def test_the_backtest_tab_shows_the_funding_charged(page) -> None:
    wait = _sleeper(page)
    follow_eth(page)
    page.get_by_text("Pair", exact=True).click()
    page.get_by_label("Leg A (y)", exact=True).select_option("BTCUSDT")
    page.get_by_label("Leg B (x)", exact=True).select_option("ETHUSDT")
    page.get_by_text("Backtest", exact=True).click()

    def run() -> str:
        page.get_by_role("button", name="Run backtest").click()
        wait(2)
        return pane_text(page, "qp-costs-note")
    # x10: a simulated funding every 6 s of wall time once ETHUSDT's bars are stored
    note = poll(run, lambda t: "Funding included" in t, 90, "the backtest to include funding", interval=3, wait=wait)
    assert "funding events" in note and "ETHUSDT" in note and "BTCUSDT" in note
    card = pane_text(page, "qp-card-funding")
    assert card.startswith("funding") and re.search(r"[+-][\d,.]+(e-?\d+)?$", card.split()[-1]), card
    assert "Funding off" not in note
    page.get_by_label("Funding", exact=True).select_option(label="off")
    off = poll(run, lambda t: "Funding off" in t, 30, "funding off, and why", wait=wait)
    assert "funding set to off" in off
    assert pane_text(page, "qp-card-funding").startswith("funding (off)")
    rows = page.locator(".qp-trades .tabulator-col-title", has_text="funding")
    assert rows.count() >= 1  # the trades table's funding column

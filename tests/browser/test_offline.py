"""Offline mode in a real browser: upload good OHLC CSVs (candles, pair analytics) and every kind
of bad file through the UI; each bad one shows its own message and leaves the data as it was."""

from __future__ import annotations

import re

import pytest

from tests.offline.cases import BAD, GOOD, agg_trades_csv, zipped

from .helpers import ARTIFACTS, ROOT, _sleeper, column_counts, pane_text, poll, wait_for_replay_banner

pytestmark = pytest.mark.browser

# rows of every candle-body data source (Bokeh Quad: left/right/bottom/top) on the page
QUAD_LENGTHS_JS = """() => {
  const out = [];
  for (const d of Bokeh.documents) for (const m of d._all_models.values())
    if (m.type === 'ColumnDataSource') {
      const data = m.data instanceof Map ? Object.fromEntries(m.data) : m.data;
      if (data.top !== undefined && data.left !== undefined) out.push(data.top.length);
    }
  return out;
}"""


def upload(page, name: str, data: bytes) -> None:
    page.locator(".qp-upload input[type=file]").set_input_files(
        files=[{"name": name, "mimeType": "text/csv", "buffer": data}])


def uploads_table(page) -> list[str]:
    return page.locator(".qp-uploads .tabulator-row").all_inner_texts()


def test_upload_good_and_bad_ohlc_files_through_the_ui(panel_app, context) -> None:
    server = panel_app()
    page = context.new_page()
    wait = _sleeper(page)
    try:
        page.goto(server.url, timeout=90_000)
        wait_for_replay_banner(page)
        page.get_by_text("Offline", exact=True).click()

        upload(page, *GOOD)
        poll(lambda: pane_text(page, "qp-upload-ok"), lambda t: "SIMUSDT 1m: 30 bars" in t, 30,
             "the upload's success message", wait=wait)
        poll(lambda: page.evaluate(QUAD_LENGTHS_JS), lambda n: 30 in n, 30, "the uploaded candles", wait=wait)

        # two real daily series: the pair analytics of the uploaded data
        for sym in ("BTCUSDT", "BNBUSDT"):
            name = f"{sym}-bybit-1d.csv"
            upload(page, name, (ROOT / "data" / "ohlc" / name).read_bytes())
            poll(lambda sym=sym: pane_text(page, "qp-upload-ok"), lambda t, sym=sym: f"{sym} 1d: 200 bars" in t,
                 30, f"the {sym} upload", wait=wait)
        page.get_by_label("Pair leg A (y)", exact=True).select_option("BTCUSDT 1d")
        page.get_by_label("Pair leg B (x)", exact=True).select_option("BNBUSDT 1d")
        poll(lambda: column_counts(page, "zscore"), lambda n: any(k > 100 for k in n), 30,
             "the z-score of the uploaded pair", wait=wait)
        before = poll(lambda: uploads_table(page), lambda rows: len(rows) == 3, 15,
                      "three uploaded series in the table", wait=wait)

        # every kind of bad file: its own message, nothing changes
        for name, data, words in BAD:
            upload(page, name, data)
            msg = poll(lambda: pane_text(page, "qp-upload-error"),
                       lambda t, name=name: name in t, 30, f"the message for {name}", wait=wait)
            assert all(w in msg for w in words), (name, msg)
            assert uploads_table(page) == before
        assert len(BAD) >= 8
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "offline.png"), full_page=True)
        (ARTIFACTS / "offline-server.log").write_text(server.output_tail(20_000))
        raise


def test_import_trades_with_progress_through_the_ui(panel_app, context, usdm_ticks) -> None:
    server = panel_app()
    page = context.new_page()
    wait = _sleeper(page)
    name = "ETHUSDT-aggTrades-2024-08-08"
    # the real ETHUSDT trades under ids the replay never sends: all new to the store
    eth = [t.__class__(t.symbol, t.time, t.agg_id + 10**9, t.price, t.qty, t.buyer_maker)
           for t in usdm_ticks if t.symbol == "ETHUSDT"]
    good = zipped(f"{name}.csv", agg_trades_csv(eth))
    try:
        page.goto(server.url, timeout=90_000)
        wait_for_replay_banner(page)
        page.get_by_text("Offline", exact=True).click()

        def send(data: bytes, fname: str) -> None:
            page.locator(".qp-trades-upload input[type=file]").set_input_files(
                files=[{"name": fname, "mimeType": "application/zip", "buffer": data}])

        send(good, f"{name}.zip")
        msg = poll(lambda: pane_text(page, "qp-trades-message"), lambda t: "Imported" in t, 60,
                   "the import's message", wait=wait)
        assert f"Imported {len(eth):,} trades of ETHUSDT from {name}.zip: {len(eth):,} new" in msg
        assert page.locator(".qp-trades-progress progress").get_attribute("value") == "100"
        written = re.search(r"; ([\d,]+) bars written in [\d.]+ s \(([\d,]+) rows/s\)", msg)
        assert written and int(written[1].replace(",", "")) > 0 and int(written[2].replace(",", "")) > 0, msg

        # a bad row: its line and column, and nothing of the file stored ...
        lines = agg_trades_csv(eth[:3000]).decode().splitlines(keepends=True)
        lines[2000] = lines[2000].replace(",", ",x", 2)
        send(zipped(f"{name}.csv", "".join(lines).encode()), f"{name}.zip")
        msg = poll(lambda: pane_text(page, "qp-trades-message"), lambda t: "Not imported" in t, 60,
                   "the bad file's message", wait=wait)
        assert f"{name}.csv:2001" in msg and "column" in msg
        # ... and what was stored before is all still there: a re-import finds every trade stored
        send(good, f"{name}.zip")
        poll(lambda: pane_text(page, "qp-trades-message"),
             lambda t: f"0 new, {len(eth):,} already stored" in t, 60, "the re-import's message", wait=wait)
        # a long file (the same trades 40 days running, ~30 MB): rows/s and the time left as it goes
        days = [t.__class__(t.symbol, t.time + k * 86_400_000, t.agg_id + k * 10**8, t.price, t.qty, t.buyer_maker)
                for k in range(1, 41) for t in eth]
        send(zipped(f"{name}.csv", agg_trades_csv(days)), f"{name}.zip")
        rate = poll(lambda: pane_text(page, "qp-trades-rate"), lambda t: "rows/s" in t, 120,
                    "the import's rate and ETA", wait=wait)
        assert re.fullmatch(r"[\d,]+ of [\d,]+ rows · [\d,]+ rows/s · ETA \d+ s", rate.strip()), rate
        poll(lambda: pane_text(page, "qp-trades-message"), lambda t: f"{len(days):,} new" in t, 120,
             "the long import's message", wait=wait)
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "offline-trades.png"), full_page=True)
        (ARTIFACTS / "offline-trades-server.log").write_text(server.output_tail(20_000))
        raise

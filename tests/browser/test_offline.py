"""Offline mode in a real browser: upload good OHLC CSVs (candles, pair analytics) and every kind
of bad file through the UI; each bad one shows its own message and leaves the data as it was."""

from __future__ import annotations

import pytest

from tests.offline.cases import BAD, GOOD

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

"""Exports in a real browser: the Market tab's bars and the Pair tab's series download as CSV and
Parquet, the bars CSV re-imports through the OHLC importer, and both hold what the charts show."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from quantpanel.dashboard.plots import BAR_COLUMNS, PAIR_FRAME_COLUMNS
from quantpanel.storage.ohlc import parse_ohlc_csv

from .helpers import ARTIFACTS, _sleeper, column_counts, poll, wait_for_growth, wait_for_replay_banner

pytestmark = pytest.mark.browser


def download(page, label: str, tmp_path):
    with page.expect_download(timeout=30_000) as dl:
        page.get_by_role("button", name=label, exact=True).click()
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    return path


def test_bars_and_pair_series_download_as_csv_and_parquet(panel_app, context, tmp_path) -> None:
    server = panel_app()
    page = context.new_page()
    wait = _sleeper(page)
    try:
        page.goto(server.url, timeout=90_000)
        wait_for_replay_banner(page)
        wait_for_growth(page, rows=10, timeout=60)

        def exported() -> tuple[Path, list]:
            path = download(page, "Download bars CSV", tmp_path)
            return path, parse_ohlc_csv(path.read_bytes(), name=path.name)

        # the growth above is the largest chart's; under load the other symbol's chart may lag
        # behind it for a moment: export again until both symbols have ten bars
        csv_path, series = poll(exported, lambda r: len(r[1]) == 2 and all(len(s.frame) >= 10 for s in r[1]),
                                30, "ten bars of each symbol in the bars export", wait=wait)
        assert csv_path.name == "bars-BTCUSDT-ETHUSDT-1s.csv"
        assert sorted(s.symbol for s in series) == ["BTCUSDT", "ETHUSDT"]
        assert all(s.timeframe == "1s" and len(s.frame) >= 10 for s in series)
        bars = pd.read_csv(csv_path)
        assert list(bars.columns) == ["symbol", *BAR_COLUMNS]
        pq = pd.read_parquet(download(page, "Parquet", tmp_path))
        assert list(pq.columns) == ["symbol", *BAR_COLUMNS] and len(pq) >= len(bars)

        page.get_by_text("Pair", exact=True).click()
        poll(lambda: column_counts(page, "kalman_beta"), lambda n: any(k >= 10 for k in n), 60,
             "the pair charts", wait=wait)
        path = download(page, "Download pair series CSV", tmp_path)
        assert path.name == "pair-BTCUSDT-ETHUSDT-1s-w60.csv"
        pair = pd.read_csv(path)
        assert list(pair.columns) == list(PAIR_FRAME_COLUMNS) and len(pair) >= 10
        assert all(math.isfinite(v) for v in pair["kalman_beta"])
        pq = pd.read_parquet(download(page, "Parquet", tmp_path))
        assert list(pq.columns) == list(PAIR_FRAME_COLUMNS) and len(pq) >= len(pair)
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "export.png"), full_page=True)
        (ARTIFACTS / "export-server.log").write_text(server.output_tail(20_000))
        raise

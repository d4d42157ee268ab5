"""Exports are exactly what the charts show, and a re-import gives identical numbers: bars through
quantpanel's own OHLC importer and store, the pair series through pandas; CSV and Parquet."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from quantpanel.dashboard.hub import Hub
from quantpanel.dashboard.pair_view import PairView
from quantpanel.dashboard.plots import BAR_COLUMNS, PAIR_FRAME_COLUMNS
from quantpanel.dashboard.views import Dashboard
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.ohlc import parse_ohlc_csv

from tests.test_pipeline import _config, wait_for

pytestmark = pytest.mark.timeout(120)


async def test_exported_bars_and_pair_series_reimport_identically(tmp_path):
    rt = Runtime(_config(tmp_path, source="replay"))
    hub = Hub(rt, buffer_bars=300)
    await rt.start()
    try:
        await wait_for(lambda: rt.status().ticks == 35_389, 30)
        dash = Dashboard(hub, symbols=["BTCUSDT", "ETHUSDT"], timeframe="1s")
        dash.pull()
        pair = PairView(hub, a="ETHUSDT", b="BTCUSDT", timeframe="1s", window=30)
        pair.pull()

        # bars: exactly the charts' buffers, the candle geometry left out
        bars = dash.bars_export()
        assert list(bars.columns) == ["symbol", *BAR_COLUMNS]
        for sym, view in dash._views.items():
            shown = view.buffer.data
            assert len(shown) == 300
            got = bars[bars["symbol"] == sym].reset_index(drop=True)
            pd.testing.assert_frame_equal(got[list(BAR_COLUMNS)], shown[list(BAR_COLUMNS)].reset_index(drop=True))
        csv_button, parquet_button = dash.bar_downloads
        assert csv_button.filename == "bars-BTCUSDT-ETHUSDT-1s.csv"
        data = csv_button.callback().read().encode()
        series = parse_ohlc_csv(data, name=csv_button.filename)
        assert sorted((s.symbol, s.timeframe, len(s.frame)) for s in series) == [
            ("BTCUSDT", "1s", 300), ("ETHUSDT", "1s", 300)]
        await rt.stored.store_ohlc(series)
        for s in series:
            exported = bars[bars["symbol"] == s.symbol].reset_index(drop=True)
            stored = await asyncio.to_thread(rt.stored.read_ohlc, s.symbol, "1s")
            assert (stored["time"].to_numpy() == exported["time"].to_numpy()).all()
            for col in ("open", "high", "low", "close", "volume"):
                assert np.array_equal(stored[col].to_numpy(), exported[col].to_numpy()), (s.symbol, col)
        back = pd.read_parquet(parquet_button.callback())
        pd.testing.assert_frame_equal(back, bars, check_dtype=False, check_exact=True)

        # the pair series: spread, z, correlation, OLS and Kalman betas, as charted
        shown = pair.series_export()
        assert list(shown.columns) == list(PAIR_FRAME_COLUMNS) and len(shown) == len(pair.buffer.data) > 250
        assert shown["zscore"].notna().sum() > 200 and shown["kalman_beta"].notna().all()
        csv_button, parquet_button = pair.downloads
        assert csv_button.filename == "pair-ETHUSDT-BTCUSDT-1s-w30.csv"
        back = pd.read_csv(csv_button.callback(), parse_dates=["time"])
        back["time"] = back["time"].dt.tz_localize(None).astype("datetime64[ns]")
        pd.testing.assert_frame_equal(back, shown, check_exact=True)
        pd.testing.assert_frame_equal(pd.read_parquet(parquet_button.callback()), shown, check_exact=True,
                                      check_dtype=False)
    finally:
        await rt.stop()

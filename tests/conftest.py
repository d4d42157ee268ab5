"""Shared fixtures: paths to the bundled real recordings and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantpanel.feeds.recording import Recording, load_recording, to_tick
from quantpanel.models import Tick

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "replay"
USDM_TRADES = DATA / "binance-usdm-btcusdt-ethusdt-2024-08-08.trades.gz"
CRYPTOFEED = DATA / "cryptofeed-BINANCE_FUTURES.ws.1.0"


@pytest.fixture(scope="session")
def usdm_recording() -> Recording:
    """35,389 real Binance USD-M trades of BTCUSDT and ETHUSDT (2024-08-08, 5.7 minutes)."""
    return load_recording(USDM_TRADES)


@pytest.fixture(scope="session")
def usdm_ticks(usdm_recording: Recording) -> list[Tick]:
    return [to_tick(t) for t in usdm_recording.trades]


@pytest.fixture(scope="session")
def cryptofeed_ticks() -> list[Tick]:
    """91 real aggTrades of 4 thin symbols over 30 s: many empty 1 s intervals."""
    return [to_tick(t) for t in load_recording(CRYPTOFEED).trades]


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How many times HoloViews re-rendered an element or overlay (update_frame calls): a chart
    that streams its updates as patches renders once, when drawn."""
    from holoviews.plotting.bokeh.element import ElementPlot, OverlayPlot

    calls: list[str] = []
    for cls in (ElementPlot, OverlayPlot):
        original = cls.update_frame

        def counting(self, *a, _original=original, **kw):
            calls.append(type(self).__name__)
            return _original(self, *a, **kw)
        monkeypatch.setattr(cls, "update_frame", counting)
    return calls

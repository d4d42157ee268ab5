"""15m / 1h / 4h / 1d bars (issue 13, item 4): built by the one bar builder from ticks, epoch-aligned,
and equal to resampling the shorter bars per ANALYTICS.md "Timeframes"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quantpanel.config import load_config
from quantpanel.models import TIMEFRAMES, Tick, timeframe_ms
from quantpanel.pipeline.bars import build_bars

LONG = ("5m", "15m", "1h", "4h", "1d")


def _simulated_ticks(days: float = 3.0, seed: int = 7) -> list[Tick]:
    """SIMULATED: a random walk of two symbols over ``days``, with quiet hours (empty bars)."""
    rng = np.random.default_rng(seed)
    out = []
    for sym, p0 in (("SIMAUSDT", 100.0), ("SIMBUSDT", 50.0)):
        gaps = rng.exponential(4_000, size=int(days * 86_400_000 / 4_000))
        times = (1_700_000_000_000 + np.cumsum(gaps)).astype("int64")
        times = times[(times // 3_600_000) % 24 != 3]  # no trades 03:00-04:00 UTC: empty bars
        prices = p0 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(times))))
        for i, (t, p) in enumerate(zip(times, prices, strict=True)):
            out.append(Tick(sym, int(t), i, float(round(p, 4)), float(rng.integers(1, 50)) / 10, bool(i % 3)))
    return sorted(out, key=lambda t: (t.time, t.symbol, t.agg_id))


def _resample(short: pd.DataFrame, tf: str) -> pd.DataFrame:
    """The independent oracle: ANALYTICS.md's longer bar from the shorter bars it covers."""
    g = short.groupby(short["time"] // timeframe_ms(tf) * timeframe_ms(tf))
    out = pd.DataFrame({"open": g["open"].first(), "high": g["high"].max(), "low": g["low"].min(),
                        "close": g["close"].last(), "volume": g["volume"].sum(), "trades": g["trades"].sum(),
                        "buy_volume": g["buy_volume"].sum()})
    pv = (short["vwap"] * short["volume"]).groupby(g.ngroup()).sum().to_numpy()
    out["vwap"] = np.where(out["volume"] > 0, pv / np.where(out["volume"] > 0, out["volume"], 1), out["close"])
    return out


def _frame(bars, symbol: str, tf: str) -> pd.DataFrame:
    rows = [b for b in bars if b.symbol == symbol and b.timeframe == tf]
    return pd.DataFrame([{f: getattr(b, f) for f in ("time", "open", "high", "low", "close", "volume",
                                                      "trades", "vwap", "buy_volume")} for b in rows])


@pytest.mark.parametrize("ticks_of", ["real", "simulated"])
def test_longer_bars_equal_the_resampled_shorter_bars(ticks_of, usdm_ticks):
    ticks = usdm_ticks if ticks_of == "real" else _simulated_ticks()
    bars, _ = build_bars(ticks, ["1m", *LONG], include_forming=True)
    for sym in sorted({t.symbol for t in ticks}):
        short = _frame(bars, sym, "1m")
        for tf in LONG:
            got = _frame(bars, sym, tf).set_index("time")
            assert (got.index % timeframe_ms(tf) == 0).all()  # epoch-aligned: 1d opens at 00:00 UTC
            want = _resample(short, tf)
            assert list(got.index) == list(want.index), (sym, tf)
            for col in want.columns:
                np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-9,
                                           err_msg=f"{sym} {tf} {col}")
    if ticks_of == "simulated":  # the quiet hour is there as empty bars carrying the previous close
        h = _frame(bars, "SIMAUSDT", "1h")
        quiet = h[(h["time"] // 3_600_000) % 24 == 3]
        assert len(quiet) >= 2 and (quiet["trades"] == 0).all() and (quiet["open"] == quiet["close"]).all()


def test_config_accepts_the_long_timeframes(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("timeframes: [1d, 1s, 4h, 15m, 1h]\ndashboard:\n  default_timeframe: 1h\n")
    assert load_config(p).timeframes == ("1s", "15m", "1h", "4h", "1d")
    assert list(TIMEFRAMES) == ["1s", "1m", "5m", "15m", "1h", "4h", "1d"]

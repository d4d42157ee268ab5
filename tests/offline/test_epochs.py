"""Epoch units told apart by magnitude (issue 13, item 6): a Binance spot kline dump from 2025 is
in microseconds and must not land in the far future; ambiguous or out-of-range times are refused
with line and column."""

from __future__ import annotations

import numpy as np
import pytest

from quantpanel.epochs import EpochError, epoch_to_ms, epochs_to_ms
from quantpanel.errors import ImportFileError
from quantpanel.storage.ohlc import parse_ohlc_csv

MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z


@pytest.mark.parametrize(("value", "unit"), [(MS // 1000, "s"), (MS, "ms"), (MS * 1000, "µs"),
                                             (MS * 1_000_000, "ns"), (MS * 1000 + 999, "µs")])
def test_each_unit_is_told_by_magnitude(value, unit):
    ms, got = epochs_to_ms(np.array([value, value + 1]))
    assert got == unit and ms[0] == MS
    assert epoch_to_ms(value) == MS


@pytest.mark.parametrize("value", [0, 12345, 5e10, 9e13, 3e20, -MS])
def test_a_number_that_is_no_time_in_any_unit_is_refused(value):
    with pytest.raises(EpochError, match="not an epoch time of 1990..2100"):
        epochs_to_ms(np.array([MS, value]))
    with pytest.raises(EpochError):
        epoch_to_ms(value)


def test_a_column_mixing_units_is_refused_at_the_first_odd_row():
    with pytest.raises(EpochError, match="reads as epoch s where the rows before are epoch ms") as exc:
        epochs_to_ms(np.array([MS, MS + 60_000, MS // 1000 + 120]))
    assert exc.value.index == 2


def _kline_rows(start_us: int, n: int) -> str:
    """Binance spot kline dump rows (no header, times in µs as from 2025); simulated prices."""
    out = []
    for i in range(n):
        t = start_us + i * 60_000_000
        p = 100 + i
        out.append(f"{t},{p},{p + 2},{p - 1},{p + 1},10.5,{t + 59_999_999},{10.5 * (p + 0.5)},7,4.25,400.0,0")
    return "\n".join(out) + "\n"


def test_a_headerless_spot_kline_dump_in_microseconds_lands_on_its_dates():
    [s] = parse_ohlc_csv(_kline_rows(MS * 1000, 5).encode(), name="BTCUSDT-1m-2025-01-01-simulated.csv")
    assert s.symbol == "BTCUSDT" and s.timeframe == "1m"
    assert s.frame["time"].tolist() == [MS + i * 60_000 for i in range(5)]
    row = s.frame.iloc[0]
    assert (row["trades"], row["buy_volume"]) == (7, 4.25)  # what the dump says is kept
    assert row["vwap"] == pytest.approx(100.5)  # quote volume / volume


def test_times_in_the_wrong_unit_or_range_name_line_and_column():
    head = "open_time,open,high,low,close\n"
    mixed = head + f"{MS},1,2,0.5,1\n{MS + 60_000},1,2,0.5,1\n{(MS + 120_000) // 1000},1,2,0.5,1\n"
    with pytest.raises(ImportFileError, match=r"line 4, column open_time: .* reads as epoch s where the rows "
                                              r"before are epoch ms"):
        parse_ohlc_csv(mixed.encode(), name="XRPUSDT-simulated.csv")
    far = head + f"{MS},1,2,0.5,1\n50000000000,1,2,0.5,1\n"
    with pytest.raises(ImportFileError, match=r"line 3, column open_time: 50000000000 is not an epoch time"):
        parse_ohlc_csv(far.encode(), name="XRPUSDT-simulated.csv")


def test_a_file_without_volume_stores_nan_volume_not_zero():
    text = "time,open,high,low,close\n" + "".join(f"{MS // 1000 + 60 * i},1,2,0.5,1\n" for i in range(3))
    [s] = parse_ohlc_csv(text.encode(), name="XRPUSDT-simulated.csv")
    assert s.frame["volume"].isna().all() and s.frame["trades"].isna().all()

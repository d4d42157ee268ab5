"""OHLC CSV import: real files, column and time variants, every kind of bad file (a clear message
naming line and column), and a bad file leaves the store as it was."""

from __future__ import annotations

import json
import sqlite3

import pytest

from quantpanel.errors import ImportFileError
from quantpanel.storage.ohlc import parse_ohlc_csv
from quantpanel.storage.store import Store

from tests.analytics.test_analyze_cli import qp
from tests.browser.helpers import ROOT
from tests.offline.cases import BAD, GOOD, GOOD_HEADER, rows

OHLC = ROOT / "data" / "ohlc"


def test_real_files_minute_and_daily():
    (btc,) = parse_ohlc_csv((OHLC / "BTCUSDT-bybit-1d.csv").read_bytes(), name="BTCUSDT-bybit-1d.csv")
    assert (btc.symbol, btc.timeframe, len(btc.frame)) == ("BTCUSDT", "1d", 200)
    assert btc.frame["time"].iloc[0] == 1_678_838_400_000  # 2023-03-15 UTC
    import gzip

    data = gzip.decompress((OHLC / "binanceus-BTCUSDT-1m-2023-03-01_2023-03-21.csv.gz").read_bytes())
    (m,) = parse_ohlc_csv(data, name="binanceus-BTCUSDT-1m.csv")
    assert (m.symbol, m.timeframe) == ("BTCUSDT", "1m") and m.frame["close"].iloc[0] == 23142.31


@pytest.mark.parametrize(("header", "times"), [
    ("Timestamp,O,H,L,C,Vol", ["1700000000000", "1700000060000"]),  # epoch ms, short names
    ("date,Open,High,Low,Close", ["2023-11-14T22:13:20Z", "2023-11-14 22:14:20+00:00"]),  # ISO, no volume
    ("open_time,open,high,low,close,volume", ["1700000000", "1700000060"]),  # epoch s
])
def test_column_and_time_variants(header, times):
    body = "\n".join(f"{t},1,2,0.5,1.5,3" if header.count(",") == 5 else f"{t},1,2,0.5,1.5"
                     for t in times)
    (s,) = parse_ohlc_csv(f"{header}\n{body}\n".encode(), name="x.csv", symbol="ethusdt")
    assert s.symbol == "ETHUSDT" and s.timeframe == "1m"
    assert s.frame["time"].tolist() == [1_700_000_000_000, 1_700_000_060_000]


def test_a_symbol_column_gives_one_series_per_symbol():
    text = "symbol,time,open,high,low,close\n" + "".join(
        f"{sym},{1_700_000_000 + i * 300},1,2,0.5,1\n" for i in range(3) for sym in ("AAAUSDT", "BBBUSDT"))
    got = parse_ohlc_csv(text.encode(), name="two.csv")
    assert [(s.symbol, s.timeframe, len(s.frame)) for s in got] == [("AAAUSDT", "5m", 3), ("BBBUSDT", "5m", 3)]


@pytest.mark.parametrize(("name", "data", "words"), BAD, ids=[b[0] for b in BAD])
def test_each_bad_file_is_rejected_with_its_own_message(name, data, words):
    with pytest.raises(ImportFileError) as err:
        parse_ohlc_csv(data, name=name)
    msg = str(err.value)
    assert msg.startswith(name) and all(w in msg for w in words), msg


def test_oversize_and_timeframe_mismatch():
    with pytest.raises(ImportFileError, match="more than the upload cap of 100 bytes"):
        parse_ohlc_csv(GOOD[1], name=GOOD[0], max_bytes=100)
    with pytest.raises(ImportFileError, match="--timeframe 5m, but SIMUSDT's bars are 1m apart"):
        parse_ohlc_csv(GOOD[1], name=GOOD[0], timeframe="5m")


def test_cli_import_stores_a_good_file_and_a_bad_one_changes_nothing(tmp_path):
    db = tmp_path / "q.db"
    good = tmp_path / GOOD[0]
    good.write_bytes(GOOD[1])
    r = qp("import", "--db", str(db), str(good))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["series"] == [{"symbol": "SIMUSDT", "timeframe": "1m", "bars": 30}]
    snapshot = sqlite3.connect(db).execute("SELECT * FROM ohlc_bars ORDER BY time").fetchall()
    # a file that is good for 40 rows and bad on the last overwrites nothing
    bad = tmp_path / "SIMUSDT-1m-bad-simulated.csv"
    bad.write_text(GOOD_HEADER + rows(40) + "1700002400,1,1,2,1,1\n")
    r = qp("import", "--db", str(db), str(bad))
    assert r.returncode == 2 and "line 42" in r.stderr and "high 1 < low 2" in r.stderr, r.stderr
    assert sqlite3.connect(db).execute("SELECT * FROM ohlc_bars ORDER BY time").fetchall() == snapshot
    with Store(db, readonly=True) as store:
        assert store.ohlc_series() == [("SIMUSDT", "1m", 30, 1_700_000_000_000, 1_700_001_740_000)]

"""``quantpanel import`` of data.binance.vision fundingRate and bookTicker files, run as users run it
(``python -m quantpanel import ...`` in the repository, its config.yaml, ``--db`` to a temporary
file): detected by header, stored all or nothing, idempotent, bad files named by file and line.

The fundingRate rows are simulated. The bookTicker file is the 700 real frames of
tests/data/bookticker-btcusdt-slice.txt laid out as a dump (real values, the dump's columns)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from quantpanel.config import load_config
from quantpanel.storage.store import Store

from tests.conftest import ROOT
from tests.offline.cases import zipped
from tests.test_quote_bars import SLICE, oracle, read_slice

pytestmark = pytest.mark.timeout(240)
FUNDING_HEADER = "calc_time,funding_interval_hours,last_funding_rate\n"
BOOK_HEADER = "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time\n"
F0 = 1_722_470_400_000  # 2024-08-01T00:00Z
# simulated: three 8-hourly funding rates
FUNDING_ROWS = [(F0, 8, "0.00010000"), (F0 + 28_800_000, 8, "0.00007123"), (F0 + 57_600_000, 8, "-0.00002500")]


def qp(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "QUANTPANEL_CONFIG"}
    return subprocess.run([sys.executable, "-m", "quantpanel", "import", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def ok(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return [json.loads(line) for line in proc.stdout.splitlines()]


def failed(proc: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a refused import."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("quantpanel import: error: ")
    return lines[0]


def funding_csv(rows=FUNDING_ROWS, *, header: bool = True) -> bytes:
    return ((FUNDING_HEADER if header else "") + "".join(f"{t},{h},{r}\n" for t, h, r in rows)).encode()


def book_ticker_csv() -> bytes:
    """The real slice's frames as dump rows, with the exchange's exact strings."""
    rows = []
    for line in SLICE.read_text().splitlines():
        d = json.loads(line.split(" ", 1)[1])["data"]
        rows.append(f"{d['u']},{d['b']},{d['B']},{d['a']},{d['A']},{d['T']},{d['E']}\n")
    return (BOOK_HEADER + "".join(rows)).encode()


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    out = {"funding": tmp_path / "BTCUSDT-fundingRate-2024-08.csv",
           "funding_zip": tmp_path / "ETHUSDT-fundingRate-2024-08.zip",
           "book_zip": tmp_path / "BTCUSDT-bookTicker-2024-08-08.zip"}
    out["funding"].write_bytes(funding_csv())
    out["funding_zip"].write_bytes(zipped("ETHUSDT-fundingRate-2024-08.csv", funding_csv(FUNDING_ROWS[:2])))
    out["book_zip"].write_bytes(zipped("BTCUSDT-bookTicker-2024-08-08.csv", book_ticker_csv()))
    return out


def test_funding_rate_files_plain_and_zipped_become_funding_events_once(tmp_path, files):
    db = str(tmp_path / "q.db")
    first = ok(qp("--db", db, str(files["funding"]), str(files["funding_zip"])))
    assert first == [
        {"file": str(files["funding"]), "kind": "funding_rate", "read": 3, "symbols": ["BTCUSDT"],
         "funding_events": 3, "already_stored": 0},
        {"file": str(files["funding_zip"]), "kind": "funding_rate", "read": 2, "symbols": ["ETHUSDT"],
         "funding_events": 2, "already_stored": 0},
    ]
    with Store(db, readonly=True) as s:
        got = s.read_funding("BTCUSDT")
        assert [(e.time, e.rate) for e in got] == [(t, float(r)) for t, _, r in FUNDING_ROWS]
        assert all(math.isnan(e.mark) for e in got)  # the file has no mark
        assert s.max_funding_time("ETHUSDT") == F0 + 28_800_000 and s.tick_count() == 0
    again = ok(qp("--db", db, str(files["funding"])))
    assert (again[0]["funding_events"], again[0]["already_stored"]) == (0, 3)
    with Store(db, readonly=True) as s:
        assert s.market_counts()["funding"] == 5


def test_a_book_ticker_zip_stores_its_quotes_and_quote_bars_of_every_configured_timeframe(tmp_path, files):
    db = str(tmp_path / "q.db")
    timeframes = list(load_config(ROOT / "config.yaml").timeframes)
    quotes = read_slice()
    want = {tf: oracle(quotes, tf) for tf in timeframes}
    (res,) = ok(qp("--db", db, str(files["book_zip"])))
    n_bars = sum(len(f) for f in want.values())
    assert res == {"file": str(files["book_zip"]), "kind": "book_ticker", "read": 700, "symbols": ["BTCUSDT"],
                   "quotes": 700, "already_stored": 0, "quote_bars": n_bars, "timeframes": timeframes,
                   "quotes_out_of_order": 0}
    with Store(db, readonly=True) as s:
        assert s.read_quotes("BTCUSDT") == quotes  # the real values, exactly
        for tf, frame in want.items():
            bars = s.read_quote_bars("BTCUSDT", tf)
            assert [b.time for b in bars] == frame["bar"].tolist()  # the last bar closed too: history
            assert [(b.bid, b.ask, b.updates) for b in bars] == list(
                zip(frame["bid"], frame["ask"], frame["updates"], strict=True))
            assert [b.max_spread_bps for b in bars] == pytest.approx(frame["max"].tolist(), rel=1e-12)
        assert s.market_counts() == {"quotes": 700, "quote_bars": n_bars, "marks": 0, "funding": 0,
                                     "liquidations": 0, "open_interest": 0}
    # the same file again: nothing new, nothing doubled; its bars are rewritten as they were
    (again,) = ok(qp("--db", db, str(files["book_zip"])))
    assert (again["quotes"], again["already_stored"], again["quote_bars"]) == (0, 700, n_bars)
    with Store(db, readonly=True) as s:
        assert s.market_counts()["quotes"] == 700 and s.market_counts()["quote_bars"] == n_bars


def test_symbol_option_names_a_file_whose_name_does_not(tmp_path):
    db, f = str(tmp_path / "q.db"), tmp_path / "funding-simulated.csv"
    f.write_bytes(funding_csv())
    assert "cannot tell the symbol from the file name" in failed(qp("--db", db, str(f)))
    (res,) = ok(qp("--db", db, "--symbol", "solusdt", str(f)))
    assert (res["symbols"], res["funding_events"]) == (["SOLUSDT"], 3)


def _broken_book(lines: list[str], lineno: int, col: int, value: str) -> str:
    cells = lines[lineno - 1].split(",")
    cells[col] = value
    lines[lineno - 1] = ",".join(cells)
    return "".join(lines)


@pytest.mark.parametrize(("name", "make", "words"), [
    ("BTCUSDT-bookTicker-2024-08-08.csv",
     lambda: _broken_book(book_ticker_csv().decode().splitlines(keepends=True), 502, 1, "abc"),
     r"BTCUSDT-bookTicker-2024-08-08.csv:502: column 'best_bid_price' has a bad value 'abc'"),
    ("BTCUSDT-bookTicker-2024-08-08.csv",
     lambda: _broken_book(book_ticker_csv().decode().splitlines(keepends=True), 650, 5, "99"),
     r"BTCUSDT-bookTicker-2024-08-08.csv:650: column 'transaction_time' has a bad value '99': .*1990..2100"),
    ("BTCUSDT-fundingRate-2024-09.csv", lambda: (FUNDING_HEADER + f"{F0},8,0.0001\n{F0 + 1},8\n"),
     r"BTCUSDT-fundingRate-2024-09.csv:3: expected 3 columns calc_time,funding_interval_hours,last_funding_rate, got 2"),
    ("BTCUSDT-fundingRate-2024-09.csv", lambda: funding_csv(header=False).decode().replace("0.00007123", "nan"),
     r"BTCUSDT-fundingRate-2024-09.csv:2: column 'last_funding_rate' has a bad value 'nan'"),
    ("BTCUSDT-fundingRate-2024-09.csv", lambda: FUNDING_HEADER,
     r"BTCUSDT-fundingRate-2024-09.csv: holds no funding rates: no data rows"),
    ("BTCUSDT-bookTicker-2024-08-09.csv", lambda: "",
     r"BTCUSDT-bookTicker-2024-08-09.csv: holds no quotes: the file is empty"),
])
def test_a_broken_file_is_one_line_naming_file_and_line_exit_2_and_the_store_is_untouched(
        tmp_path, files, name, make, words):
    db = str(tmp_path / "q.db")
    ok(qp("--db", db, str(files["funding"])))  # something stored before, which must stay as it is
    with Store(db, readonly=True) as s:
        before = (s.market_counts(), s.read_funding("BTCUSDT")[0])
    bad = tmp_path / name
    bad.write_text(make())
    line = failed(qp("--db", db, str(bad)))
    assert re.search(words, line), line
    with Store(db, readonly=True) as s:
        assert (s.market_counts(), s.read_funding("BTCUSDT")[0]) == before


def test_a_header_less_dump_is_told_by_its_name(tmp_path):
    db, f = str(tmp_path / "q.db"), tmp_path / "BTCUSDT-fundingRate-2024-08.zip"
    f.write_bytes(zipped("BTCUSDT-fundingRate-2024-08.csv", funding_csv(header=False)))
    (res,) = ok(qp("--db", db, str(f)))
    assert (res["kind"], res["funding_events"]) == ("funding_rate", 3)

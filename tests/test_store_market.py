"""The futures-native tables (schema 3): round trips, idempotent keys, the funding mark fill, the
watchlist across restarts, migration from v1 and v2 files, and the writer's per-kind isolation.
Every row here is simulated (made-up values), except where a real bookTicker slice is read."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

import pytest

from quantpanel.errors import ImportFileError, StoreError
from quantpanel.models import Bar, FundingEvent, Liquidation, MarkPrice, OpenInterest, Quote, QuoteBar
from quantpanel.storage.market import MARKET_TABLES
from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

from tests.test_quote_bars import read_slice

T0 = 1_723_161_600_000  # 2024-08-09T00:00Z
# simulated rows of each kind
MARKS = [MarkPrice("BTCUSDT", T0 + i * 1000, 61_000.0 + i, 61_001.0 + i, 0.0, 0.0001, T0 + 28_800_000)
         for i in range(5)]
FUNDING = [FundingEvent("BTCUSDT", T0, 0.0001, math.nan), FundingEvent("BTCUSDT", T0 + 28_800_000, -0.0002, 60_500.0)]
LIQS = [Liquidation("BTCUSDT", T0 + 5, "SELL", 0.5, 60_000.0, 60_010.0, "FILLED", 0.5, 0.5),
        Liquidation("BTCUSDT", T0 + 5, "BUY", 0.5, 60_000.0, 60_010.0, "FILLED", 0.5, 0.5),
        Liquidation("ETHUSDT", T0 + 7, "SELL", 2.0, 3_000.0, 2_999.0, "FILLED", 1.0, 2.0)]
OI = [OpenInterest("BTCUSDT", T0 + i * 300_000, 80_000.0 + i) for i in range(3)]
QBARS = [QuoteBar("BTCUSDT", "1s", T0 + i * 1000, 61_000.0, 61_000.1, 0.02, 0.05, 10 + i) for i in range(3)]
QUOTES = [Quote("BTCUSDT", T0 + i, 100 + i, 61_000.0, 1.0, 61_000.1 + i, 2.0) for i in range(4)]


def test_every_kind_round_trips_and_a_second_insert_adds_nothing(tmp_path):
    with Store(tmp_path / "q.db") as s:
        for insert, rows in ((s.insert_quotes, QUOTES), (s.insert_marks, MARKS), (s.insert_liquidations, LIQS),
                             (s.insert_open_interest, OI)):
            assert insert(rows) == len(rows) and insert(rows) == 0
        assert s.upsert_quote_bars(QBARS) == 3
        assert s.read_quotes("BTCUSDT") == QUOTES and s.read_marks("BTCUSDT") == MARKS
        assert s.read_liquidations("BTCUSDT") == sorted(LIQS[:2], key=lambda x: x.side)
        assert s.read_liquidations("ETHUSDT")[0].notional == 2_999.0 * 2.0
        assert s.read_open_interest("BTCUSDT") == OI and s.read_quote_bars("BTCUSDT", "1s") == QBARS
        assert s.read_quote_bars("BTCUSDT", "1m") == [] and s.read_marks("ETHUSDT") == []
        # start <= time < end, like the tick and bar reads
        assert s.read_marks("BTCUSDT", T0 + 1000, T0 + 3000) == MARKS[1:3]
        assert s.read_quotes("BTCUSDT", start=T0 + 2) == QUOTES[2:] and s.read_quotes("BTCUSDT", end=T0 + 1) == QUOTES[:1]
        assert s.read_quote_bars("BTCUSDT", "1s", T0 + 1000) == QBARS[1:]
        assert s.read_open_interest("BTCUSDT", end=T0 + 300_000) == OI[:1]
        assert s.market_counts() == {"quotes": 4, "quote_bars": 3, "marks": 5, "funding": 0, "liquidations": 3,
                                     "open_interest": 3}
        assert tuple(s.market_counts()) == MARKET_TABLES


def test_a_later_quote_bar_replaces_the_stored_one(tmp_path):
    with Store(tmp_path / "q.db") as s:
        s.upsert_quote_bars(QBARS)
        newer = QuoteBar("BTCUSDT", "1s", T0, 61_001.0, 61_001.2, 0.03, 0.07, 99)
        assert s.upsert_quote_bars([newer]) == 1
        assert s.read_quote_bars("BTCUSDT", "1s") == [newer, *QBARS[1:]]


def test_funding_stores_nan_as_null_fills_a_null_mark_and_is_otherwise_idempotent(tmp_path):
    with Store(tmp_path / "q.db") as s:
        assert s.max_funding_time("BTCUSDT") == 0
        assert s.insert_funding(FUNDING) == 2
        assert s._db.execute("SELECT mark FROM funding WHERE time = ?", (T0,)).fetchone() == (None,)
        got = s.read_funding("BTCUSDT")
        assert math.isnan(got[0].mark) and got[1] == FUNDING[1]
        assert s.insert_funding(FUNDING) == 0  # the same again: nothing
        # a later event that knows the mark fills it; the rate stays as first stored
        assert s.insert_funding([FundingEvent("BTCUSDT", T0, 0.0009, 61_234.5)]) == 1
        assert s.read_funding("BTCUSDT")[0] == FundingEvent("BTCUSDT", T0, 0.0001, 61_234.5)
        # a known mark is never overwritten, nor turned unknown
        assert s.insert_funding([FundingEvent("BTCUSDT", T0, 0.0001, 1.0), FundingEvent("BTCUSDT", T0, 0.0001, math.nan)]) == 0
        assert s.read_funding("BTCUSDT")[0].mark == 61_234.5
        assert s.max_funding_time("BTCUSDT") == T0 + 28_800_000 and s.max_funding_time("ETHUSDT") == 0
        assert s.read_funding("BTCUSDT", start=T0 + 1) == FUNDING[1:]


def test_the_watchlist_keeps_order_and_survives_a_restart(tmp_path):
    db = tmp_path / "q.db"
    with Store(db) as s:
        for sym in ("SOLUSDT", "ADAUSDT", "SOLUSDT", "XRPUSDT"):
            s.add_watch(sym)
        s.remove_watch("ADAUSDT")
        s.remove_watch("NOTWATCHED")
    with Store(db, readonly=True) as s:
        assert s.watchlist() == ["SOLUSDT", "XRPUSDT"]
    with Store(db) as s:
        s.add_watch("ADAUSDT")
        assert s.watchlist() == ["SOLUSDT", "XRPUSDT", "ADAUSDT"]


def test_quote_history_is_one_transaction_a_bad_row_stores_neither_quotes_nor_bars(tmp_path):
    real = read_slice()
    with Store(tmp_path / "q.db") as s:
        def bad():
            yield from real[:300]
            raise ImportFileError("x.csv:301: column 'best_bid_price' has a bad value 'abc'")

        with pytest.raises(ImportFileError, match="x.csv:301"):
            s.store_quote_history(bad(), lambda: QBARS)
        assert s.market_counts()["quotes"] == 0 and s.market_counts()["quote_bars"] == 0
        assert s.store_quote_history(iter(real), lambda: QBARS) == (700, 3)
        assert s.store_quote_history(iter(real), lambda: QBARS) == (0, 3)  # the bars are rewritten
        assert s.read_quotes("BTCUSDT") == sorted(real, key=lambda q: (q.time, q.update_id))


def test_a_refused_write_is_a_store_error_naming_the_file(tmp_path):
    with Store(tmp_path / "q.db") as s:
        s._db.execute("PRAGMA query_only = ON")
        for write, rows in ((s.insert_marks, MARKS), (s.insert_funding, FUNDING), (s.upsert_quote_bars, QBARS)):
            with pytest.raises(StoreError, match=r"q.db: write failed, nothing of this batch stored: .*readonly"):
                write(rows)
        with pytest.raises(StoreError, match="readonly"):
            s.add_watch("SOLUSDT")


# -- migration ----------------------------------------------------------------------------------------
_V1 = """
CREATE TABLE ticks (symbol TEXT NOT NULL, agg_id INTEGER NOT NULL, time INTEGER NOT NULL, price REAL NOT NULL,
    qty REAL NOT NULL, buyer_maker INTEGER NOT NULL, PRIMARY KEY (symbol, agg_id)) WITHOUT ROWID;
CREATE TABLE bars (symbol TEXT NOT NULL, timeframe TEXT NOT NULL, time INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
    trades INTEGER NOT NULL, vwap REAL NOT NULL, buy_volume REAL NOT NULL,
    PRIMARY KEY (symbol, timeframe, time)) WITHOUT ROWID;
CREATE TABLE ohlc_bars (symbol TEXT NOT NULL, timeframe TEXT NOT NULL, time INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
    PRIMARY KEY (symbol, timeframe, time)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO ticks VALUES ('BTCUSDT', 7, 1723161600000, 61000.0, 0.5, 1);
INSERT INTO bars VALUES ('BTCUSDT', '1s', 1723161600000, 1, 2, 0.5, 1.5, 3, 4, 1.2, 1);
INSERT INTO ohlc_bars VALUES ('BTCUSDT', '1d', 1723161600000, 1, 2, 0.5, 1.5, 3);
"""  # the version-1 layout, as storage/store.py's 1 -> 2 migration reads it (simulated rows)


def _v2(db: Path) -> None:
    """A version-2 file: today's file without the market tables, stamped 2."""
    Store(db).close()
    con = sqlite3.connect(db)
    con.executescript("".join(f"DROP TABLE {t};" for t in (*MARKET_TABLES, "watchlist"))
                      + "UPDATE meta SET value = '2' WHERE key = 'schema_version';")
    con.execute("INSERT INTO ticks VALUES ('BTCUSDT', 7, 1723161600000, 61000.0, 0.5, 1)")
    con.commit()
    con.close()


def _version(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return str(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        con.close()


@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize("old", ["v1", "v2"])
def test_older_files_gain_the_market_tables_in_place_and_keep_their_rows(tmp_path, old, readonly):
    db = tmp_path / "old.db"
    if old == "v1":
        con = sqlite3.connect(db)
        con.executescript(_V1)
        con.close()
    else:
        _v2(db)
    with Store(db, readonly=readonly) as s:
        assert s.market_counts() == dict.fromkeys(MARKET_TABLES, 0) and s.watchlist() == []
        assert s.read_ticks("BTCUSDT")[0].agg_id == 7
        if old == "v1":
            assert s.read_bars("BTCUSDT", "1s") == [Bar("BTCUSDT", "1s", T0, 1, 2, 0.5, 1.5, 3, 4, 1.2, 1)]
            assert math.isnan(s.read_ohlc("BTCUSDT", "1d")[0].trades)
    assert _version(db) == "3"
    with Store(db) as s:  # opening a current file again changes nothing
        assert s.insert_marks(MARKS) == 5
    assert _version(db) == "3"


# -- the writer thread -------------------------------------------------------------------------------
def _all(w: StoreWriter) -> None:
    w.put_quotes(QUOTES)
    w.put_quote_bars(QBARS)
    w.put_marks(MARKS)
    w.put_funding(FUNDING)
    w.put_liquidations(LIQS)
    w.put_open_interest(OI)


def test_writer_writes_every_kind_and_counts_it(tmp_path):
    w = StoreWriter(tmp_path / "q.db")
    _all(w)
    _all(w)  # re-delivered: ignored (quote bars rewritten)
    w.put_marks([])  # nothing to do
    w.flush(timeout=10)
    w.close()
    st = w.stats
    assert (st.quotes_written, st.quote_bars_written, st.marks_written, st.funding_written,
            st.liquidations_written, st.open_interest_written) == (4, 6, 5, 2, 3, 3)
    assert st.errors == 0 and st.market_retained == 0
    with Store(tmp_path / "q.db") as s:
        assert s.market_counts() == {"quotes": 4, "quote_bars": 3, "marks": 5, "funding": 2, "liquidations": 3,
                                     "open_interest": 3}


def test_writer_a_failing_kind_costs_no_other_and_its_rows_are_retried(tmp_path, usdm_ticks):
    db = tmp_path / "q.db"
    w = StoreWriter(db, retry_s=0.1)
    w.flush(timeout=10)  # the writer's thread has opened its store (CREATE IF NOT EXISTS) before the drop
    con = sqlite3.connect(db)
    con.execute("DROP TABLE marks")  # marks cannot be written until the table is back
    con.commit()
    _all(w)
    w.put_ticks(usdm_ticks[:100])
    w.put_bars([Bar("X", "1s", 0, 1, 1, 1, 1, 1, 1, 1, 0)])
    w.flush(timeout=10)
    assert "no such table: marks" in w.stats.last_error and w.stats.market_retained == 5
    assert (w.stats.marks_written, w.stats.quotes_written, w.stats.funding_written, w.stats.ticks_written,
            w.stats.bars_written) == (0, 4, 2, 100, 1)
    more = [m._replace(time=m.time + 60_000) for m in MARKS[:2]]
    w.put_marks(more)  # queued behind the retained ones
    w.flush(timeout=10)
    assert w.stats.market_retained == 7
    Store(db).close()  # the schema is back (CREATE IF NOT EXISTS)
    deadline = time.monotonic() + 10
    while w.stats.market_retained and time.monotonic() < deadline:
        time.sleep(0.05)
    w.flush(timeout=10)
    w.close()
    assert w.stats.marks_written == 7 and w.stats.market_retained == 0
    with Store(db) as s:
        assert s.read_marks("BTCUSDT") == MARKS + more
    con.close()

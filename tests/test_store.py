"""The SQLite store, file import and the history read path (cache + tail rebuilt from ticks)."""

from __future__ import annotations

import gzip
import sqlite3
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from quantpanel.errors import ImportFileError, StoreError
from quantpanel.models import Bar, Tick
from quantpanel.pipeline.bars import build_bars
from quantpanel.pipeline.history import load_bars, rebuild_bars, warm_start
from quantpanel.storage.importer import import_file
from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

from tests.conftest import CRYPTOFEED, USDM_TRADES

CSV_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"


def test_wal_mode_and_idempotent_inserts(tmp_path, usdm_ticks):
    with Store(tmp_path / "q.db") as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.insert_ticks(usdm_ticks[:1000]) == 1000
        assert store.insert_ticks(usdm_ticks[500:1500]) == 500  # the overlap is ignored
        assert store.tick_count() == 1500
        btc = [t for t in usdm_ticks[:1500] if t.symbol == "BTCUSDT"]
        assert store.read_ticks("BTCUSDT") == sorted(btc, key=lambda t: (t.time, t.agg_id))
        lo, hi = btc[100].time, btc[200].time
        assert store.read_ticks("BTCUSDT", lo, hi) == [t for t in btc if lo <= t.time < hi]
        assert store.max_agg_id("BTCUSDT") == max(t.agg_id for t in btc)
        assert store.symbols() == ["BTCUSDT", "ETHUSDT"]


def test_sides_are_stored_as_their_codes_in_any_statement_size(tmp_path):
    """A side binds as its code (0 taker buy, 1 taker sell, 2 unknown), in the multi-row
    statements and one by one, and reads back as the side it was."""
    sides = (False, True, None)
    ticks = [Tick("BTCUSDT", 1_000 + i, i, 100.0 + i, 1.0, sides[i % 3]) for i in range(4096 + 64 + 3)]
    with Store(tmp_path / "q.db") as store:
        assert store.insert_ticks(ticks) == len(ticks)
        assert store.insert_ticks([ticks[0]._replace(agg_id=-1), ticks[1]._replace(agg_id=-2)]) == 2
        # numpy sides (a column's values) bind as the same codes, not as numpy bytes
        assert store.insert_ticks([ticks[0]._replace(agg_id=-3, buyer_maker=np.False_),
                                   ticks[1]._replace(agg_id=-4, buyer_maker=np.True_)]) == 2
        codes = store._db.execute("SELECT agg_id, buyer_maker FROM ticks WHERE symbol = 'BTCUSDT'").fetchall()
        assert dict(codes) == {**{i: i % 3 for i in range(len(ticks))}, -1: 0, -2: 1, -3: 0, -4: 1}
        assert [t for t in store.read_ticks("BTCUSDT") if t.agg_id >= 0] == ticks


def test_forming_bars_are_never_cached(tmp_path):
    with Store(tmp_path / "q.db") as store, pytest.raises(ValueError, match="forming bar"):
        store.upsert_bars([Bar("X", "1s", 0, 1, 1, 1, 1, 1, 1, 1, 0, closed=False)])


def test_unwritable_location_is_a_clear_store_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=r"file/q.db: cannot open database"):
        Store(tmp_path / "file" / "q.db")


def test_writer_thread_stores_everything_and_counts_duplicates(tmp_path, usdm_ticks):
    w = StoreWriter(tmp_path / "q.db")
    for i in range(0, len(usdm_ticks), 700):
        w.put_ticks(usdm_ticks[i:i + 700])
    w.put_ticks(usdm_ticks[:100])  # re-delivered
    w.flush(timeout=30)
    w.close()
    assert w.stats.ticks_written == len(usdm_ticks)
    assert w.stats.ticks_ignored == 100
    with Store(tmp_path / "q.db") as store:
        assert store.tick_ids() == {(t.symbol, t.agg_id) for t in usdm_ticks}


def test_writer_survives_a_failing_write_and_reports_it(tmp_path, usdm_ticks):
    db = tmp_path / "q.db"
    w = StoreWriter(db)
    w.put_ticks(usdm_ticks[:10])
    w.flush(timeout=10)
    con = sqlite3.connect(db)
    con.execute("DROP TABLE ticks")  # the next tick batch cannot be written
    con.commit()
    w.put_ticks(usdm_ticks[10:20])
    w.put_bars([Bar("X", "1s", 0, 1, 1, 1, 1, 1, 1, 1, 0)])
    w.flush(timeout=10)
    w.close()
    assert w.stats.errors >= 1
    assert "q.db: write failed, nothing of this batch stored: no such table: ticks" in w.stats.last_error
    assert w.stats.bars_written == 1  # the writer kept going
    assert con.execute("SELECT COUNT(*) FROM bars").fetchone()[0] == 1


@pytest.mark.parametrize(("pragma", "words"), [
    ("max_page_count = {pages}", "database or disk is full"),  # a full disk, as SQLite reports it
    ("query_only = ON", "readonly database"),  # a read-only file (root ignores chmod here)
])
def test_writer_keeps_rows_while_the_disk_is_full_or_read_only_and_writes_them_after(tmp_path, usdm_ticks, pragma, words):
    import time as _time

    db = tmp_path / "q.db"
    w = StoreWriter(db, retry_s=0.1)
    w.put_ticks(usdm_ticks[:1000])
    w.flush(timeout=10)
    pages = w.call(lambda store: store._db.execute("PRAGMA page_count").fetchone()[0]).result(10)
    w.call(lambda store: store._db.execute(f"PRAGMA {pragma.format(pages=pages)}")).result(10)
    w.put_ticks(usdm_ticks[1000:30_000])
    w.flush(timeout=10)
    assert w.stats.errors >= 1 and words in w.stats.last_error and str(db) in w.stats.last_error
    assert w.stats.ticks_retained == 29_000 and w.stats.ticks_dropped == 0
    w.put_ticks(usdm_ticks[30_000:])  # ingest goes on meanwhile
    undo = "max_page_count = 2147483646" if "max_page_count" in pragma else "query_only = OFF"
    w.call(lambda store: store._db.execute(f"PRAGMA {undo}")).result(10)  # the disk was cleared
    deadline = _time.monotonic() + 10
    while w.stats.ticks_retained and _time.monotonic() < deadline:
        _time.sleep(0.05)
    w.flush(timeout=10)
    w.close()
    with Store(db) as store:
        assert store.tick_ids() == {(t.symbol, t.agg_id) for t in usdm_ticks}  # nothing lost


# -- import -------------------------------------------------------------------------------------
def _csv_rows(ticks: list[Tick]) -> str:
    return "".join(
        f"{t.agg_id},{t.price},{t.qty},{t.agg_id},{t.agg_id},{t.time},{'true' if t.buyer_maker else 'false'}\n"
        for t in ticks)


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("zipped", [True, False])
def test_import_agg_trades_csv_with_or_without_header_zipped_or_not(tmp_path, usdm_ticks, header, zipped):
    btc = [t for t in usdm_ticks if t.symbol == "BTCUSDT"][:2000]
    text = (CSV_HEADER if header else "") + _csv_rows(btc)
    name = "BTCUSDT-aggTrades-2024-08-08.csv"
    path = tmp_path / name
    path.write_text(text)
    if zipped:
        zpath = tmp_path / "BTCUSDT-aggTrades-2024-08-08.zip"
        with zipfile.ZipFile(zpath, "w") as zf:
            zf.write(path, name)
        path = zpath
    with Store(tmp_path / "q.db") as store:
        res = import_file(store, path)
        assert (res.read, res.stored, res.symbols) == (2000, 2000, {"BTCUSDT"})
        assert store.read_ticks("BTCUSDT") == btc
        assert import_file(store, path).stored == 0  # idempotent


def test_bad_csv_row_names_line_and_column_and_stores_nothing_of_the_file(tmp_path, usdm_ticks):
    btc = [t for t in usdm_ticks if t.symbol == "BTCUSDT"][:100]
    rows = _csv_rows(btc).splitlines(keepends=True)
    rows[56] = rows[56].replace(str(btc[56].price), "12x.5")
    path = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv"
    path.write_text(CSV_HEADER + "".join(rows))
    with Store(tmp_path / "q.db") as store:
        store.insert_ticks(usdm_ticks[-5:])  # already stored: must survive
        with pytest.raises(ImportFileError, match=r"aggTrades-2024-08-08.csv:58: column 'price'"):
            import_file(store, path)
        assert store.tick_count() == 5


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("1,2,3\n", r":1: expected 7 columns"),
        ("1,100.0,1.0,1,1,1723161256322,maybe\n", r":1: column 'is_buyer_maker'"),
        ("1,100.0,1.0,1,1,yesterday,true\n", r":1: column 'transact_time'"),
        ("1,100.0,1.0,1,1,1723161256,true\n", None),  # epoch seconds: read as such (futures dumps: ms)
        ("1,100.0,1.0,1,1,50000000000,true\n", r":1: column 'transact_time'"),  # no time in any unit
    ],
)
def test_other_bad_csv_rows(tmp_path, content, match):
    path = tmp_path / "ETHUSDT-aggTrades-2024-08-08.csv"
    path.write_text(content)
    with Store(tmp_path / "q.db") as store:
        if match is None:
            assert [t.time for t in store.read_ticks("ETHUSDT")] == [] and import_file(store, path).stored == 1
            assert [t.time for t in store.read_ticks("ETHUSDT")] == [1723161256000]
            return
        with pytest.raises(ImportFileError, match=match):
            import_file(store, path)


def test_csv_symbol_must_be_known(tmp_path):
    path = tmp_path / "trades.csv"
    path.write_text(_csv_rows([Tick("X", 1_723_161_256_322, 1, 1.0, 1.0, True)]))
    with Store(tmp_path / "q.db") as store:
        with pytest.raises(ImportFileError, match="cannot tell the symbol"):
            import_file(store, path)
        assert import_file(store, path, symbol="SOLUSDT").symbols == {"SOLUSDT"}


def test_import_ws_captures_counts_other_events_and_torn_lines(tmp_path, usdm_ticks, cryptofeed_ticks):
    with Store(tmp_path / "q.db") as store:
        res = import_file(store, CRYPTOFEED)
        assert res.stored == 91
        assert res.skipped == {"no_frame": 1, "bookTicker": 613, "depthUpdate": 764, "kline": 67}
        res = import_file(store, USDM_TRADES)
        assert res.stored == len(usdm_ticks)
        # a capture whose last line was torn by a crash still imports the rest
        torn = tmp_path / "torn.jsonl.gz"
        with gzip.open(USDM_TRADES, "rt") as src, gzip.open(torn, "wt") as dst:
            lines = [next(src) for _ in range(10)]
            dst.writelines(lines)
            dst.write(lines[-1][:40])
        res = import_file(store, torn)
        assert (res.read, res.skipped) == (10, {"malformed": 1})


def test_import_of_a_missing_or_corrupt_file_is_named(tmp_path):
    bad = tmp_path / "x.jsonl.gz"
    bad.write_bytes(b"not gzip at all")
    with Store(tmp_path / "q.db") as store:
        with pytest.raises(ImportFileError, match=r"x.jsonl.gz: cannot read capture"):
            import_file(store, bad)
        with pytest.raises(ImportFileError, match=r"nope.csv: cannot read aggTrades CSV"):
            import_file(store, tmp_path / "BTCUSDT-aggTrades-nope.csv")


# -- history ------------------------------------------------------------------------------------
def test_load_bars_equals_builder_whether_bars_are_cached_or_not(tmp_path, usdm_ticks):
    expected, _ = build_bars(usdm_ticks, ["1s", "1m"])
    # the recording's last tick is 2024: by the stored-history rule its last bars are closed now
    expected = [replace(b, closed=True) for b in expected]
    then = usdm_ticks[-1].time + 100  # a query made while the last bar could still grow
    with Store(tmp_path / "q.db") as store:
        store.insert_ticks(usdm_ticks)
        # nothing cached: everything is rebuilt from ticks
        assert load_bars(store, "ETHUSDT", "1m") == [b for b in expected if (b.symbol, b.timeframe) == ("ETHUSDT", "1m")]
        assert load_bars(store, "ETHUSDT", "1m", now_ms=then)[-1].closed is False
        # fully cached (after an import), then a crash lost the newest cached bars
        rebuild_bars(store, "ETHUSDT", ["1s", "1m"])
        store._db.execute("DELETE FROM bars WHERE symbol='ETHUSDT' AND timeframe='1s' AND time > ?",
                          (usdm_ticks[len(usdm_ticks) // 2].time,))
        store._db.commit()
        want = [b for b in expected if (b.symbol, b.timeframe) == ("ETHUSDT", "1s")]
        assert load_bars(store, "ETHUSDT", "1s") == want
        assert load_bars(store, "ETHUSDT", "1s", last=10) == want[-10:]
        lo, hi = want[20].time, want[40].time
        assert load_bars(store, "ETHUSDT", "1s", lo, hi) == want[20:40]
        assert load_bars(store, "ETHUSDT", "1s", include_forming=False)[-1] == want[-1]
        assert load_bars(store, "ETHUSDT", "1s", include_forming=False, now_ms=then)[-1] == want[-2]


def test_warm_start_continues_exactly_where_the_last_run_stopped(tmp_path, usdm_ticks):
    cut = len(usdm_ticks) // 3
    full, _ = build_bars(usdm_ticks, ["1s", "1m", "5m"])
    first, _ = build_bars(usdm_ticks[:cut], ["1s", "1m", "5m"], include_forming=False)
    with Store(tmp_path / "q.db") as store:
        store.insert_ticks(usdm_ticks[:cut])
        store.upsert_bars(first[: len(first) // 2])  # the cache lags the ticks (a crash)
        warm = warm_start(store, ["BTCUSDT", "ETHUSDT"], ["1s", "1m", "5m"], bars=50, grace_ms=250)
    rest, _ = build_bars(usdm_ticks[cut - 50:], ["1s", "1m", "5m"], state=warm.state)  # overlap: duplicates
    key = lambda b: (b.symbol, b.timeframe, b.time)  # noqa: E731
    got = {key(b): b for b in [*first[: len(first) // 2], *warm.recovered, *rest]}
    assert sorted(got.values(), key=key) == sorted(full, key=key)
    assert warm.history[("BTCUSDT", "1s")][-1].closed is False
    assert len(warm.history[("BTCUSDT", "1s")]) == 50

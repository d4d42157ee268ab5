"""The Parquet archive of old ticks: exported per symbol-day, verified, then deleted from SQLite in
one transaction, and read back by the store's tick readers (so ``bars``/``analyze``) as if stored."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import astuple

import pyarrow.parquet as pq
import pytest

from quantpanel.config import load_config
from quantpanel.errors import ConfigError, StoreError
from quantpanel.models import Bar, Tick
from quantpanel.pipeline.history import load_bars, rebuild_bars
from quantpanel.pipeline.import_bars import ImportBars
from quantpanel.storage import archive
from quantpanel.storage.importer import import_file
from quantpanel.storage.store import Store

from tests.conftest import ROOT, USDM_TRADES
from tests.test_store import CSV_HEADER

DAY = archive.DAY_MS
AUG8 = 1723075200000  # 2024-08-08 00:00 UTC: the recording is 23:54 on the 8th to 00:00:00.029 on the 9th
NOW = AUG8 + 2 * DAY + 3_600_000  # 2024-08-10 01:00: with one day kept, the 8th goes and the 9th stays
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
# times either side of the archived day, inside it, on the tick of the 9th and past everything
PROBES = (AUG8, AUG8 + 1, AUG8 + 2_500, AUG8 + DAY - 300_000, AUG8 + DAY - 1, AUG8 + DAY, AUG8 + DAY + 10,
          AUG8 + 2 * DAY)
# a collector without sides or ids: unknown side (stored as 2) and synthetic negative keys
UNKNOWN = [Tick("SOLUSDT", AUG8 + 1000 * k, -10 - k, 150.0 + k, 0.5, None if k % 2 else bool(k % 4))
           for k in range(6)]


def _store(path) -> Store:
    store = Store(path)
    import_file(store, USDM_TRADES)
    store.insert_ticks(UNKNOWN)
    for s in SYMBOLS:
        rebuild_bars(store, s, ["1s", "1m"])  # cached; 5m and 15m are rebuilt from ticks on read
    return store


def _rows(bars: list[Bar]) -> list[tuple[object, ...]]:
    """Bars as tuples whose NaN (unknown buy volume) compares equal."""
    return [tuple(None if v != v else v for v in astuple(b)) for b in bars]


def _snapshot(store: Store) -> dict[str, object]:
    """Everything the tick readers and the bar reader say."""
    snap: dict[str, object] = {"count": store.tick_count(), "spans": store.tick_spans(),
                               "symbols": store.symbols(), "ids": store.tick_ids()}
    for s in SYMBOLS:
        snap[s] = (store.read_ticks(s), store.tick_count(s), store.max_time(s), store.max_agg_id(s),
                   store.has_ticks(s), store.read_ticks(s, AUG8 + DAY - 60_000, AUG8 + DAY + 10),
                   store.tick_count_between(s, AUG8 + DAY - 60_000, AUG8 + DAY + 10))
        # what an import continues from and stops before (pipeline/import_bars.py)
        ticks = snap[s][0]
        day_edges = [t.time + d for t in ticks[:1] + ticks[-1:] + [t for t in ticks if t.time >= AUG8 + DAY][:1]
                     for d in (-1, 0, 1)]  # on and beside the first and last tick of each day
        snap[s, "edges"] = [(store.tick_before(s, t), store.first_tick_time(s, t)) for t in (*PROBES, *day_edges)]
        for tf in ("1s", "1m", "5m", "15m"):
            snap[s, tf] = _rows(load_bars(store, s, tf))
            snap[s, tf, "range"] = _rows(load_bars(store, s, tf, AUG8 + DAY - 120_000, AUG8 + DAY + 1000))
    return snap


def _in_sqlite(store: Store) -> list[tuple[str, int]]:
    return store._db.execute("SELECT symbol, time / 86400000 FROM ticks GROUP BY 1, 2 ORDER BY 1, 2").fetchall()


@pytest.fixture
def stored(tmp_path):
    with _store(tmp_path / "q.db") as store:
        yield store, _snapshot(store)


def test_archived_ticks_read_back_equal(stored, tmp_path):
    store, before = stored
    days = list(store.archive_ticks(tmp_path / "archive", older_than_days=1, now_ms=NOW))
    assert [(d.symbol, d.day, d.ticks, d.moved) for d in days] == [
        ("BTCUSDT", "2024-08-08", 21313, 21313), ("ETHUSDT", "2024-08-08", 14051, 14051),
        ("SOLUSDT", "2024-08-08", 6, 6)]
    for d in days:  # every field of the file is the tick stored, the unknown side a null
        assert d.file == tmp_path / "archive" / d.symbol / "2024-08-08.parquet"
        rows = pq.read_table(d.file).to_pylist()
        got = [Tick(r["symbol"], int(r["time"].timestamp() * 1000 + 0.5), r["agg_id"], r["price"], r["qty"],
                    r["buyer_maker"]) for r in rows]
        assert got == before[d.symbol][0][:d.ticks]
    assert [r["buyer_maker"] for r in pq.read_table(days[2].file).to_pylist()] == [t.buyer_maker for t in UNKNOWN]
    assert _in_sqlite(store) == [("ETHUSDT", 19944)]  # only the day kept is left in the table
    assert _snapshot(store) == before  # ticks, counts, spans, ids, cached and rebuilt bars: as before
    with Store(store.path, readonly=True) as ro:  # a reader with no config finds the archive
        assert ro.archive_dir() == tmp_path / "archive"
        assert _snapshot(ro) == before


def test_a_rerun_never_duplicates_and_merges_late_ticks(stored, tmp_path):
    store, before = stored
    days = list(store.archive_ticks(tmp_path / "archive", older_than_days=1, now_ms=NOW))
    sizes = {d.file: (d.file.stat().st_size, d.file.stat().st_mtime_ns) for d in days}
    assert list(store.archive_ticks(tmp_path / "archive", older_than_days=1, now_ms=NOW)) == []
    assert {f: (f.stat().st_size, f.stat().st_mtime_ns) for f in sizes} == sizes
    # an archived day imported again is in SQLite and the archive at once: read once, then merged
    import_file(store, USDM_TRADES)
    for s in SYMBOLS:  # what `import` does next: bars rebuilt from all ticks, archived ones included
        rebuild_bars(store, s, ["1s", "1m"])
    assert _snapshot(store) == before
    again = list(store.archive_ticks(tmp_path / "archive", older_than_days=1, now_ms=NOW))
    assert [(d.symbol, d.ticks, d.moved) for d in again] == [("BTCUSDT", 21313, 21313), ("ETHUSDT", 14051, 14051)]
    assert _in_sqlite(store) == [("ETHUSDT", 19944)]
    assert _snapshot(store) == before
    # more days archived later: the 9th goes too
    more = list(store.archive_ticks(tmp_path / "archive", older_than_days=1, now_ms=NOW + DAY))
    assert [(d.symbol, d.day, d.ticks) for d in more] == [("ETHUSDT", "2024-08-09", 25)]
    assert _in_sqlite(store) == [] and _snapshot(store) == before


def test_an_import_beside_archived_days_keeps_their_bars_and_continues_from_their_ticks(stored, tmp_path):
    """Trades of a day before the archived one, then of one after everything: the archived day's
    cached bars stay (the import's bars end at its first tick), and bars after the archive carry
    its last price, as if every tick were in SQLite."""
    store, _ = stored
    with _store(tmp_path / "all.db") as same:  # the same ticks, never archived
        list(store.archive_ticks(tmp_path / "archive", older_than_days=1, now_ms=NOW))
        assert _in_sqlite(store) == [("ETHUSDT", AUG8 // DAY + 1)]  # every BTCUSDT tick is archived
        parts = []
        for sym in ("ETHUSDT", "BTCUSDT"):
            ticks = store.read_ticks(sym)
            older = [Tick(sym, AUG8 - 2_000 + 100 * k, ticks[0].agg_id - 50 + k, 2500.0 + k, 1.0, k % 2 == 0)
                     for k in range(30)]
            later = [Tick(sym, ticks[-1].time + 1_500 + 700 * k, ticks[-1].agg_id + 1 + k, 2600.0 - k, 2.0,
                          k % 3 == 0) for k in range(20)]
            parts += [older, later]
        for db in (store, same):
            for i, part in enumerate(parts):
                path = tmp_path / f"{db.path.stem}-{i}.csv"
                path.write_text(CSV_HEADER + "".join(
                    f"{t.agg_id},{t.price},{t.qty},{t.agg_id},{t.agg_id},{t.time},{str(t.buyer_maker).lower()}\n"
                    for t in part))
                assert import_file(db, path, symbol=part[0].symbol, bars=ImportBars(["1s", "1m"])).stored == len(part)
        for sym in ("ETHUSDT", "BTCUSDT"):
            for tf in ("1s", "1m"):
                got = _rows(store.read_bars(sym, tf))
                assert got == _rows(same.read_bars(sym, tf)) and len(got) > 300, (sym, tf)


class _FailingDelete:
    """The store's connection, except that deleting ticks fails (inside the archive transaction)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._inner = db

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __enter__(self):
        return self._inner.__enter__()

    def __exit__(self, *exc):
        return self._inner.__exit__(*exc)

    def executemany(self, sql, rows):
        if sql.startswith("DELETE FROM ticks"):  # some rows go, then the disk fails
            self._inner.executemany(sql, itertools.islice(rows, 100))
            raise sqlite3.OperationalError("disk I/O error")
        return self._inner.executemany(sql, rows)


def _crash(exc_type=OSError):
    def boom(*a, **kw):
        raise exc_type("simulated crash")
    return boom


@pytest.mark.parametrize("where", ["write", "verify", "replace", "after_replace", "delete"])
def test_a_crash_at_any_step_loses_nothing_and_duplicates_nothing(stored, tmp_path, monkeypatch, where):
    store, before = stored
    root = tmp_path / "archive"
    if where == "write":
        monkeypatch.setattr(archive, "_write_file", _crash())
    elif where == "verify":  # the file on disk is not what was meant: refused, nothing deleted
        real = archive._write_file
        monkeypatch.setattr(archive, "_write_file", lambda p, s, c: real(p, s, archive._Columns(
            c.time, c.agg_id, c.price + (c.agg_id == c.agg_id[-1]) * 0.01, c.qty, c.side)))
    elif where == "replace":
        monkeypatch.setattr(archive.os, "replace", _crash())
    elif where == "after_replace":  # the file is in place, the manifest row and the delete are not
        monkeypatch.setattr(archive, "_fsync_dir", _crash())
    else:
        monkeypatch.setattr(store, "_db", _FailingDelete(store._db))
    with pytest.raises((OSError, StoreError)) as info:
        list(store.archive_ticks(root, older_than_days=1, now_ms=NOW))
    if where == "verify":
        assert info.match("read back differs") and not (root / "BTCUSDT" / "2024-08-08.parquet").exists()
    if where == "delete":
        assert info.match("its ticks kept in the database")
    monkeypatch.undo()
    assert len(_in_sqlite(store)) == 4  # every day still in SQLite, none in the manifest
    assert store._db.execute("SELECT COUNT(*) FROM tick_archive").fetchone()[0] == 0
    assert _snapshot(store) == before  # each tick read exactly once
    assert [d.symbol for d in store.archive_ticks(root, older_than_days=1, now_ms=NOW)] == list(SYMBOLS)
    assert _snapshot(store) == before
    assert not list(root.glob("*/.*.tmp"))  # a temp file left by the crash was rewritten, never read


def test_a_crash_while_merging_into_an_archived_day_reads_each_tick_once(stored, tmp_path, monkeypatch):
    store, before = stored
    list(store.archive_ticks(tmp_path / "archive", older_than_days=1, now_ms=NOW))
    import_file(store, USDM_TRADES)  # the archived day's ticks are back in SQLite
    monkeypatch.setattr(archive, "_fsync_dir", _crash())  # the merged file is in place, the delete is not
    with pytest.raises(OSError, match="simulated"):
        list(store.archive_ticks(tmp_path / "archive", older_than_days=1, now_ms=NOW))
    monkeypatch.undo()
    assert _snapshot(store) == before
    list(store.archive_ticks(tmp_path / "archive", older_than_days=1, now_ms=NOW))
    assert _in_sqlite(store) == [("ETHUSDT", 19944)] and _snapshot(store) == before


def test_bad_arguments_and_a_moved_archive_are_clear_errors(stored, tmp_path):
    store, _ = stored
    with pytest.raises(ValueError, match="older_than_days must be a whole number of at least 1"):
        list(store.archive_ticks(tmp_path / "a", older_than_days=0, now_ms=NOW))
    list(store.archive_ticks(tmp_path / "a", older_than_days=1, now_ms=NOW))
    with pytest.raises(StoreError, match=r"archived in .*a, not .*b; set storage.archive_dir"):
        list(store.archive_ticks(tmp_path / "b", older_than_days=1, now_ms=NOW))
    (tmp_path / "a" / "BTCUSDT" / "2024-08-08.parquet").unlink()
    with pytest.raises(StoreError, match="archived ticks of BTCUSDT 2024-08-08 are missing"):
        store.read_ticks("BTCUSDT")


def test_config_archive_keys(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("storage:\n  archive_dir: old\n  archive_after_days: null\n")
    c = load_config(cfg)
    assert c.storage.archive_dir == tmp_path / "old" and c.storage.archive_after_days is None
    assert load_config(None).storage.archive_after_days == 30
    cfg.write_text("storage:\n  archive_after_days: -3\n")
    with pytest.raises(ConfigError, match=r"^invalid configuration: \S+c.yaml: storage.archive_after_days: .*\(got -3\)$"):
        load_config(cfg)
    cfg.write_text("storage:\n  archive_after_days: soon\n")
    with pytest.raises(ConfigError, match=r"storage.archive_after_days"):
        load_config(cfg)


BARS_SEEN = [("BTCUSDT", "1m"), ("ETHUSDT", "5m"), ("SOLUSDT", "1s")]


def _qp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quantpanel", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "QUANTPANEL_CONFIG": ""})


def test_cli_archives_with_the_shipped_config_and_bars_read_back(tmp_path):
    db, root = tmp_path / "q.db", tmp_path / "archive"
    _store(db).close()
    bars = [_qp("bars", "--db", str(db), "--symbol", s, "--timeframe", tf).stdout
            for s, tf in BARS_SEEN]
    # the shipped config keeps 30 days: every day of 2024 goes
    p = _qp("archive", "--db", str(db), "--archive-dir", str(root))
    assert p.returncode == 0, p.stderr
    *lines, summary = [json.loads(x) for x in p.stdout.splitlines()]
    assert [(x["symbol"], x["day"], x["ticks"]) for x in lines] == [
        ("BTCUSDT", "2024-08-08", 21313), ("ETHUSDT", "2024-08-08", 14051), ("ETHUSDT", "2024-08-09", 25),
        ("SOLUSDT", "2024-08-08", 6)]
    assert all(os.path.isfile(x["file"]) for x in lines)
    assert summary["archived_days"] == 4 and summary["ticks"] == 35395 and summary["older_than_days"] == 30
    assert [_qp("bars", "--db", str(db), "--symbol", s, "--timeframe", tf).stdout
            for s, tf in BARS_SEEN] == bars
    an = _qp("analyze", "--db", str(db), "--pair", "BTCUSDT", "ETHUSDT", "--timeframe", "1s", "--json")
    assert an.returncode == 0 and json.loads(an.stdout)["n"] > 300, an.stderr
    again = _qp("archive", "--db", str(db), "--archive-dir", str(root))
    assert again.returncode == 0
    assert json.loads(again.stdout)["message"].startswith(f"nothing to archive: {db} holds no ticks")
    for args, msg in [(["--older-than-days", "0"], "is not a whole number of at least 1"),
                      (["--db", str(tmp_path / "none.db")], "none.db: no such database"),
                      (["--archive-dir", str(tmp_path / "elsewhere")], "its ticks are archived in")]:
        bad = _qp("archive", *(["--db", str(db)] if "--db" not in args else []), *args)
        assert bad.returncode == 2 and msg in bad.stderr.strip().splitlines()[-1], bad.stderr

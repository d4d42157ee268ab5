"""The columnar import (issue 18): bars built vectorised from the imported chunks equal, bar for bar
and to the last bit, a rebuild of the symbol from all its stored ticks by the incremental builder;
many files import in order, each all or nothing, and a rerun after a crash completes them without
duplicates."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantpanel.errors import ImportFileError
from quantpanel.feeds import trade_columns
from quantpanel.feeds.trade_columns import read_trade_columns
from quantpanel.models import Tick, TickColumns
from quantpanel.pipeline.bar_arrays import BarColumns, SeriesBuilder
from quantpanel.pipeline.bars import build_bars
from quantpanel.pipeline.history import load_bars, rebuild_bars
from quantpanel.pipeline.import_bars import ImportBars
from quantpanel.storage.importer import import_file
from quantpanel.storage.store import Store

from tests.offline.cases import agg_trades_csv

REPO = Path(__file__).resolve().parents[2]
T0 = 1_723_161_240_000  # 2024-08-09T00:34:00Z
NOW = T0 + 30 * 86_400_000  # long after: every imported bar is closed by the clock
TFS = ("1s", "1m", "5m", "1h")


def _key(b) -> tuple:
    return tuple("nan" if v != v else v for v in astuple(b))


def _ticks(draw_times: list[int], sides: list[int], seed: int, symbol: str = "BTCUSDT") -> list[Tick]:
    rng = np.random.default_rng(seed)
    prices = np.round(60_000 + np.cumsum(rng.normal(0, 5, len(draw_times))), 1)
    qtys = np.round(rng.exponential(0.2, len(draw_times)) + 0.001, 3)
    return [Tick(symbol, T0 + t, 1_000 + i, float(prices[i]), float(qtys[i]), (False, True)[sides[i] % 2])
            for i, t in enumerate(sorted(draw_times))]


def _truth(tmp: Path, ticks: list[Tick], tfs: tuple[str, ...]) -> dict[str, list[tuple]]:
    """The old way: every tick stored, then the symbol rebuilt by the incremental builder."""
    with Store(tmp / "truth.db") as store:
        store.insert_ticks(ticks)
        rebuild_bars(store, "BTCUSDT", tfs)
        return {tf: [_key(b) for b in load_bars(store, "BTCUSDT", tf, now_ms=NOW)] for tf in tfs}


def _write(path: Path, ticks: list[Tick]) -> Path:
    path.write_bytes(agg_trades_csv(ticks))
    return path


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(times=st.lists(st.integers(0, 3 * 3_600_000), min_size=1, max_size=400),
       cuts=st.lists(st.integers(0, 400), max_size=4), stored_before=st.integers(0, 400),
       tfs=st.sets(st.sampled_from(TFS), min_size=1), seed=st.integers(0, 2**16),
       chunk=st.sampled_from([1, 7, 100_000]))
def test_imported_bars_equal_a_rebuild_from_every_stored_tick(times, cuts, stored_before, tfs, seed, chunk):
    """Random ticks split into files at random points (and each file into random chunks), some of
    them stored before the import: the bars after importing every file equal the incremental
    builder's over all ticks, for every timeframe, whether the file's chunks or the store fed them."""
    ticks = _ticks(times, [t % 3 for t in times], seed)
    tfs = tuple(sorted(tfs, key=TFS.index))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        want = _truth(tmp, ticks, tfs)
        pre = set(np.random.default_rng(seed).choice(len(ticks), min(stored_before, len(ticks)) // 4,
                                                     replace=False).tolist())
        bounds = sorted({0, len(ticks), *(c for c in cuts if c < len(ticks))})
        files = [ticks[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        old = trade_columns.CHUNK_ROWS
        with Store(tmp / "new.db") as store:
            if pre:  # some ticks arrived live before (bars cached as the pipeline caches them)
                early = [ticks[i] for i in sorted(pre)]
                store.insert_ticks(early)
                rebuild_bars(store, "BTCUSDT", tfs)
            for i, f in enumerate(files):
                path = _write(tmp / f"BTCUSDT-aggTrades-{i}.csv", f)
                trade_columns.CHUNK_ROWS = chunk
                try:
                    res = import_file(store, path, bars=ImportBars(tfs, now_ms=NOW))
                finally:
                    trade_columns.CHUNK_ROWS = old
                assert res.read == len(f)
            got = {tf: [_key(b) for b in load_bars(store, "BTCUSDT", tf, now_ms=NOW)] for tf in tfs}
            assert store.tick_count("BTCUSDT") == len(ticks)
    assert got == want


def test_chunked_columns_equal_the_incremental_builder_state_and_bars(usdm_ticks):
    """Real trades, cut into uneven chunks: the same closed bars, forming bar and series state."""
    btc = [t for t in usdm_ticks if t.symbol == "BTCUSDT"]
    cols = TickColumns(np.array([t.time for t in btc]), np.array([t.agg_id for t in btc]),
                       np.array([t.price for t in btc]), np.array([t.qty for t in btc]),
                       np.array([int(t.buyer_maker) for t in btc], dtype="int8"))
    for tf in ("1s", "1m", "5m"):
        want, state = build_bars(btc, [tf], include_forming=False)
        sb = SeriesBuilder(tf)
        parts = [sb.add(cols.take(slice(a, b))) for a, b in ((0, 1), (1, 5_000), (5_000, 5_001), (5_001, None))]
        assert [_key(b) for b in BarColumns.concat(parts).bars("BTCUSDT", tf)] == [_key(b) for b in want]
        assert sb.state == state.series[("BTCUSDT", tf)]


def test_a_file_out_of_order_or_with_duplicates_is_rebuilt_from_the_store(tmp_path, usdm_ticks):
    btc = [t for t in usdm_ticks if t.symbol == "BTCUSDT"][:3_000]
    shuffled = btc[1_000:] + btc[:1_000] + btc[10:20]  # out of order, ten rows twice
    want = _truth(tmp_path, btc, ("1s", "1m"))
    with Store(tmp_path / "new.db") as store:
        sink = ImportBars(("1s", "1m"), now_ms=NOW)
        res = import_file(store, _write(tmp_path / "BTCUSDT-aggTrades-x.csv", shuffled), bars=sink)
        assert (res.read, res.stored) == (len(shuffled), len(btc))
        assert sorted(sink.rebuilt_from_store) == [("BTCUSDT", "1m"), ("BTCUSDT", "1s")]
        assert {tf: [_key(b) for b in load_bars(store, "BTCUSDT", tf, now_ms=NOW)] for tf in ("1s", "1m")} == want


def test_the_csv_fast_path_hands_over_to_the_row_reader_at_the_first_block_it_refuses(tmp_path, monkeypatch,
                                                                                       usdm_ticks):
    """A side written " TRUE" is valid to the row reader but not to pyarrow: the rows before it
    come from pyarrow, the rest from the row reader, none twice, equal to the row reader's all."""
    btc = [t for t in usdm_ticks if t.symbol == "BTCUSDT"][:2_000]
    text = agg_trades_csv(btc).decode().splitlines()
    text[1_500] = text[1_500].rsplit(",", 1)[0] + ", TRUE"
    path = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv"
    path.write_text("\n".join(text) + "\n")
    monkeypatch.setattr(trade_columns, "_BLOCK_BYTES", 20_000)  # several blocks
    _, chunks = read_trade_columns(path)
    got = [c for _, c in chunks]
    assert len(got) > 2 and sum(len(c) for c in got) == len(btc)
    side = np.concatenate([c.side for c in got])
    assert side[1_499] == 1 and np.array_equal(np.concatenate([c.agg_id for c in got]), [t.agg_id for t in btc])
    assert np.array_equal(np.concatenate([c.price for c in got]), [t.price for t in btc])
    text[1_700] = text[1_700].replace(",", ",x", 1)  # now a bad row: the row reader's message
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ImportFileError, match=r"aggTrades-2024-08-08.csv:1701: column 'price' has a bad value"):
        list(read_trade_columns(path)[1])


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quantpanel", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_many_files_import_in_order_and_a_rerun_after_a_crash_completes_without_duplicates(tmp_path, usdm_ticks):
    """Three daily files by a quoted pattern; the second is torn (a bad last row): the first is
    stored whole, the second not at all, and the CLI stops with status 2 naming the line. After
    the file is fixed, a rerun skips the first (imported whole before), imports the rest, and the
    store equals one import of every trade, bars included."""
    btc = [t for t in usdm_ticks if t.symbol == "BTCUSDT"]
    days = [[Tick(t.symbol, t.time + k * 86_400_000, t.agg_id + k * 10**7, t.price, t.qty, t.buyer_maker)
             for t in btc] for k in range(3)]
    src = tmp_path / "month"
    src.mkdir()
    for k, ticks in enumerate(days):
        _write(src / f"BTCUSDT-aggTrades-2024-08-{8 + k:02d}.csv", ticks)
    good = (src / "BTCUSDT-aggTrades-2024-08-09.csv").read_bytes()
    (src / "BTCUSDT-aggTrades-2024-08-09.csv").write_bytes(good + b"99,1.5,oops,1,1,1723161240000,true\n")
    db = tmp_path / "month.db"
    pattern = str(src / "BTCUSDT-aggTrades-*.csv")
    first = _cli("import", pattern, "--db", str(db))
    assert first.returncode == 2
    assert first.stderr.strip().splitlines()[-1].endswith(
        f"{src}/BTCUSDT-aggTrades-2024-08-09.csv:{len(btc) + 2}: column 'quantity' has a bad value in "
        "['99', '1.5', 'oops', '1', '1', '1723161240000', 'true']")
    lines = [json.loads(ln) for ln in first.stdout.splitlines()]
    assert [ln["file"] for ln in lines] == [str(src / "BTCUSDT-aggTrades-2024-08-08.csv")]
    with Store(db, readonly=True) as store:
        assert store.tick_count("BTCUSDT") == len(btc)  # the first day whole, nothing of the second
    (src / "BTCUSDT-aggTrades-2024-08-09.csv").write_bytes(good)
    rerun = _cli("import", pattern, "--db", str(db), "--progress")
    assert rerun.returncode == 0, rerun.stderr
    out = [json.loads(ln) for ln in rerun.stdout.splitlines()]
    assert [(o["already_imported"], o["read"], o["stored"]) for o in out[:3]] == [
        (True, len(btc), 0), (False, len(btc), len(btc)), (False, len(btc), len(btc))]
    assert out[1]["rows_per_s"] > 0 and out[1]["bars"] > 0 and out[3]["symbol"] == "BTCUSDT"
    assert "rows/s" in rerun.stderr and "BTCUSDT-aggTrades-2024-08-10.csv" in rerun.stderr  # the progress bar
    every = [t for d in days for t in d]
    want = _truth(tmp_path, every, ("1s", "1m", "5m"))
    with Store(db, readonly=True) as store:
        assert store.read_ticks("BTCUSDT") == every
        assert {tf: [_key(b) for b in load_bars(store, "BTCUSDT", tf, now_ms=NOW)] for tf in ("1s", "1m", "5m")} == want

"""NDJSON trade ticks from a browser collector (``{"symbol","ts","price","size"}`` per line, no trade
ids, no sides): imported with stable synthetic keys, side unknown, all or nothing, once; and an
import that reads nothing is an error, never a silent success."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
from datetime import datetime
from pathlib import Path

import pytest

from quantpanel.errors import ImportFileError
from quantpanel.feeds.recording import load_recording
from quantpanel.feeds.trade_files import file_kind, read_tick_ndjson
from quantpanel.models import SYNTHETIC_ID_BASE, Tick, is_synthetic_id, synthetic_agg_id
from quantpanel.pipeline.history import rebuild_bars
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.importer import NDJSON_SYNTHESISED, import_file, unpack_agg_trades
from quantpanel.storage.store import Store

from tests.conftest import CRYPTOFEED, ROOT
from tests.test_pipeline import _config

pytestmark = pytest.mark.timeout(120)

# 993 real USD-M futures trades (BTCUSDT 622, ETHUSDT 371), 2025-11-01; see data/SOURCES.md
TICKS = ROOT / "data" / "ticks" / "gemscap-Charish53-ticks_2025-11-01T09-54-08.557Z.ndjson"


def iso_ms(ts: str) -> int:
    """An independent decoding of the collector's ``ts`` (always ``...sss Z``)."""
    return int(datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000 + 0.5)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [json.loads(line) for line in TICKS.read_text().splitlines() if line.strip()]


def test_the_real_file_imports_every_row_once_with_its_values(tmp_path, rows):
    with Store(tmp_path / "q.db") as store:
        res = import_file(store, TICKS)
        assert (res.read, res.stored, res.symbols, res.skipped) == (993, 993, {"BTCUSDT", "ETHUSDT"}, {})
        assert res.synthesised == list(NDJSON_SYNTHESISED)
        assert any("agg_id" in s for s in res.synthesised) and any("buy_volume is NaN" in s for s in res.synthesised)
        for sym, n in (("BTCUSDT", 622), ("ETHUSDT", 371)):
            got = store.read_ticks(sym)
            want = [(iso_ms(r["ts"]), float(r["price"]), float(r["size"])) for r in rows if r["symbol"] == sym]
            assert len(got) == n and sorted((t.time, t.price, t.qty) for t in got) == sorted(want)
            assert all(t.buyer_maker is None and is_synthetic_id(t.agg_id) for t in got)
            assert store.max_agg_id(sym) == -1  # no exchange id was invented
        again = import_file(store, TICKS)  # the same file again: read, nothing new, not an error
        assert (again.read, again.stored) == (993, 0) and store.tick_count() == 993


def test_keys_count_rows_of_the_same_symbol_and_millisecond_in_file_order(rows):
    trades = list(read_tick_ndjson(TICKS))
    assert [(t.symbol, t.time) for t in trades] == [(r["symbol"], iso_ms(r["ts"])) for r in rows]
    seen: dict[tuple[str, int], int] = {}
    for t in trades:
        nth = seen.get((t.symbol, t.time), 0)
        seen[t.symbol, t.time] = nth + 1
        assert t.agg_id == t.first_id == t.last_id == synthetic_agg_id(t.time, nth)
    assert max(seen.values()) == 83  # 83 BTCUSDT fills in one millisecond: all kept, all distinct
    for sym in ("BTCUSDT", "ETHUSDT"):  # keys rise with time, so they sort like the trades
        keys = [t.agg_id for t in trades if t.symbol == sym]
        assert keys == sorted(keys) and len(set(keys)) == len(keys) and keys[0] > SYNTHETIC_ID_BASE


def test_bars_of_side_less_ticks_have_nan_buy_volume_but_real_ohlcv(tmp_path, rows):
    with Store(tmp_path / "q.db") as store:
        import_file(store, TICKS)
        assert rebuild_bars(store, "BTCUSDT", ["1m"]) > 0
        bars = store.read_bars("BTCUSDT", "1m")
    end = bars[-1].time + 60_000  # the last, still forming minute is not cached
    btc = [r for r in rows if r["symbol"] == "BTCUSDT" and iso_ms(r["ts"]) < end]
    assert sum(b.trades for b in bars) == len(btc) > 500
    assert math.isclose(sum(b.volume for b in bars), sum(r["size"] for r in btc))
    assert all(math.isnan(b.buy_volume) for b in bars if b.trades)


def test_epoch_ms_times_gzip_and_detection_by_content(tmp_path):
    path = tmp_path / "collector-output.txt.gz"  # neither the name nor the suffix says NDJSON
    with gzip.open(path, "wt") as fh:
        fh.write('\n{"symbol":"btcusdt","ts":1761990649841,"price":"109983.4","size":0.04,"extra":1}\n'
                 '{"symbol":"BTCUSDT","ts":"2025-11-01T09:50:49.841+00:00","price":109983.5,"size":1}\n\n')
    assert file_kind(path) == "tick_ndjson"
    trades = list(read_tick_ndjson(path))
    assert [(t.symbol, t.time, t.price, t.qty) for t in trades] == [
        ("BTCUSDT", 1761990649841, "109983.4", "0.04"), ("BTCUSDT", 1761990649841, "109983.5", "1")]
    # an epoch ts in another unit is told by its magnitude (quantpanel.epochs), as in the OHLC importer
    for ts in ("1761990649841000", "1761990649841000000"):
        p = tmp_path / f"unit-{len(ts)}.ndjson"
        p.write_text('{"symbol":"BTCUSDT","ts":%s,"price":1.5,"size":2}\n' % ts)
        assert [t.time for t in read_tick_ndjson(p)] == [1761990649841]
    assert [t.agg_id for t in trades] == [synthetic_agg_id(1761990649841, 0), synthetic_agg_id(1761990649841, 1)]
    assert file_kind(CRYPTOFEED) == "capture"


GOOD = '{"symbol":"BTCUSDT","ts":"2025-11-01T09:50:49.841Z","price":109983.4,"size":0.04}'
# (bad third line, words the message must contain after "file:3: ")
BAD = [
    ('{"symbol":"BTCUSDT","ts":"2025-11-01T09:50:49.841Z","price":109983.4', "not JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"symbol":"BTCUSDT","ts":"2025-11-01T09:50:49.841Z","size":0.04}', "no field 'price'"),
    ('{"symbol":"BTCUSDT","price":1,"size":0.04}', "no field 'ts'"),
    (GOOD.replace('"BTCUSDT"', '""'), "field 'symbol'"),
    (GOOD.replace('"BTCUSDT"', "7"), "field 'symbol'"),
    (GOOD.replace("109983.4", "0"), "field 'price': 0 is not a finite positive number"),
    (GOOD.replace("109983.4", "-3.5"), "field 'price'"),
    (GOOD.replace("109983.4", '"nan"'), "field 'price'"),
    (GOOD.replace("109983.4", "true"), "field 'price'"),
    (GOOD.replace("109983.4", "1e999"), "not JSON"),  # infinity is not JSON
    (GOOD.replace("0.04", "0"), "field 'size'"),
    (GOOD.replace("0.04", "null"), "field 'size'"),
    (GOOD.replace('"2025-11-01T09:50:49.841Z"', '"yesterday"'), "field 'ts'"),
    (GOOD.replace('"2025-11-01T09:50:49.841Z"', "17619906"), "field 'ts': .* not an epoch time of 1990..2100"),
    (GOOD.replace('"2025-11-01T09:50:49.841Z"', "12.5"), "field 'ts'"),
    (GOOD.replace("2025-11-01", "0025-11-01"), "field 'ts': .* not a time of 1990..2100"),
    (GOOD.replace('"2025-11-01T09:50:49.841Z"', "true"), "field 'ts'"),
]


@pytest.mark.parametrize(("line", "words"), BAD)
def test_a_bad_row_names_file_line_and_field_and_stores_nothing_of_the_file(tmp_path, line, words):
    path = tmp_path / "ticks.ndjson"
    path.write_text(f"{GOOD}\n{GOOD}\n{line}\n{GOOD}\n")
    with Store(tmp_path / "q.db") as store:
        store.insert_ticks([Tick("ETHUSDT", 1, 1, 1.0, 1.0, True)])  # already stored: must survive
        with pytest.raises(ImportFileError, match=rf"ticks.ndjson:3: .*{words}"):
            import_file(store, path)
        assert store.tick_count() == 1


def test_price_and_size_both_zero_is_binances_na_placeholder_skipped_and_counted(tmp_path):
    """Binance's USD-M @trade stream pushes ``"X":"NA"`` rows with p = q = 0 (the larger Gemscap
    recording has 98 of them); the collector dropped X. They are no trade: skipped, counted, and
    they take no key, so the keys of the real rows do not depend on them."""
    zero = GOOD.replace("109983.4", "0").replace("0.04", "0")
    path = tmp_path / "ticks.ndjson"
    path.write_text(f"{zero}\n{GOOD}\n{zero.replace('0,', '0.0,')}\n{GOOD}\n")
    with Store(tmp_path / "q.db") as store:
        res = import_file(store, path)
        assert (res.read, res.stored, res.skipped) == (2, 2, {"zero_trade": 2})
        ms = store.read_ticks("BTCUSDT")[0].time
        assert [t.agg_id for t in store.read_ticks("BTCUSDT")] == [synthetic_agg_id(ms, 0), synthetic_agg_id(ms, 1)]
        path.write_text(f"{zero}\n{zero}\n")
        with pytest.raises(ImportFileError, match=r"holds no trades: saw rows with price and size 0 .*: 2"):
            import_file(store, path)


def test_na_trade_frames_of_a_capture_are_counted_not_malformed(tmp_path):
    frame = {"e": "trade", "E": 1756220468099, "T": 1756220468099, "s": "BTCUSDT", "t": 6587981240,
             "p": "0", "q": "0", "X": "NA", "m": True}  # as Binance sends it (hftbacktest issue #263)
    real = {**frame, "t": 6587981241, "p": "110000.5", "q": "0.01", "X": "MARKET"}
    path = tmp_path / "capture.jsonl"
    path.write_text("".join(json.dumps({"stream": "btcusdt@trade", "data": d}) + "\n" for d in (frame, real)))
    with Store(tmp_path / "q.db") as store:
        res = import_file(store, path)
    assert (res.read, res.skipped) == (1, {"trade_na": 1})


def test_more_than_a_thousand_trades_in_one_millisecond_is_named(tmp_path):
    path = tmp_path / "ticks.ndjson"
    path.write_text(f"{GOOD}\n" * 1001)
    with Store(tmp_path / "q.db") as store:
        with pytest.raises(ImportFileError, match=r"ticks.ndjson:1001: field 'ts': at most 1000 trades"):
            import_file(store, path)
        assert store.tick_count() == 0


@pytest.mark.parametrize(("name", "content", "words"), [
    ("empty.jsonl", "", "the file is empty"),
    ("blank.jsonl", "\n\n", "holds no trades: saw lines without a JSON frame: 2"),
    ("book.jsonl", '{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":1,"s":"BTCUSDT"}}\n'
                   '{"result":null,"id":1}\n', r"holds no trades: saw bookTicker: 1, messages without an event type: 1"),
    ("BTCUSDT-aggTrades-2024-08-08.csv",
     "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n",
     "holds no trades: no data rows"),
])
def test_an_import_that_reads_nothing_is_an_error_naming_why(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content)
    with Store(tmp_path / "q.db") as store, pytest.raises(ImportFileError, match=rf"{name}: .*{words}"):
        import_file(store, path)


def test_real_agg_trades_synthesise_nothing(tmp_path):
    with Store(tmp_path / "q.db") as store:
        res = import_file(store, CRYPTOFEED)
    assert res.stored == 91 and res.synthesised == []


def test_the_replay_recording_gets_contiguous_ids_the_import_keeps_its_keys():
    rec = load_recording(TICKS)
    assert rec.id_spans() == {"BTCUSDT": (1, 622), "ETHUSDT": (1, 371)}
    for sym in rec.symbols:
        mine = [t for t in rec.trades if t.symbol == sym]
        assert [t.agg_id for t in mine] == list(range(1, len(mine) + 1))
        assert all(t.first_id == t.last_id == t.agg_id and t.buyer_maker is None for t in mine)
    keyed = load_recording(TICKS, contiguous_ids=False)
    assert [(t.symbol, t.time, t.price) for t in keyed.trades] == [(t.symbol, t.time, t.price) for t in rec.trades]
    assert all(is_synthetic_id(t.agg_id) for t in keyed.trades)


def test_upload_unpack_accepts_tick_ndjson_and_names_what_it_is_not():
    data = TICKS.read_bytes()
    for name in ("ticks.ndjson", "ticks.jsonl", "TICKS.NDJSON"):
        assert unpack_agg_trades(name, data, max_bytes=10**6) == (name, data)
    with pytest.raises(ImportFileError, match="ticks.jsonl: expected NDJSON ticks.*first line is"):
        unpack_agg_trades("ticks.jsonl", b'{"stream":"x","data":{"e":"bookTicker"}}\n', max_bytes=10**6)
    with pytest.raises(ImportFileError, match="more than the upload cap"):
        unpack_agg_trades("ticks.ndjson", data, max_bytes=1000)
    with pytest.raises(ImportFileError, match=r"aggTrades .csv or .zip, or NDJSON ticks"):
        unpack_agg_trades("ticks.txt", data, max_bytes=10**6)


async def test_the_offline_upload_stores_ndjson_ticks_through_the_writer(tmp_path):
    rt = Runtime(_config(tmp_path, source="replay", **{"replay.data": str(CRYPTOFEED)}))
    await rt.start()
    try:
        res = await rt.stored.import_trades(TICKS.name, TICKS.read_bytes())
        assert (res.read, res.stored, res.synthesised) == (993, 993, list(NDJSON_SYNTHESISED))
        res = await rt.stored.import_trades(TICKS.name, TICKS.read_bytes())
        assert (res.read, res.stored) == (993, 0)
        await asyncio.to_thread(rt.ingestion.writer.flush, 30)
        with Store(rt.db_path, readonly=True) as store:
            assert store.tick_count("BTCUSDT") == 622 and store.tick_count("ETHUSDT") == 371
    finally:
        await rt.stop()


def test_the_cli_imports_the_file(tmp_path, capsys):
    from quantpanel.cli import main

    assert main(["import", "--db", str(tmp_path / "q.db"), str(TICKS)]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (first["read"], first["stored"], first["symbols"]) == (993, 993, ["BTCUSDT", "ETHUSDT"])
    empty = Path(tmp_path / "nothing.jsonl")
    empty.write_text("\n")
    assert main(["import", "--db", str(tmp_path / "q.db"), str(empty)]) == 2
    assert "holds no trades" in capsys.readouterr().err

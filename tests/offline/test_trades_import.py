"""aggTrades import as the Offline tab does it: through the runtime's writer thread, all or nothing,
with progress; zipped or not; bad files named with their line and column, nothing stored."""

from __future__ import annotations

import asyncio

import pytest

from quantpanel.errors import ImportFileError
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.store import Store

from tests.conftest import CRYPTOFEED
from tests.offline.cases import agg_trades_csv, zipped
from tests.test_pipeline import _config, wait_for

pytestmark = pytest.mark.timeout(120)
NAME = "BTCUSDT-aggTrades-2024-08-08"


@pytest.fixture
async def runtime(tmp_path):
    # replaying a capture of other symbols: the BTCUSDT trades in the store are only the imported
    rt = Runtime(_config(tmp_path, source="replay", **{"replay.data": str(CRYPTOFEED)}))
    await rt.start()
    yield rt
    await rt.stop()


def btc_count(rt: Runtime) -> int:
    with Store(rt.db_path, readonly=True) as store:
        return store.tick_count("BTCUSDT")


async def test_zipped_and_plain_uploads_store_every_trade_once_with_progress(runtime, usdm_ticks):
    btc = [t for t in usdm_ticks if t.symbol == "BTCUSDT"]  # 21,313 real trades
    n = len(btc)
    seen: list[tuple[int, int]] = []
    res = await runtime.stored.import_trades(f"{NAME}.zip", zipped(f"{NAME}.csv", agg_trades_csv(btc)),
                                      lambda n, total: seen.append((n, total)))
    assert (res.read, res.stored, res.symbols) == (n, n, {"BTCUSDT"})
    rows = [k for k, _ in seen]  # after each chunk stored
    assert rows and rows[-1] == n and rows == sorted(set(rows))
    assert {total for _, total in seen} == {n + 1}  # rows in the file, the header included
    with Store(runtime.db_path, readonly=True) as store:
        assert store.read_ticks("BTCUSDT") == btc
    # the same trades again (plain CSV, no header): nothing new, nothing doubled
    res = await runtime.stored.import_trades(f"{NAME}.csv", agg_trades_csv(btc[:5_000], header=False))
    assert (res.read, res.stored) == (5_000, 0) and btc_count(runtime) == n


@pytest.mark.parametrize(("name", "data", "words"), [
    (f"{NAME}.csv", b"", "the file is empty"),
    (f"{NAME}.zip", b"PK\x03\x04 torn", "not a readable zip file"),
    (f"{NAME}.zip", zipped("a.csv", b"1")[:-9], "not a readable zip file"),
    (f"{NAME}.txt", b"1,2,3", "expected a data.binance.vision aggTrades .csv or .zip"),
    ("trades.csv", b"1,2,3,4,5,6,true\n", "cannot tell the symbol"),
])
async def test_bad_uploads_are_named_and_store_nothing(runtime, usdm_ticks, name, data, words):
    with pytest.raises(ImportFileError, match=words):
        await runtime.stored.import_trades(name, data)
    assert btc_count(runtime) == 0


async def test_a_bad_row_rolls_back_the_whole_file_and_names_line_and_column(runtime, usdm_ticks):
    btc = [t for t in usdm_ticks if t.symbol == "BTCUSDT"][:20_000]
    good = agg_trades_csv(btc[:10_000])
    await runtime.stored.import_trades(f"{NAME}.csv", good)
    lines = agg_trades_csv(btc).decode().splitlines(keepends=True)
    a, _, rest = lines[15_001].split(",", 2)
    lines[15_001] = f"{a},abc,{rest}"  # a price that is not a number
    with pytest.raises(ImportFileError, match=rf"{NAME}.csv:15002: .*column"):
        await runtime.stored.import_trades(f"{NAME}.zip", zipped(f"{NAME}.csv", "".join(lines).encode()))
    assert btc_count(runtime) == 10_000  # what was stored before is untouched, nothing of the bad file


async def test_oversize_uploads_are_refused_before_anything_is_read(tmp_path, usdm_ticks):
    rt = Runtime(_config(tmp_path, source="replay", **{"replay.data": str(CRYPTOFEED),
                                                        "storage.max_upload_mb": 0.01}))
    await rt.start()
    try:
        big = agg_trades_csv([t for t in usdm_ticks if t.symbol == "BTCUSDT"][:1_000])
        for name, data in ((f"{NAME}.csv", big), (f"{NAME}.zip", zipped(f"{NAME}.csv", big))):
            with pytest.raises(ImportFileError, match="more than the upload cap of 10,485 bytes"):
                await rt.stored.import_trades(name, data)
        assert btc_count(rt) == 0
    finally:
        await rt.stop()


async def test_live_ticks_keep_flowing_into_the_store_around_an_import(tmp_path, usdm_ticks):
    rt = Runtime(_config(tmp_path, source="replay", **{"replay.speed": 20.0}))
    await rt.start()
    try:
        await wait_for(lambda: rt.status().ticks > 1000, 30)
        eth = [t for t in usdm_ticks if t.symbol == "ETHUSDT"]
        shifted = [t.__class__(t.symbol, t.time, t.agg_id + 10**9, t.price, t.qty, t.buyer_maker) for t in eth]
        res = await rt.stored.import_trades("ETHUSDT-aggTrades-2024-08-08.csv", agg_trades_csv(shifted))
        assert res.stored == len(eth)
        n = rt.status().ticks
        await wait_for(lambda: rt.status().ticks > n + 1000, 30)
        rt.replay.pause()
        await asyncio.sleep(0.5)  # the feed's last micro-batch reaches the pipeline
        await asyncio.to_thread(rt.ingestion.writer.flush, 30)
        assert rt.ingestion.writer.stats.errors == 0
        with Store(rt.db_path, readonly=True) as store:
            assert store.tick_count() == rt.status().ticks + len(eth)
    finally:
        await rt.stop()

"""Crash safety: `quantpanel record` is killed with SIGKILL at 20 random points while it ingests a
free-running exchange (trades go on while it is dead). After every kill the SQLite file is
consistent; each restart's backfill closes the hole, so the last run ends with every trade of the
recording stored exactly once and the bars of the fault-free run."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import sys

import pytest
import yaml

from quantpanel.feeds.exchange import Exchange
from quantpanel.feeds.recording import to_tick
from quantpanel.pipeline.bars import build_bars
from quantpanel.storage.store import Store

pytestmark = pytest.mark.timeout(300)


async def test_twenty_kill_9s_leave_a_consistent_store_and_no_hole(tmp_path, usdm_recording):
    db = tmp_path / "crash.db"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "symbols": ["BTCUSDT", "ETHUSDT"],
        "feed": {"connect_timeout_s": 2, "backoff_initial_s": 0.05, "backoff_max_s": 0.3,
                 "batch_interval_ms": 30, "silence_timeout_s": 2},
        "storage": {"db_path": str(db)},
    }))
    ids = {(t.symbol, t.agg_id) for t in usdm_recording.trades}
    rng = random.Random(2026)
    async with Exchange(usdm_recording, speed=5, pause_when_idle=False) as ex:
        def record():
            return asyncio.create_subprocess_exec(
                sys.executable, "-m", "quantpanel", "--config", str(cfg), "record",
                "--ws-url", ex.url, "--rest-url", ex.rest_url, "--public-ws-url", ex.public_url,
                "--spot-symbols", "",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

        counts = []
        for _ in range(20):
            proc = await record()
            await asyncio.wait_for(proc.stderr.readline(), 30)  # "recording ...": it is starting
            await asyncio.sleep(rng.uniform(0.3, 2.0))  # a random point of its start-up or ingest
            proc.kill()
            await proc.wait()
            if not db.exists():  # killed before it created the database
                counts.append(0)
                continue
            con = sqlite3.connect(db)  # the file as the dead process left it (WAL and all)
            try:
                assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                stored = set(con.execute("SELECT symbol, agg_id FROM ticks")) if "ticks" in tables else set()
            finally:
                con.close()
            assert stored <= ids  # nothing invented, and (the key) nothing twice
            counts.append(len(stored))
        assert counts == sorted(counts) and counts[-1] > 0 and len(set(counts)) > 10  # ingested between kills
        await asyncio.wait_for(ex.done.wait(), 120)
        proc = await record()  # the last restart: its start-up probe fills whatever the kills missed
        await asyncio.sleep(6)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])
    print(f"\nkill -9: stored after each kill {counts}; last run {summary}")
    ticks = [to_tick(t) for t in usdm_recording.trades]
    with Store(db, readonly=True) as store:
        assert store.tick_ids() == ids and store.tick_count() == len(ticks)
        ref, _ = build_bars(ticks, ["1s", "1m", "5m"], include_forming=False)
        for sym in ("BTCUSDT", "ETHUSDT"):
            for tf in ("1s", "1m", "5m"):
                want = [b for b in ref if (b.symbol, b.timeframe) == (sym, tf)]
                assert store.read_bars(sym, tf) == want, (sym, tf)

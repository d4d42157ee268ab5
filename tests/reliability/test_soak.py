"""The soak: the local exchange replays the real recording free-running (trades due while a client
is away are not sent to it) with 100+ injected faults of every kind, and REST answering 429/503 now
and then, while `quantpanel record` ingests. Afterwards the store holds every (symbol, a) of the
recording exactly once, and the bars equal the fault-free bars of the same trades."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

import pytest
import yaml

from quantpanel.feeds.exchange import FAULT_KINDS, Exchange, Faults
from quantpanel.feeds.recording import to_tick
from quantpanel.pipeline.bars import build_bars
from quantpanel.storage.store import Store

pytestmark = pytest.mark.timeout(240)


async def test_record_survives_a_hundred_faults_with_zero_loss(tmp_path, usdm_recording):
    faults = Faults(every=30, seed=11, stall_s=1.5, delay_s=0.2, refuse_s=0.5, rest_fail_every=9)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "symbols": ["BTCUSDT", "ETHUSDT"],
        "feed": {"silence_timeout_s": 0.8, "connect_timeout_s": 2, "backoff_initial_s": 0.05,
                 "backoff_max_s": 0.4, "batch_interval_ms": 50, "backfill_max_hold_s": 60,
                 "rest_weight_limit_1m": 100_000},  # the soak's REST traffic is 100 outages' worth
        "storage": {"db_path": str(tmp_path / "soak.db")},
    }))
    async with Exchange(usdm_recording, speed=7, pause_when_idle=False, faults=faults) as ex:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quantpanel", "--config", str(cfg), "record",
            "--ws-url", ex.url, "--rest-url", ex.rest_url, "--public-ws-url", ex.public_url,
                "--spot-symbols", "",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await asyncio.wait_for(ex.done.wait(), 150)
            await asyncio.sleep(4)  # the watchdog reconnects a now-silent feed; its probe fills the tail
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        elapsed = time.monotonic() - started
    assert proc.returncode == 0, err.decode()[-3000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])
    injected = sum(ex.stats.faults.values())
    print(f"\nsoak: {injected} faults {dict(ex.stats.faults)}, REST {ex.stats.rest_requests} requests "
          f"({ex.stats.rest_failures} failed on purpose), {elapsed:.1f} s; record: {summary}")
    assert injected >= 100 and set(ex.stats.faults) == set(FAULT_KINDS), ex.stats.faults
    assert ex.stats.rest_failures > 0 and summary["gaps"] > 0 and summary["trades_backfilled"] > 0
    assert summary["gaps_unfilled"] == 0 and summary["store_errors"] == 0

    ticks = [to_tick(t) for t in usdm_recording.trades]
    with Store(tmp_path / "soak.db", readonly=True) as store:
        # every trade exactly once (the key is (symbol, a)), with its exact values
        assert store.tick_count() == len(ticks) == 35_389
        assert store.tick_ids() == {(t.symbol, t.agg_id) for t in ticks}
        for sym in ("BTCUSDT", "ETHUSDT"):
            assert store.read_ticks(sym) == [t for t in ticks if t.symbol == sym]
        # the bars equal the fault-free bars (all but each series' last, still forming)
        ref, _ = build_bars(ticks, ["1s", "1m", "5m"], include_forming=False)
        for sym in ("BTCUSDT", "ETHUSDT"):
            for tf in ("1s", "1m", "5m"):
                got = store.read_bars(sym, tf)
                want = [b for b in ref if (b.symbol, b.timeframe) == (sym, tf)]
                assert got == want, (sym, tf, len(got), len(want))


async def test_the_served_apps_runtime_survives_the_same_faults(tmp_path, usdm_recording):
    """The dashboard's runtime (live mode, pointed at the faulty exchange) with its bar clock
    running: every trade stored once, and the stored bars rebuilt where the clock closed them
    during a stall equal the fault-free bars."""
    from quantpanel.pipeline.runtime import Runtime

    from tests.test_pipeline import _config, wait_for

    faults = Faults(every=15, seed=5, stall_s=1.5, delay_s=0.2, refuse_s=0.5, rest_fail_every=9)
    async with Exchange(usdm_recording, speed=7, pause_when_idle=False, faults=faults) as ex:
        rt = Runtime(_config(tmp_path, source="live", **{
            "feed.ws_url": ex.url, "feed.rest_url": ex.rest_url, "feed.silence_timeout_s": 0.8,
            "feed.backoff_max_s": 0.4, "feed.rest_weight_limit_1m": 100_000, "feed.backfill_max_hold_s": 60}))
        await rt.start()
        try:
            await asyncio.wait_for(ex.done.wait(), 150)
            await asyncio.sleep(4)
            await wait_for(lambda: not rt.ingestion.backfill.holding, 30)
            st = rt.status()
        finally:
            await rt.stop()
    injected = sum(ex.stats.faults.values())
    print(f"\nserved-app soak: {injected} faults {dict(ex.stats.faults)}; gaps {st.gaps}, "
          f"backfilled {st.backfilled}, unfilled {st.gaps_unfilled}")
    assert injected >= 100 and set(ex.stats.faults) == set(FAULT_KINDS), ex.stats.faults
    assert st.gaps > 0 and st.gaps_unfilled == 0
    ticks = [to_tick(t) for t in usdm_recording.trades]
    with Store(tmp_path / "live.db", readonly=True) as store:
        got, want = store.tick_ids(), {(t.symbol, t.agg_id) for t in ticks}
        assert (sorted(want - got)[:20], sorted(got - want)[:20]) == ([], []), "missing, extra"
        assert store.tick_count() == len(ticks)
        ref, _ = build_bars(ticks, ["1s", "1m"], include_forming=False)
        for sym in ("BTCUSDT", "ETHUSDT"):
            for tf in ("1s", "1m"):
                want = {b.time: b for b in ref if (b.symbol, b.timeframe) == (sym, tf)}
                got = {b.time: b for b in store.read_bars(sym, tf) if b.time in want}
                assert got == want, (sym, tf, [t for t in want if got.get(t) != want[t]][:5])

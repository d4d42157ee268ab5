"""`quantpanel ingest --broker` as users run it (a process, the repository's config with flags over
it): killed with SIGKILL mid-replay and restarted, a dashboard says "ingest offline", then
resumes with no gap or duplicate in any series; and its one-line errors."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, config_of, replay_tree, write_config
from .test_broker_flow import dashboard, same_bars, stored_bars, until

pytestmark = pytest.mark.timeout(300)


def ingest(config: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "quantpanel", "--config", str(config), "ingest",
                             "--broker", url, "--source", "replay"], cwd=ROOT, stdout=out, stderr=out,
                            start_new_session=True)


async def test_kill_9_of_ingest_mid_replay_then_restart_leaves_no_gap_or_duplicate(tmp_path, redis_server, prefix):
    tree = replay_tree(tmp_path, prefix, "redis://127.0.0.1:1/0")  # the flag overrides the config's URL
    config = write_config(tmp_path, tree)
    cfg = config_of(tmp_path, {**tree, "broker": {**tree["broker"], "url": redis_server.url}})
    log = tmp_path / "ingest.log"
    proc = ingest(config, redis_server.url, log)
    try:
        rt, hub = await dashboard(cfg, redis_server.url)
        await until(lambda: len(hub.closed_bars("BTCUSDT", "1s")) >= 6, 60, "bars from the ingest process")
        seq = hub.seq("BTCUSDT", "1s")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        await until(lambda: rt.status().state == "ingest offline", 10, '"ingest offline"')
        assert "ingest offline" in rt.status().error
        with pytest.raises(ValueError, match="ingest process is offline"):
            await hub.add_symbol("SOLUSDT")
        proc = ingest(config, redis_server.url, log)
        await until(lambda: rt.status().state == "connected", 60, "the restarted ingest's heartbeat")
        await until(lambda: hub.seq("BTCUSDT", "1s") >= seq + 8, 90, "bars after the restart")
        for sym in ("BTCUSDT", "ETHUSDT"):  # the fault-free series is the store's (trades exactly once)
            same_bars(hub.closed_bars(sym, "1s"), stored_bars(cfg.storage.replay_db_path, sym, "1s"))
        await rt.stop()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(log.read_text()[-3000:])


@pytest.mark.parametrize(("args", "message"), [
    (["ingest"], "ingest publishes to a broker: pass --broker redis://HOST:PORT/DB"),
    (["ingest", "--broker", "http://localhost:6379"], "broker.url: 'http://localhost:6379' is not a redis:// URL"),
    (["serve", "--broker", "localhost:6379"], "is not a redis:// URL"),
])
def test_broker_flags_that_cannot_work_are_one_line_errors(args, message):
    p = subprocess.run([sys.executable, "-m", "quantpanel", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_workers_without_redis_server_names_the_package(tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # python, but no redis-server
    p = subprocess.run([sys.executable, "-m", "quantpanel", "serve", "--workers", "2", "--port", "0"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 2, p.stderr
    assert "redis-server not found on PATH: install Debian's redis-server package" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_workers_must_be_a_positive_number():
    p = subprocess.run([sys.executable, "-m", "quantpanel", "serve", "--workers", "0"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "is not a whole number of at least 1" in p.stderr


async def test_ingest_stops_cleanly_on_sigterm_and_says_so(tmp_path, redis_server, prefix):
    tree = replay_tree(tmp_path, prefix, redis_server.url)
    config = write_config(tmp_path, tree)
    log = tmp_path / "ingest.log"
    proc = ingest(config, redis_server.url, log)
    cfg = config_of(tmp_path, tree)
    rt, hub = await dashboard(cfg, redis_server.url)
    await until(lambda: hub.closed_bars("BTCUSDT", "1s"), 60, "a bar")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0
    assert "quantpanel ingest stopped" in log.read_text()
    # its heartbeat is deleted on the way out: offline at once, not after broker.offline_after_s
    await until(lambda: rt.status().state == "ingest offline", 1.2, "ingest offline")
    await rt.stop()

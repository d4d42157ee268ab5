"""Scale-out in the browser: one `quantpanel ingest --broker` on a real redis-server, two
`quantpanel serve --broker` processes. Pages on both stream the same candles, equal to the store's
bars; one dashboard killed, the other's page keeps streaming; the ingest stopped, the page says
"ingest offline"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from quantpanel.broker.local import LocalRedis
from quantpanel.pipeline.history import load_bars
from quantpanel.storage.store import Store

from .helpers import ROOT, Server, alive, children, free_port, poll, start_server, status_strip, wait_for_growth

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

# Every drawn candle wick: (time, low, high) per data source of wicks.
CANDLES_JS = """() => {
  const out = [];
  for (const d of Bokeh.documents) for (const m of d._all_models.values()) {
    if (m.type !== 'ColumnDataSource') continue;
    const data = m.data instanceof Map ? Object.fromEntries(m.data) : m.data;
    if (data.low === undefined || data.high === undefined || data.time === undefined) continue;
    out.push(Array.from(data.time).map((t, i) => [t, data.low[i], data.high[i]]));
  }
  return out;
}"""


@pytest.fixture
def redis() -> Iterator[LocalRedis]:
    r = LocalRedis().start()
    yield r
    r.close()


def _sessions_candles(page) -> list[list[list[float]]]:
    return [c for c in page.evaluate(CANDLES_JS) if c]


def _assert_store_candles(candles: list[list[list[float]]], db: Path) -> int:
    """Each drawn candle series is exactly one stored 1s series over its span; returns how many
    candles were checked."""
    with Store(db, readonly=True) as store:
        stored = {s: {b.time: b for b in load_bars(store, s, "1s", include_forming=False, grace_ms=250)}
                  for s in ("BTCUSDT", "ETHUSDT")}
    checked = 0
    for series in candles:
        closed = series[:-1]  # the newest candle may still be forming
        times = [round(t) for t, _, _ in closed]
        assert times == sorted(set(times)), "a duplicate candle"
        sym = next((s for s, bars in stored.items() if all(t in bars for t in times)
                    and bars[times[0]].low == pytest.approx(closed[0][1])), None)
        assert sym is not None, f"candles at times the store lacks: {times[:5]}..."
        bars = stored[sym]
        span = [t for t in sorted(bars) if times[0] <= t <= times[-1]]
        assert span == times, "a stored bar is missing from the chart"
        for t, lo, hi in closed:
            b = bars[round(t)]
            assert (lo, hi) == pytest.approx((b.low, b.high), rel=1e-12)
        checked += len(closed)
    return checked


def test_two_broker_dashboards_stream_the_stores_bars_and_survive_each_other(
        context, replay_config: Path, redis: LocalRedis, tmp_path: Path) -> None:
    tree = yaml.safe_load(replay_config.read_text())
    tree["broker"] = {"prefix": "browser", "heartbeat_s": 0.25, "offline_after_s": 2}
    tree["replay"]["speed"] = 2
    config = tmp_path / "broker.yaml"
    config.write_text(yaml.safe_dump(tree, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTPANEL_")}
    logs = tmp_path / "ingest.log"
    with logs.open("wb") as out:
        ingest = subprocess.Popen([sys.executable, "-m", "quantpanel", "--config", str(config), "ingest",
                                   "--broker", redis.url, "--source", "replay"], cwd=ROOT, env=env,
                                  stdout=out, stderr=out, start_new_session=True)
    servers: list[Server] = []
    try:
        for i in range(2):
            port = free_port()
            servers.append(start_server(
                [sys.executable, "-m", "quantpanel", "--config", str(config), "serve", "--broker", redis.url,
                 "--port", str(port)], cwd=ROOT, env=env, port=port, logs=tmp_path / f"dash{i}"))
        for s in servers:
            s.wait_http(90)
        pages = []
        for s in servers:
            page = context.new_page()
            page.goto(s.url, timeout=90_000)
            pages.append(page)
        for page in pages:
            wait_for_growth(page, rows=4, timeout=60)
            st = poll(lambda p=page: status_strip(p), lambda st: st.source == "REPLAY" and st.state == "connected",
                      20, "the ingest's REPLAY status through the broker")
            assert st.ticks and st.ticks > 0

        # one dashboard process dies: the other's page keeps streaming
        os.killpg(servers[1].proc.pid, signal.SIGKILL)
        servers[1].proc.wait(10)
        wait_for_growth(pages[0], rows=3, timeout=30)
        assert status_strip(pages[0]).state == "connected"

        # the ingest stops: the page says so (and keeps what it shows)
        ingest.send_signal(signal.SIGTERM)
        assert ingest.wait(30) == 0
        st = poll(lambda: status_strip(pages[0]), lambda st: st.state == "ingest offline", 15,
                  '"ingest offline" in the status strip')
        assert "ingest offline" in st.text

        db = Path(tree["storage"]["replay_db_path"])
        live, dead = _sessions_candles(pages[0]), _sessions_candles(pages[1])
        assert live and dead
        assert _assert_store_candles(live, db) >= 8
        assert _assert_store_candles(dead, db) >= 4
        # the same candles on both servers: what the dead one drew, the live one draws too
        assert set(map(tuple, dead[0][:-1])) <= set(map(tuple, live[0]))
    except BaseException:
        for i, s in enumerate(servers):
            print(f"=== dashboard {i} ===\n{s.output_tail(4000)}")
        print(f"=== ingest ===\n{logs.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        for s in servers:
            s.stop()
        if ingest.poll() is None:
            ingest.kill()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def test_serve_workers_runs_redis_ingest_and_n_dashboards_and_ctrl_c_stops_them_all(
        context, replay_config: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTPANEL_")}
    port = free_port()
    server = start_server([sys.executable, "-m", "quantpanel", "--config", str(replay_config), "serve",
                           "--workers", "2", "--port", str(port), "--source", "replay"],
                          cwd=ROOT, env=env, port=port, logs=tmp_path / "workers")
    try:
        server.wait_http(90)
        kids = poll(lambda: children(server.proc.pid), lambda k: len(k) == 4, 30, "redis, ingest, 2 dashboards")
        cmds = {k: _cmdline(k) for k in kids}
        redis_pid = next(k for k, c in cmds.items() if "redis-server" in c)
        ingest_pid = next(k for k, c in cmds.items() if " ingest --broker redis://127.0.0.1:" in c)
        dashboards = [k for k, c in cmds.items() if " serve --workers 2" in c]
        assert len(dashboards) == 2, cmds

        page = context.new_page()
        page.goto(server.url, timeout=90_000)
        wait_for_growth(page, rows=3, timeout=60)
        assert status_strip(page).source == "REPLAY"

        # a dashboard process killed is replaced; pages keep being served on the one port
        os.kill(dashboards[0], signal.SIGKILL)
        poll(lambda: [k for k in children(server.proc.pid) if k not in cmds], lambda new: len(new) == 1, 30,
             "the killed dashboard process replaced")
        for _ in range(2):  # either process may take the connection
            p2 = context.new_page()
            p2.goto(server.url, timeout=90_000)
            wait_for_growth(p2, rows=2, timeout=60)
            p2.close()
        # the first tab's websocket may have been on the killed process (Bokeh does not reconnect
        # a session): reloaded, it is served again and streams
        page.reload(timeout=90_000)
        wait_for_growth(page, rows=1, timeout=60)

        # Ctrl-C (SIGINT to the foreground process group) stops everything, redis-server included
        everyone = [server.proc.pid, *children(server.proc.pid)]
        os.killpg(server.proc.pid, signal.SIGINT)
        server.proc.wait(45)
        poll(lambda: [p for p in [*everyone, redis_pid, ingest_pid] if alive(p)], lambda left: not left, 30,
             "every process of `serve --workers` gone")
    except BaseException:
        print(server.output_tail(6000))
        raise
    finally:
        server.stop()

"""`quantpanel serve --workers N` leaves nothing behind, however it is stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from quantpanel.broker.local import free_port

from .conftest import ROOT, replay_tree, write_config

pytestmark = pytest.mark.timeout(180)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_workers_parent_stops_redis_ingest_and_every_dashboard(tmp_path, how):
    tree = replay_tree(tmp_path, "workers", "")
    del tree["broker"]["url"]
    config = write_config(tmp_path, tree)
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "quantpanel", "--config", str(config), "serve", "--workers", "2",
                             "--port", str(port)], cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
    try:
        def serving() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/js/bokeh.min.js", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        _wait(serving, 90, "the port served")
        _wait(lambda: len(_children(proc.pid)) == 4, 30, "redis, ingest and 2 dashboards")
        kids = _children(proc.pid)
        os.kill(proc.pid, how)  # the parent only, as `kill PID` or the OOM killer would
        proc.wait(40)
        _wait(lambda: not [k for k in kids if _alive(k)], 40, "every child gone")
        assert not serving()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()

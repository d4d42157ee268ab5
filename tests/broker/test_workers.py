"""`quantpanel serve --workers N` leaves nothing behind, however it is stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from quantpanel.broker.local import free_port

from tests.browser.helpers import alive, children, poll

from .conftest import ROOT, replay_tree, write_config

pytestmark = pytest.mark.timeout(180)


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
        poll(serving, bool, 90, "the port served", interval=0.2)
        kids = poll(lambda: children(proc.pid), lambda k: len(k) == 4, 30, "redis, ingest and 2 dashboards",
                    interval=0.2)
        os.kill(proc.pid, how)  # the parent only, as `kill PID` or the OOM killer would
        proc.wait(40)
        poll(lambda: [k for k in kids if alive(k)], lambda left: not left, 40, "every child gone", interval=0.2)
        assert not serving()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()

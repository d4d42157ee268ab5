"""Fixtures of the browser tests: headless Debian chromium and `panel serve app.py` subprocesses.

Servers run from the repository root on free ports with a temporary config.yaml whose databases
live in tmp_path: nothing is written into the repository's data/ directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from .helpers import CHROMIUM, CHROMIUM_ARGS, REPLAY_DATA, ROOT, Server, free_port, start_server


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian chromium not found at {CHROMIUM}: run `make install-test`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def context(browser: object) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield ctx
    ctx.close()


@pytest.fixture
def replay_config(tmp_path: Path) -> Path:
    """The repository's config.yaml with databases in tmp_path and the bundled recording's path."""
    assert REPLAY_DATA.is_file(), REPLAY_DATA
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["storage"]["db_path"] = str(tmp_path / "db" / "quantpanel.db")
    cfg["storage"]["replay_db_path"] = str(tmp_path / "db" / "replay.db")
    cfg["replay"]["data"] = str(REPLAY_DATA)
    for key in ("quotes", "spot"):  # the real quotes and spot trades of the same minutes
        cfg["replay"][key] = str(ROOT / cfg["replay"][key])
    cfg["storage"]["bundled_ohlc_dir"] = str(ROOT / "data" / "ohlc")
    cfg["alerts"]["rules"] = []  # no toasts over what a test clicks; the alerts test adds its own
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Keep each phase's report on the item, so fixtures can tell a failed test at teardown."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def panel_app(request: pytest.FixtureRequest, tmp_path: Path,
              replay_config: Path) -> Iterator[Callable[..., Server]]:
    """Start `panel serve app.py ... --args --source replay` (QUANTPANEL_CONFIG = the tmp config).

    ``panel_app(*extra)`` inserts extra `panel serve` options before ``--args``; every server is
    killed (its whole process group) at teardown.
    """
    servers: list[Server] = []

    def start(*extra: str, timeout: float = 90) -> Server:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTPANEL_")}
        env["QUANTPANEL_CONFIG"] = str(replay_config)
        cmd = [sys.executable, "-m", "panel", "serve", "app.py", "--port", str(port),
               "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}",
               *extra, "--args", "--source", "replay"]
        server = start_server(cmd, cwd=ROOT, env=env, port=port,
                              logs=tmp_path / f"server{len(servers)}", path="/app")
        servers.append(server)
        server.wait_http(timeout)
        return server

    yield start
    for s in servers:
        s.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:  # the server's side of a failure, in the CI log
        for i, s in enumerate(servers):
            print(f"=== server {i} ({s.url}) ===\n{s.output_tail(6000)}")

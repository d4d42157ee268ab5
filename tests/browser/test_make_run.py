"""`make run` on a fresh clone without internet reaches a moving dashboard (the fallback path).

The committed HEAD is cloned into tmp_path and `make run` builds its own .venv there (pip from the
machine's package index, ~1-2 min) and runs `quantpanel serve` (pn.serve, not `panel serve`) with
source `auto`. The live URL points at a port nothing listens on, so the runtime must give up on
Binance after feed.connect_timeout_s and fall back to replaying the bundled recording, whatever
the network. The clone's own config.yaml and data/ are used: nothing is written into this repo.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from .helpers import ROOT, free_port, start_server, status_strip, wait_for_growth, wait_for_replay_banner

pytestmark = pytest.mark.browser

INSTALL_TIMEOUT_S = 600  # fresh venv + pip install of requirements.txt


def newcomer_env() -> dict[str, str]:
    """The environment of a plain shell: no active venv, no make/quantpanel variables."""
    venv_bin = str(ROOT / ".venv" / "bin")
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS", "MFLAGS", "MAKELEVEL",
                        "ARGS", "PY")
           and not k.startswith(("QUANTPANEL_", "PYTEST_"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and os.path.realpath(p) != os.path.realpath(venv_bin))
    return env


@pytest.mark.timeout(900)
def test_make_run_fallback_path_on_a_fresh_clone(tmp_path, context) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    assert not (clone / ".venv").exists()

    port = free_port()
    dead_ws = f"ws://127.0.0.1:{free_port()}/stream"  # a port nothing listens on
    server = start_server(["make", "run", f"ARGS=--port {port} --ws-url {dead_ws}"],
                          cwd=clone, env=newcomer_env(), port=port, logs=tmp_path / "make-run")
    try:
        server.wait_http(INSTALL_TIMEOUT_S)
        assert (clone / ".venv" / "bin" / "quantpanel").exists(), "make run did not build the clone's venv"

        page = context.new_page()
        page.goto(server.url, timeout=90_000)
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))

        banner = wait_for_replay_banner(page, timeout=90)
        assert "Binance is not connected" in banner
        before, after = wait_for_growth(page, rows=5, timeout=30)
        assert after["total"] > before["total"], (before, after)
        st = status_strip(page)
        assert st.source == "REPLAY" and st.rate is not None, st.text
        assert navigations == [], navigations

        out = server.stdout() + server.stderr()
        assert f"quantpanel serving on http://127.0.0.1:{port} (source auto)" in out, server.output_tail()
        assert "live Binance unreachable" in out, server.output_tail()  # the fallback, not forced replay
        assert out.count("exchange listening on") == 1, server.output_tail()
        assert (clone / "data" / "replay.db").exists()  # the clone's own replay DB, not this repo's
    finally:
        server.stop()

"""The container, without a container engine: the Dockerfile's commands are the README's, what
it copies exists, and its CMD and HEALTHCHECK work when run directly from the repository root
(the image's WORKDIR holds the same files)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import urllib.request

import pytest

from tests.browser.helpers import ROOT, free_port, start_server

pytestmark = pytest.mark.timeout(180)

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instruction(name: str) -> str:
    """The last ``name`` instruction with its continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    lines = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    assert lines, f"no {name} in the Dockerfile"
    return lines[-1][len(name) + 1:].strip()


def test_dockerfile_commands_are_the_readmes_and_its_sources_exist():
    readme = (ROOT / "README.md").read_text()
    for cmd in ("docker build -t quantpanel .",
                "docker run -p 5006:5006 -v quantpanel-data:/data -e QP_ALLOW_ORIGIN=localhost:5006 quantpanel"):
        assert cmd in readme and cmd in DOCKERFILE, cmd
    assert re.match(r"python:3\.\d+-slim", instruction("FROM"))
    assert instruction("USER") != "root" and '"/data"' in instruction("VOLUME")
    for line in re.findall(r"^COPY (.+)$", DOCKERFILE, flags=re.M):
        *sources, _dest = line.split()
        for src in sources:
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    cmd = json.loads(instruction("CMD"))
    assert "--allow-websocket-origin ${QP_ALLOW_ORIGIN}" in cmd[-1] and "--address 0.0.0.0" in cmd[-1]
    assert "--liveness" in cmd[-1] and "--db-dir /data" in cmd[-1]
    # an upload of the default storage.max_upload_mb gets through, as under `quantpanel serve`
    from quantpanel.cli.serve import websocket_max_message_bytes
    from quantpanel.config import Config

    size = int(re.search(r"--websocket-max-message-size (\d+)", cmd[-1]).group(1))
    assert size >= websocket_max_message_bytes(Config()), size


def test_the_images_command_serves_and_passes_its_healthcheck(tmp_path):
    port = free_port()
    cmd = json.loads(instruction("CMD"))
    cmd[-1] = cmd[-1].replace("/data", shlex.quote(str(tmp_path / "data")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTPANEL_")}
    bindir = str(ROOT / ".venv" / "bin")
    env.update(QP_PORT=str(port), QP_ALLOW_ORIGIN=f"127.0.0.1:{port}",
               PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}")
    server = start_server(cmd, cwd=ROOT, env=env, port=port, logs=tmp_path / "logs", path="/app")
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.proc.poll() is None, server.output_tail()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/liveness", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"/liveness never answered\n{server.output_tail()}"
            time.sleep(0.5)
        health = instruction("HEALTHCHECK")
        check = health[health.index("CMD ") + 4:]
        rc = subprocess.run(["sh", "-c", check], env=env, cwd=ROOT, timeout=30).returncode
        assert rc == 0
    finally:
        server.stop()

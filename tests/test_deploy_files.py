"""compose.yaml and the Makefile, without a container engine: every command line in compose.yaml
parses with the parser of the program it runs (quantpanel's, Panel's, ``app_options``), the
dashboards follow the ingest through the same Redis and read the same SQLite file, and ``make
test`` installs redis-server as it installs chromium. (The Dockerfile itself: tests/test_container.py.)"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from typing import Any

import pytest
import yaml

from quantpanel.broker.keys import Keys
from quantpanel.cli.parser import build_parser
from quantpanel.cli.serve import _db_dir, app_options
from quantpanel.config import Config

from tests.test_container import DOCKERFILE, ROOT, instruction

BROKER = "redis://redis:6379/0"
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DASHBOARDS = {"dashboard-1": 5006, "dashboard-2": 5007}  # service: published host port
MAKEFILE = (ROOT / "Makefile").read_text()


@pytest.fixture(autouse=True)
def _as_in_the_image(monkeypatch):
    """Config resolved as in the image: from its WORKDIR (the repository's files), no QUANTPANEL_* set."""
    monkeypatch.chdir(ROOT)
    for name in ("QUANTPANEL_CONFIG", "QUANTPANEL_BROKER", "QUANTPANEL_SOURCE"):
        monkeypatch.delenv(name, raising=False)


def interpolate(text: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set in the environment: every variable used
    must have a default, so a bare ``docker compose up`` works."""
    def default(m: re.Match[str]) -> str:
        assert m.group(2) is not None, f"${{{m.group(1)}}} has no default"
        return m.group(2)

    out = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", default, text)
    assert "$" not in out.replace("$$", ""), f"unsupported interpolation in {text!r}"
    return out.replace("$$", "$")


def argv(service: str) -> list[str]:
    cmd = SERVICES[service]["command"]
    return [interpolate(a) for a in cmd] if isinstance(cmd, list) else shlex.split(interpolate(cmd))


def panel_parser() -> argparse.ArgumentParser:
    """``panel serve``'s own argument parser."""
    from panel.command.serve import Serve

    parser = argparse.ArgumentParser(prog="panel serve")
    Serve(parser)
    return parser


def test_the_services_are_built_from_the_dockerfile_not_pulled():
    assert {"redis", "ingest", *DASHBOARDS} <= set(SERVICES)
    for name, svc in SERVICES.items():
        # with `build`, compose builds the image when it is missing instead of pulling it
        assert svc.get("build") in (".", {"context": "."}), f"{name} is not built from the Dockerfile"
        assert svc.get("image") == "quantpanel", name
        # its own check: the image's HEALTHCHECK (a dashboard's /liveness) would fail redis and the ingest
        assert svc["healthcheck"]["test"], name
    # the image has redis-server (and redis-cli) for the redis service and `serve --workers`
    runs = re.findall(r"^RUN (.+)$", re.sub(r"\\\n\s*", " ", DOCKERFILE), flags=re.M)
    apt = [r for r in runs if "apt-get install" in r]
    assert len(apt) == 1 and "--no-install-recommends redis-server" in apt[0], runs
    assert apt[0].endswith("rm -rf /var/lib/apt/lists/*")


def test_redis_runs_without_persistence_and_is_checked_with_a_ping():
    cmd = argv("redis")
    assert cmd[0] == "redis-server"
    flags = dict(zip(cmd[1::2], cmd[2::2]))
    assert flags == {"--bind": "0.0.0.0", "--protected-mode": "no", "--save": "", "--appendonly": "no"}
    assert SERVICES["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in SERVICES["redis"]  # reachable on the compose network only


def test_the_ingest_command_parses_and_publishes_to_the_redis_service():
    cmd = argv("ingest")
    assert cmd[0] == "quantpanel"
    ns = build_parser().parse_args(cmd[1:])
    assert (ns.command, ns.broker, ns.db_dir, ns.source) == ("ingest", BROKER, "/data", "auto")
    assert "--source ${QUANTPANEL_SOURCE:-auto}" in SERVICES["ingest"]["command"]
    Config(broker={"url": ns.broker})  # a URL the config accepts
    svc = SERVICES["ingest"]
    assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    # healthy while its heartbeat is in Redis
    check = svc["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL" and "redis-cli -h redis" in check[1]
    assert Keys(Config().broker.prefix).status in check[1]


@pytest.mark.parametrize("service", sorted(DASHBOARDS))
def test_a_dashboard_follows_the_ingest_and_reads_its_database(service):
    cmd = argv(service)
    assert cmd[:3] == ["panel", "serve", "app.py"]
    ns = panel_parser().parse_args(cmd[2:])
    assert ns.files == ["app.py"] and ns.address == "0.0.0.0" and ns.liveness
    host_port = DASHBOARDS[service]
    assert SERVICES[service]["ports"] == [f"{host_port}:{ns.port}"]
    assert ns.allow_websocket_origin == [f"localhost:{host_port}"]  # the origin a browser on this host sends

    # the same server flags as the image's own CMD, but for the origin
    image = json.loads(instruction("CMD"))[-1].removeprefix("exec ")
    image = image.replace("${QP_PORT}", "5006").replace("${QP_ALLOW_ORIGIN}", "localhost:5006")
    ref = panel_parser().parse_args(shlex.split(image)[2:])
    for flag in ("address", "port", "websocket_max_message_size", "liveness"):
        assert getattr(ns, flag) == getattr(ref, flag), flag

    # the part after --args, as app.py reads it
    cfg, source = app_options(ns.args)
    assert cfg.broker.url == BROKER and source is None
    ingest = build_parser().parse_args(argv("ingest")[1:])
    assert str(cfg.storage.db_path) == _db_dir(ingest.db_dir)["storage.db_path"]  # the ingest's SQLite file

    svc = SERVICES[service]
    assert svc["depends_on"]["redis"]["condition"] == "service_healthy" and "ingest" in svc["depends_on"]
    check = svc["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    compile(check[3], "healthcheck", "exec")
    assert f"http://127.0.0.1:{ns.port}/{ns.liveness_endpoint}" in check[3]


def test_the_ingest_and_the_dashboards_share_the_data_volume():
    assert "quantpanel-data" in COMPOSE["volumes"]
    for name in ("ingest", *DASHBOARDS):
        assert "quantpanel-data:/data" in SERVICES[name]["volumes"], name


def recipe(target: str) -> str:
    m = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", MAKEFILE, flags=re.M)
    assert m, f"no {target} target in the Makefile"
    return m.group(1)


def test_make_test_installs_redis_server_as_it_installs_chromium():
    prereqs = re.search(r"^install-test:(.*)$", MAKEFILE, flags=re.M).group(1).split()
    assert {"chromium", "redis-server"} <= set(prereqs)
    assert re.search(r"^test: install-test\b", MAKEFILE, flags=re.M)
    phony = re.search(r"^\.PHONY:(.*)$", MAKEFILE, flags=re.M).group(1).split()
    assert "redis-server" in phony
    assert recipe("redis-server") == recipe("chromium").replace("chromium", "redis-server")
    assert recipe("run") == "\t$(BIN)/quantpanel serve $(ARGS)\n"


def test_the_readme_shows_the_scale_out_commands():
    readme = (ROOT / "README.md").read_text()
    for cmd in ("quantpanel ingest --broker", "quantpanel serve --broker", "quantpanel serve --workers",
                "docker compose up"):
        assert cmd in readme, cmd

"""Fixtures of the broker tests: a real ``redis-server`` on 127.0.0.1 (one per session; a test
that restarts Redis starts its own), a unique key prefix per test, and replay configs whose
databases live in tmp_path."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from quantpanel.broker.local import LocalRedis
from quantpanel.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    r = LocalRedis().start()  # a missing redis-server is a failure naming the package, not a skip
    yield r
    r.close()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def replay_tree(tmp_path: Path, prefix: str, url: str, **replay: Any) -> dict[str, Any]:
    """The repository's config.yaml on the bundled recording, databases in tmp_path, no alert
    toasts, a fast heartbeat."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["storage"]["db_path"] = str(tmp_path / "db" / "quantpanel.db")
    cfg["storage"]["replay_db_path"] = str(tmp_path / "db" / "replay.db")
    for key in ("data", "quotes", "spot"):
        cfg["replay"][key] = str(ROOT / cfg["replay"][key])
    cfg["replay"].update({"speed": 4, **replay})
    cfg["storage"]["bundled_ohlc_dir"] = str(ROOT / "data" / "ohlc")
    cfg["source"] = "replay"
    cfg["broker"] = {"url": url, "prefix": prefix, "heartbeat_s": 0.2, "offline_after_s": 1.5,
                     "command_timeout_s": 10}
    cfg["feed"].update({"backoff_initial_s": 0.1, "backoff_max_s": 0.5})
    return cfg


def write_config(tmp_path: Path, tree: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def config_of(tmp_path: Path, tree: dict[str, Any]) -> Config:
    return load_config(write_config(tmp_path, tree))

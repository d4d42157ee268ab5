"""Benchmark parts as real processes: spawn, read their output, stop them, read their CPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from quantpanel.broker.local import free_port  # one free-port probe for the bench and --workers

__all__ = ["Proc", "spawn", "free_port", "cpu_seconds", "wait_http", "served_app"]


@dataclass
class Proc:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _pos: int = 0  # lines before this one were matched already

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            for i, line in enumerate(self.lines[self._pos:], self._pos):
                if m := rx.search(line):
                    self._pos = i + 1
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"no line matching {pattern!r} within {timeout:.0f} s; output:\n"
                           + "\n".join(self.lines[-30:]))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def spawn(*args: str, env: dict[str, str] | None = None) -> Proc:
    return Proc(subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=env,
                                  stdin=subprocess.PIPE))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, timeout: float) -> None:
    """Until ``url`` answers (a server subprocess is up)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def app_config(tmp: Path, ws_url: str, symbols: Sequence[str]) -> Path:
    """A server's config for the bench: ``symbols`` live from the local exchange at ``ws_url`` on
    every route (bookTicker too: never Binance), no alert rules, databases in ``tmp``."""
    import yaml

    base = ws_url.rsplit("/", 1)[0]
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "symbols": list(symbols), "source": "live",
        "feed": {"ws_url": ws_url, "public_ws_url": base + "/public/stream",
                 "rest_url": base.replace("ws://", "http://")},
        "storage": {"db_path": str(tmp / "app.db"), "replay_db_path": str(tmp / "replay.db")},
        "alerts": {"rules": []},
    }))
    return cfg


@contextmanager
def served_app(tmp: Path, data: Path, symbols: Sequence[str],
               *exchange_args: str) -> Iterator[tuple[Proc, Proc, str, str]]:
    """`quantpanel exchange` replaying ``data`` and `quantpanel serve` ingesting it live (config
    and databases in ``tmp``, no alert rules), both as processes; yields (exchange, server,
    exchange stream URL, app URL) and stops both."""

    ex = spawn("-m", "quantpanel", "exchange", "--data", str(data), *exchange_args)
    server = None
    try:
        url = ex.wait_line(r"exchange listening on (\S+)", 60).group(1)
        port = free_port()
        cfg = app_config(tmp, url, symbols)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTPANEL_")}
        server = spawn("-m", "quantpanel", "--config", str(cfg), "serve", "--port", str(port), env=env)
        server.wait_line(r"quantpanel serving on", 60)
        wait_http(f"http://127.0.0.1:{port}/static/js/bokeh.min.js", 60)
        yield ex, server, url, f"http://127.0.0.1:{port}/"
    finally:
        for p in (server, ex):
            if p:
                p.stop()

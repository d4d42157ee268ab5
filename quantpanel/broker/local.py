"""A private ``redis-server`` on 127.0.0.1: for ``serve --workers N`` and the broker tests.

No persistence (``--save ""``, no AOF): the SQLite store is the truth, Redis only carries what the
ingest publishes, and the publisher refills a restarted, empty Redis from its buffers.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from quantpanel.errors import QuantPanelError

__all__ = ["LocalRedis", "free_port", "die_with_parent"]


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the process that started it dies, however it
    dies (Linux ``PR_SET_PDEATHSIG``), so a killed ``serve --workers`` leaves no redis or ingest."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not Linux: the parent's own clean-up still runs
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRedis:
    """``start()`` runs ``redis-server`` on ``port`` (any free one by default) until ``stop()``."""

    def __init__(self, port: int = 0, *, binary: str = "redis-server") -> None:
        path = shutil.which(binary)
        if path is None:
            raise QuantPanelError(f"{binary} not found on PATH: install Debian's redis-server package "
                                  "(apt-get install redis-server), or pass --broker redis://HOST:PORT/0")
        self.binary, self.port = path, port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="quantpanel-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0, *, owned: bool = False) -> LocalRedis:
        """``owned``: it dies with this process (``die_with_parent``)."""
        log = Path(self._dir.name) / "redis.log"
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir.name, "--logfile", str(log), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent if owned else None)
        atexit.register(self.stop)  # its own session: nothing else stops it when we exit
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = log.read_text(errors="replace")[-500:] if log.exists() else ""
                raise QuantPanelError(f"redis-server on port {self.port} exited at start: {text.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise QuantPanelError(f"redis-server on port {self.port} did not answer within {timeout_s:g} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL (a crash, for the failure tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

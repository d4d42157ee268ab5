"""POST each alert as JSON to a URL from a background thread: ingestion never waits for it.

A bounded queue sits between the pipeline and the thread; when the endpoint is slower than the
alerts, the oldest queued ones are dropped and counted rather than blocking or growing memory.
Each POST has a timeout and is retried with exponential backoff; failures are logged and counted.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

from quantpanel.alerts.engine import Alert

__all__ = ["Webhook", "WebhookStats"]

log = logging.getLogger(__name__)
_STOP = object()


@dataclass
class WebhookStats:
    sent: int = 0
    failed: int = 0  # alerts given up on after every retry
    retries: int = 0
    dropped: int = 0  # queue full: the oldest alert was dropped
    last_error: str = ""


class Webhook:
    def __init__(self, url: str, *, timeout_s: float = 5.0, retries: int = 3, queue_max: int = 1000,
                 backoff_s: float = 0.5) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.stats = WebhookStats()
        self._q: queue.Queue[object] = queue.Queue(maxsize=queue_max)
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="quantpanel-webhook", daemon=True)
        self._thread.start()

    def put(self, alerts: list[Alert]) -> None:
        """Queue alerts for delivery; never blocks."""
        for a in alerts:
            self._idle.clear()
            while True:
                try:
                    self._q.put_nowait(a)
                    break
                except queue.Full:
                    try:
                        self._q.get_nowait()
                        self.stats.dropped += 1
                    except queue.Empty:
                        pass

    def drain(self, timeout: float) -> bool:
        """Wait until every queued alert was delivered or given up on (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._q.empty() and self._idle.wait(0.05):
                return True
        return False

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._q.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            self._deliver(item)  # type: ignore[arg-type]
            if self._q.empty():
                self._idle.set()

    def _deliver(self, alert: Alert) -> None:
        # alerts only fire on finite values, and thresholds are validated finite
        body = json.dumps({"type": "alert", **asdict(alert)}).encode()
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "quantpanel-alerts"})
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    resp.read()
                self.stats.sent += 1
                return
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                self.stats.last_error = f"{self.url}: {exc}"
                if attempt < self.retries:
                    self.stats.retries += 1
                    time.sleep(self.backoff_s * 2 ** attempt)
        self.stats.failed += 1
        log.warning("webhook gave up on alert %r after %d attempts: %s", alert.rule,
                    self.retries + 1, self.stats.last_error)


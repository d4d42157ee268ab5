"""Helpers for the browser tests: servers as subprocesses, and reading the page's state.

Panel renders every pane inside a shadow root, so text is read through Playwright locators (which
pierce open shadow roots) or from the host's ``shadowRoot`` in JS, never from ``innerText`` of the
host element (always empty).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
REPLAY_DATA = ROOT / "data" / "replay" / "binance-usdm-btcusdt-ethusdt-2024-08-08.trades.gz"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(fetch: Callable[[], T], ok: Callable[[T], bool], timeout: float, what: str,
         interval: float = 0.5, wait: Callable[[float], None] | None = None) -> T:
    """Call ``fetch`` until ``ok(value)`` or the deadline; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    value = fetch()
    while not ok(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; "
                                 f"last value: {value!r}")
        (wait or time.sleep)(interval)
        value = fetch()
    return value


# -- servers ------------------------------------------------------------------------------------
@dataclass
class Server:
    """A server subprocess in its own process group, its output captured to files."""

    proc: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path
    path: str = "/"
    _files: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output_tail(self, chars: int = 4000) -> str:
        return (f"--- stdout ---\n{self.stdout()[-chars:]}\n"
                f"--- stderr ---\n{self.stderr()[-chars:]}")

    def wait_http(self, timeout: float) -> None:
        """Until the server answers 200; fails at once if the process exits.

        Polls a static file, not the page: every GET of the page builds a whole session document
        (seconds of server CPU) that no browser would ever connect to.
        """
        deadline = time.monotonic() + timeout
        probe = f"http://127.0.0.1:{self.port}/static/js/bokeh.min.js"
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"server exited with status {rc} before serving {self.url}\n"
                                     f"{self.output_tail()}")
            try:
                with urllib.request.urlopen(probe, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.url} did not answer within {timeout:.0f} s\n"
                                     f"{self.output_tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Terminate the whole process group (make and its children too)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        else:  # the leader is gone; stragglers of its group may not be
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for f in self._files:
            f.close()


def start_server(cmd: list[str], *, cwd: Path, env: dict[str, str], port: int, logs: Path,
                 path: str = "/") -> Server:
    logs.mkdir(parents=True, exist_ok=True)
    out = open(logs / "stdout.log", "wb")
    err = open(logs / "stderr.log", "wb")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    return Server(proc, port, logs / "stdout.log", logs / "stderr.log", path, [out, err])


def children(pid: int) -> list[int]:
    """The pids ``pid`` started that still exist (Linux /proc)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie, exited but not reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on (Linux /proc; the process must be ours)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


# -- the page -----------------------------------------------------------------------------------
# Rows of every Bokeh ColumnDataSource in the page. Class names are minified in BokehJS, so the
# model's `type` (its Python-side name) identifies it. `max` is the largest source: a closed-bar
# buffer (a forming-bar source holds at most one row).
CDS_ROWS_JS = """() => {
  if (!window.Bokeh || !Bokeh.documents) return {docs: 0, sources: 0, total: 0, max: 0};
  let total = 0, max = 0, sources = 0;
  for (const doc of Bokeh.documents)
    for (const m of doc._all_models.values())
      if (m.type === 'ColumnDataSource') {
        const n = m.get_length() || 0;
        sources += 1; total += n; max = Math.max(max, n);
      }
  return {docs: Bokeh.documents.length, sources, total, max};
}"""

SHADOW_TEXT_JS = """(e) => {
  const root = e.shadowRoot || e;
  return [...root.children]
    .filter(c => !['STYLE', 'LINK', 'SCRIPT'].includes(c.tagName))
    .map(c => c.innerText || c.textContent || '').join('\\n').trim();
}"""


SOURCE_JS = """(cols) => {
  if (!window.Bokeh || !Bokeh.documents) return null;
  for (const d of Bokeh.documents)
    for (const m of d._all_models.values()) {
      if (m.type !== 'ColumnDataSource') continue;
      const data = m.data instanceof Map ? Object.fromEntries(m.data) : m.data;
      if (cols.every(c => data[c] !== undefined)) {
        const out = {};
        for (const [k, v] of Object.entries(data))
          if (v && v.length !== undefined) out[k] = Array.from(v).map(x => (typeof x === 'number' && Number.isNaN(x)) ? null : x);
        return out;
      }
    }
  return null;
}"""


def source(page: Any, *cols: str) -> dict[str, list[Any]]:
    """Columns of the first Bokeh data source that has all ``cols`` ({} while there is none);
    NaN as None."""
    return page.evaluate(SOURCE_JS, list(cols)) or {}


COLUMN_COUNTS_JS = """(col) => {
  const out = [];
  for (const d of Bokeh.documents) for (const m of d._all_models.values())
    if (m.type === 'ColumnDataSource') {
      const data = m.data instanceof Map ? Object.fromEntries(m.data) : m.data;
      if (data[col] !== undefined)
        out.push(Array.from(data[col]).filter(x => x !== null && !(typeof x === 'number' && Number.isNaN(x))).length);
    }
  return out;
}"""


def column_counts(page: Any, col: str) -> list[int]:
    """Non-null values of ``col`` in every data source that has it (charts share column names)."""
    return page.evaluate(COLUMN_COUNTS_JS, col)


def cds_rows(page: Any) -> dict[str, int]:
    return page.evaluate(CDS_ROWS_JS)


# Every drawn figure's x range and the newest time its glyphs hold (ms; the candle bodies' right
# edge is the bar's time + 40 % of a bar).
X_RANGES_JS = """() => {
  const out = [];
  for (const d of Bokeh.documents) for (const m of d._all_models.values()) {
    if (!m.x_range || !m.renderers || m.x_range.start === undefined) continue;
    let newest = null;
    for (const r of m.renderers) {
      const data = r.data_source && r.data_source.data;
      if (!data) continue;
      for (const k of ['time', 'right']) {
        const col = data[k];
        if (col && col.length) newest = Math.max(newest === null ? -Infinity : newest, ...Array.from(col));
      }
    }
    if (newest !== null) out.push({start: m.x_range.start, end: m.x_range.end, newest});
  }
  return out;
}"""


def x_ranges(page: Any) -> list[dict[str, float]]:
    return page.evaluate(X_RANGES_JS)


def pane_text(page: Any, css_class: str) -> str:
    """Visible text of the Panel pane carrying ``css_class`` ('' while it is not rendered)."""
    loc = page.locator(f".{css_class}")
    if loc.count() == 0:
        return ""
    return loc.first.evaluate(SHADOW_TEXT_JS)


@dataclass(frozen=True)
class StatusStrip:
    source: str | None
    state: str | None
    rate: float | None  # ticks/s
    ticks: int | None
    text: str


def status_strip(page: Any) -> StatusStrip:
    text = pane_text(page, "qp-status")
    src = page.locator(".qp-status b[data-source]")
    source = src.first.get_attribute("data-source") if src.count() else None
    state = page.locator(".qp-status .qp-state")
    rate_el = page.locator(".qp-status .qp-rate")
    rate = None
    if rate_el.count():
        raw = (rate_el.first.text_content() or "").replace(",", "").strip()
        rate = float(raw) if re.fullmatch(r"\d+(\.\d+)?", raw) else None
    m = re.search(r"([\d,]+) ticks\b(?!/)", text)
    return StatusStrip(source, state.first.text_content() if state.count() else None, rate,
                       int(m.group(1).replace(",", "")) if m else None, text)


def _sleeper(page: Any) -> Callable[[float], None]:
    """Wait through Playwright (its event loop keeps running), not time.sleep."""
    return lambda seconds: page.wait_for_timeout(seconds * 1000)


def wait_for_replay_banner(page: Any, timeout: float = 60) -> str:
    return poll(lambda: pane_text(page, "qp-source-banner"),
                lambda t: t.startswith("REPLAY") and "REAL recorded data" in t,
                timeout, "the REPLAY banner saying REAL recorded data", wait=_sleeper(page))


def wait_for_growth(page: Any, *, rows: int, timeout: float) -> tuple[dict[str, int], dict[str, int]]:
    """Poll the page's data sources until the largest one gained ``rows`` rows (no reload)."""
    before = cds_rows(page)
    after = poll(lambda: cds_rows(page), lambda r: r["max"] >= before["max"] + rows, timeout,
                 f"the charts to gain {rows} rows (started at {before})",
                 wait=_sleeper(page))
    return before, after

"""Tick-to-browser latency with 1, 5 and 20 sessions, and the server's CPU per session.

Everything runs as it does for users, each part in its own process: the local exchange replays
*simulated* probe trades (labelled so) at ``rate_hz`` per symbol; `quantpanel serve` ingests them
live; an observer connected to the exchange like the server notes when each probe trade is on the
wire. Probe prices count up (10000.0, 10000.1, ...), so the price a session shows identifies the
trade, and its latency is the moment the session's document holds that price minus the moment the
observer received the trade. A few sessions are real headless Chromium pages (Debian's chromium,
their documents polled every 5 ms); the rest are Bokeh client sessions (``bokeh.client``) that
sync the document without rendering, in one separate process.

Server CPU is read from /proc for the server process alone: with no session open (ingest only)
and with each session count; per session = (with n - with none) / n.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from itertools import pairwise
from pathlib import Path
from typing import Any

from quantpanel.bench.probe import Observer, parse_shown_price, write_probe_capture
from quantpanel.bench.procs import Proc, cpu_seconds, served_app, spawn

__all__ = ["run_push_bench", "format_push", "run_stages", "probe_stack", "probe_capture", "open_pages",
           "wait_for_probe", "cpu_rate", "Pages", "SYMBOLS", "PROBE_REPLAY"]

SYMBOLS = ("BTCUSDT", "ETHUSDT")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
_LABEL = "BTCUSDT last"


# -- Chromium pages ---------------------------------------------------------------------------------
_WATCH_JS = """(label) => {
  if (!window.Bokeh || !Bokeh.documents || !Bokeh.documents.length) return false;
  for (const d of Bokeh.documents) for (const m of d._all_models.values()) {
    if (typeof m.text === 'string' && m.text.includes(label)) {
      if (window.__qp) return true;
      window.__qp = [];
      let last = m.text;
      setInterval(() => { if (m.text !== last) { last = m.text; window.__qp.push([Date.now(), last]); } }, 5);
      return true;
    }
  }
  return false;
}"""


class Pages:
    """Headless Debian chromium pages, each one session; unavailable without playwright."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.pages: list[Any] = []

    def open(self, url: str) -> None:
        page = self._browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, timeout=120_000)
        deadline = time.monotonic() + 120
        while not page.evaluate(_WATCH_JS, _LABEL):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}: the price card never appeared")
            page.wait_for_timeout(200)
        self.pages.append(page)

    def idle(self, seconds: float) -> None:
        """Let the pages run (Playwright's sync API needs its own wait)."""
        if self.pages:
            self.pages[0].wait_for_timeout(seconds * 1000)
        else:
            time.sleep(seconds)

    def samples(self) -> list[tuple[float, str]]:
        out: list[tuple[float, str]] = []
        for p in self.pages:
            out += [(t / 1000, text) for t, text in p.evaluate("() => window.__qp || []")]
        return out

    def open_cost(self, url: str, pid: int, *, runs: int = 3, base_s: float = 3.0) -> list[float]:
        """Server CPU (ms) to open one more page, ``runs`` times: the CPU while it opens, less
        what the server spent at the rate it ran just before (ingest and the sessions already
        open). The extra pages are closed afterwards."""
        out = []
        extra = []
        for _ in range(runs):
            c0, w0 = cpu_seconds(pid), time.monotonic()
            self.idle(base_s)
            rate = (cpu_seconds(pid) - c0) / (time.monotonic() - w0)
            c1, w1 = cpu_seconds(pid), time.monotonic()
            self.open(url)
            self.idle(1.0)  # its first pulls after the page reported ready
            out.append(((cpu_seconds(pid) - c1) - rate * (time.monotonic() - w1)) * 1000)
            extra.append(self.pages.pop())
        for page in extra:
            with suppress(Exception):
                page.close()
        return out

    def close(self) -> None:
        with suppress(Exception):
            self._browser.close()
        with suppress(Exception):
            self._pw.stop()


# -- Bokeh client sessions (run in their own process: python -m quantpanel.bench.push) -----------
def client_sessions(url: str, stages: list[int]) -> None:
    """Open ``stages[0]`` sessions, print ``ready N`` (N open), watch until a ``next`` line on
    stdin, open the next stage's sessions, and so on until ``stop``. Every price-card change
    seen is printed at once as ``sample [time, text]``: nothing is lost if the process is stopped
    while a stage is still opening sessions (they keep being read meanwhile).

    bokeh.client has no public multi-session loop: all sessions share one IOLoop, and each
    connection is read by a plain loop of ours that applies every PATCH-DOC and notes price-card
    changes. (Bokeh's own read loop recurses once per message: after a few hundred messages it
    hits the recursion limit and stops reading, and the server then buffers for it forever.)
    """
    import panel.models  # Panel's Bokeh models, to decode its documents
    import panel.models.tabulator  # noqa: F401
    from bokeh.client import pull_session
    from bokeh.events import DocumentReady
    from tornado.ioloop import IOLoop

    loop = IOLoop()
    sessions: list[Any] = []
    commands: list[str] = []
    threading.Thread(target=lambda: commands.extend(line.strip() for line in sys.stdin),
                     daemon=True).start()

    def pump(seconds: float) -> None:
        loop.call_later(seconds, loop.stop)
        loop.start()

    async def read(connection: Any, model: Any) -> None:
        last = model.text
        while (message := await connection._pop_message()) is not None:
            if message.msgtype == "PATCH-DOC":
                connection._session._handle_patch(message)
                if model.text != last:
                    last = model.text
                    print("sample " + json.dumps([time.time(), last]), flush=True)

    for i, n in enumerate(stages):
        if i:
            while not commands:
                pump(0.2)
            commands.pop(0)
        for _ in range(n):
            s = pull_session(url=url, io_loop=loop)
            model = next(m for m in s.document.models if _LABEL in str(getattr(m, "text", "")))
            s.document.callbacks.send_event(DocumentReady())  # Panel runs onload callbacks on it
            loop.add_callback(read, s._connection, model)
            sessions.append(s)
            print(f"opened {len(sessions)}", flush=True)
            pump(0.2)
        pump(3.0)  # let the new sessions catch up before the stage is measured
        print(f"ready {len(sessions)}", flush=True)
    while "stop" not in commands:
        pump(0.2)
    for s in sessions:
        with suppress(Exception):
            s.close()


# -- the benchmark ----------------------------------------------------------------------------------
def _latencies(samples: list[tuple[float, str]], received: dict[int, float],
               window: tuple[float, float]) -> list[float]:
    out = []
    for t, text in samples:
        if not window[0] <= t <= window[1]:
            continue
        k = parse_shown_price(text)
        if k is not None and k in received:
            out.append((t - received[k]) * 1000)
    return out


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]


def probe_capture(tmp: Path, rate_hz: float, seconds: float) -> Path:
    """The probe's capture in ``tmp`` (``seconds`` of it at ``rate_hz`` per symbol)."""
    capture = tmp / "probe.jsonl"
    write_probe_capture(capture, seconds, rate_hz)
    return capture


#: How `quantpanel exchange` replays the probe: in real time, stamped now, never waiting for a reader.
PROBE_REPLAY = ("--speed", "1", "--rebase-to-now", "--free-run")


@contextmanager
def probe_stack(tmp: Path, rate_hz: float, seconds: float) -> Iterator[tuple[Proc, Proc, str, Observer]]:
    """The exchange replaying the probe, `quantpanel serve` ingesting it, an observer on the
    exchange: (exchange, server, app URL, observer)."""
    capture = probe_capture(tmp, rate_hz, seconds)
    with served_app(tmp, capture, SYMBOLS, *PROBE_REPLAY) as (ex, server, ws, url):
        observer = Observer(ws)
        try:
            yield ex, server, url, observer
        finally:
            observer.stop()


def open_pages() -> Pages | None:
    """Chromium pages when Debian's chromium and Playwright are there (else client sessions only)."""
    if not Path(CHROMIUM).exists():
        return None
    try:
        return Pages()
    except ImportError:
        return None


def wait_for_probe(obs: Observer, rate_hz: float, timeout_s: float = 60) -> None:
    """Until the probe trades flow (three seconds of them on the wire), then three more seconds:
    the server ingesting before anything is measured."""
    deadline = time.monotonic() + timeout_s
    while len(obs.received) < rate_hz * 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)


def cpu_rate(cpu: Callable[[], float], seconds: float) -> float:
    """CPU seconds per second that ``cpu`` (a CPU-seconds reader) counts over ``seconds``."""
    c0, w0 = cpu(), time.monotonic()
    time.sleep(seconds)
    return (cpu() - c0) / (time.monotonic() - w0)


def run_stages(url: str, obs: Observer, counts: tuple[int, ...], *, pages: Pages | None,
               chromium_pages: int, cpu: Callable[[], float], idle_cpu: float, measure_s: float,
               open_timeout_s: float, open_s_per_session: float,
               after_first: Callable[[Pages], None] | None = None,
               extra: Callable[[], dict[str, Any]] | None = None,
               stop: Callable[[int, dict[str, Any]], bool] | None = None,
               first_measure_s: float | None = None) -> dict[str, dict[str, Any]]:
    """Open sessions on ``url`` in stages (``counts``: sessions open in each), then measure each
    stage for ``measure_s``: tick-to-document latency against ``obs`` and the CPU ``cpu`` counts
    (``idle_cpu``: its rate with no session). Up to ``chromium_pages`` of the sessions are Chromium
    pages, the rest Bokeh client sessions in one separate process. ``after_first`` runs after the
    first stage is measured (with the pages); ``extra()`` adds to each stage's figures; a stage for
    which ``stop(n, figures)`` is true is the last; ``first_measure_s``: the first stage's length
    (its few samples make a p99 of one session noisy). ``updates_per_session_s``: how often a
    session's price card changed (the server coalesces what a busy session is sent). A stage whose
    sessions do not all open within ``open_timeout_s`` plus ``open_s_per_session`` per new session
    is measured with those open, and is the last (the bench stays within its time)."""
    out: dict[str, dict[str, Any]] = {}
    n_pages = [min(n, chromium_pages) if pages else 0 for n in counts]
    n_clients = [n - p for n, p in zip(counts, n_pages, strict=True)]
    stages = [n_clients[0]] + [b - a for a, b in pairwise(n_clients)]
    clients = None
    if any(n_clients):
        clients = spawn("-m", "quantpanel.bench.push", "clients", url, ",".join(map(str, stages)))
    opened_pages = 0
    try:
        for i, n in enumerate(counts):
            t_open = time.monotonic()
            try:
                while pages and opened_pages < n_pages[i]:
                    pages.open(url)
                    opened_pages += 1
                if clients:
                    if i:
                        clients.send("next")
                    clients.wait_line(rf"^ready {n_clients[i]}$",
                                      open_timeout_s + open_s_per_session * stages[i])
            except RuntimeError:  # the server could not open them all in time: measure those open
                opened = [int(x.split()[1]) for x in clients.lines if x.startswith("opened ")] if clients else []
                n_open = min(n, opened_pages + max(opened, default=0))
            else:
                n_open = n
            open_s = time.monotonic() - t_open
            if pages:
                pages.idle(1.0)
            length = first_measure_s if i == 0 and first_measure_s else measure_s
            c0, w0, wall0 = cpu(), time.monotonic(), time.time()
            (pages.idle if pages else time.sleep)(length - 1.5)
            used = (cpu() - c0) / (time.monotonic() - w0)
            window = (wall0, time.time())
            r = out[str(n)] = {  # a count repeated in `counts` shares one entry
                "chromium_pages": n_pages[i], "client_sessions": n_open - n_pages[i],
                "sessions_open": n_open, "open_s": round(open_s, 2),
                "server_cpu_pct": round(used * 100, 1),
                "server_cpu_per_session_pct": round((used - idle_cpu) * 100 / max(n_open, 1), 2),
                "loadavg": os.getloadavg()[0],
            }
            lat_pages = _latencies(pages.samples() if pages else [], obs.received, window)
            client_samples = [tuple(json.loads(x[7:])) for x in list(clients.lines)
                              if x.startswith("sample ")] if clients else []
            lat_clients = _latencies(client_samples, obs.received, window)
            both = lat_pages + lat_clients
            r.update({
                "samples": len(both), "client_samples": len(lat_clients),
                "updates_per_session_s": round(len(both) / max(n_open, 1) / (window[1] - window[0]), 1),
                "latency_p50_ms": _round(_pct(both, 0.5)), "latency_p90_ms": _round(_pct(both, 0.9)),
                "latency_p99_ms": _round(_pct(both, 0.99)), "latency_max_ms": _round(_pct(both, 1.0)),
                "chromium_p50_ms": _round(_pct(lat_pages, 0.5)),
                "chromium_p99_ms": _round(_pct(lat_pages, 0.99)),
            })
            if extra:
                r.update(extra())
            if i == 0 and pages and after_first:
                after_first(pages)
            if n_open < n:  # the rest were still opening while this was measured
                r["note"] = f"only {n_open} of {n} sessions opened within {open_s:.0f} s; measured with those open"
                break
            if stop and stop(n, r):
                break
    finally:
        if clients:
            with suppress(OSError):  # it may have died
                clients.send("stop")
            stuck = any("note" in r for r in out.values())  # still opening one
            with suppress(subprocess.TimeoutExpired):
                clients.proc.wait(5 if stuck else 60)
            clients.stop()
    return out


def run_push_bench(*, counts: tuple[int, ...] = (1, 5, 20, 50), chromium_pages: int = 2,
                   measure_s: float = 10.0, rate_hz: float = 20.0,
                   open_timeout_s: float = 20.0, open_s_per_session: float = 3.0) -> dict[str, Any]:
    """Latency p50/p99 and server CPU per session for each session count in ``counts``; the
    server CPU to open one session (Chromium pages opened after the first stage's); one chart
    refresh against raw Bokeh (``refresh``, in this process). Stages as ``run_stages``."""
    from quantpanel.bench.refresh import run_refresh_bench

    res: dict[str, Any] = {"data": f"simulated probe trades, {rate_hz:g}/s per symbol x {len(SYMBOLS)}",
                           "measure_s": measure_s, "sessions": {}}
    res["refresh"] = run_refresh_bench(updates=100, runs=3)  # before the servers: a quiet machine
    res["refresh_vs_raw_bokeh"] = res["refresh"]["refresh_vs_raw_bokeh"]
    with tempfile.TemporaryDirectory(prefix="qp-push-") as tmp_, \
            probe_stack(Path(tmp_), rate_hz, 60 + measure_s * (len(counts) + 1) * 3 + 600) as (_ex, server, url, obs):
        pid = server.proc.pid
        pages = open_pages()
        res["chromium"] = pages is not None
        try:
            # `quantpanel serve` starts ingesting with the server: first, ingest alone, no session
            wait_for_probe(obs, rate_hz)
            idle_cpu = cpu_rate(lambda: cpu_seconds(pid), measure_s / 2)
            res["server_cpu_no_session_pct"] = round(idle_cpu * 100, 1)

            def open_cost(p: Pages) -> None:
                costs = p.open_cost(url, pid)
                res["session_open_cpu_ms_runs"] = [round(c) for c in costs]
                res["session_open_cpu_ms"] = round(sorted(costs)[len(costs) // 2])

            res["sessions"] = run_stages(url, obs, counts, pages=pages, chromium_pages=chromium_pages,
                                         cpu=lambda: cpu_seconds(pid), idle_cpu=idle_cpu, measure_s=measure_s,
                                         open_timeout_s=open_timeout_s, open_s_per_session=open_s_per_session,
                                         after_first=open_cost)
        finally:
            if pages:
                pages.close()
    return res


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def format_push(r: dict[str, Any]) -> str:
    f = r["refresh"]
    lines = [(f"push: tick -> browser document ({r['data']}; server CPU ingesting with no session "
              f"{r['server_cpu_no_session_pct']} %)"),
             (f"  one chart refresh (candles + volume, 1 new bar of 600): dashboard {f['dashboard_cpu_ms']} ms,"
              f" HoloViews re-render {f['holoviews_cpu_ms']} ms, raw Bokeh stream {f['raw_bokeh_cpu_ms']} ms"
              f" -> {f['refresh_vs_raw_bokeh']}x raw"),
             (f"  opening one session: {r.get('session_open_cpu_ms')} ms server CPU "
              f"(runs {r.get('session_open_cpu_ms_runs')})")]
    for n, s in r["sessions"].items():
        lines.append(
            f"  {n:>2} sessions ({s['chromium_pages']} chromium + {s['client_sessions']} client)"
            f"  p50 {s['latency_p50_ms']} ms  p90 {s['latency_p90_ms']} ms  p99 {s['latency_p99_ms']} ms"
            f"  (chromium p99 {s['chromium_p99_ms']} ms)  server CPU {s['server_cpu_pct']} %,"
            f" {s['server_cpu_per_session_pct']} % per session, {s['samples']} samples, opened in {s['open_s']} s"
            + (f"  [{s['note']}]" if "note" in s else ""))
    return "\n".join(lines)


def _main(argv: list[str]) -> int:
    if argv[:1] == ["clients"]:
        client_sessions(argv[1], [int(x) for x in argv[2].split(",")])
        return 0
    print(format_push(run_push_bench()))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

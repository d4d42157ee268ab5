"""What the Redis broker (issue 17) costs and buys: tick-to-browser latency through it, and how many
sessions ``serve --workers 2`` holds within a latency target against one process.

The push bench's probe and sessions (``push.run_stages``), served three ways, each part a real
process as users run it, the exchange replaying the same simulated probe capture to each:

- in process: ``quantpanel serve`` ingesting the exchange itself (what the push bench measures);
- via the broker: a private ``redis-server``, ``quantpanel ingest --broker URL`` on the exchange
  and ``quantpanel serve --broker URL``: the difference is the broker's added latency;
- ``quantpanel serve --workers 2``: its own redis-server and ingest, two dashboard processes on one
  port; the kernel hands each connection to one of them (their connection counts are reported).

The sessions part climbs a ladder of session counts on one server and stops at the first count
whose p99 misses the target (the larger ones would too); the answer is the largest count before it.
CPU figures are of every process that serves (ingest, Redis and dashboards), not the exchange's.
The sessions' clients (one Python process of Bokeh client sessions, a Chromium page) run on the
same machine: on 2 cores they share the CPU with the servers, so near the ladder's top the harness
runs short too (``updates_per_session_s`` falls as the server coalesces what each session is sent).
Nothing here is asserted: the figures are for people.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any

from quantpanel.bench.probe import Observer
from quantpanel.bench.procs import Proc, app_config, cpu_seconds, free_port, spawn, wait_http
from quantpanel.bench.push import (
    PROBE_REPLAY,
    SYMBOLS,
    cpu_rate,
    open_pages,
    probe_capture,
    probe_stack,
    run_stages,
    wait_for_probe,
)

__all__ = ["run_broker_bench", "format_broker", "LATENCY_TARGET_MS", "LADDER"]

#: The per-session target the sessions part holds to: the push bench's p99 target at 20 sessions.
LATENCY_TARGET_MS = 500.0
LADDER = (5, 10, 20, 40)

#: Where a stack's figures come from: (app URL, observer, CPU seconds of its serving processes,
#: extra figures per stage).
Stack = tuple[str, Observer, Callable[[], float], Callable[[], dict[str, Any]] | None]


# -- processes -------------------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc (a process gone meanwhile is skipped)."""
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            with suppress(OSError, IndexError, ValueError):
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
                out.setdefault(ppid, []).append(int(d))
    return out


def _family(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _cpu_of(pids: Callable[[], list[int]]) -> Callable[[], float]:
    """A reader of the CPU seconds of ``pids()`` so far; a process that exited counts what it
    had when last read (so the figure never goes back)."""
    last: dict[int, float] = {}

    def read() -> float:
        for p in pids():
            with suppress(OSError):
                last[p] = cpu_seconds(p)
        return sum(last.values())
    return read


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _workers(serve: Proc) -> list[int]:
    """The forked dashboard processes of ``serve --workers``: its children running its command
    line (not the ingest or redis-server)."""
    cmdline = Path(f"/proc/{serve.proc.pid}/cmdline").read_bytes()
    out = []
    for p in _children().get(serve.proc.pid, []):
        with suppress(OSError):
            if Path(f"/proc/{p}/cmdline").read_bytes() == cmdline:
                out.append(p)
    return sorted(out)


def _connections(pids: list[int], port: int) -> list[int]:
    """Established TCP connections on local ``port`` held by each of ``pids`` (the sessions'
    websockets, and any HTTP keep-alive): how the kernel spread the sessions."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f[9])
    out = []
    for p in pids:
        n = 0
        with suppress(OSError):
            for fd in os.listdir(f"/proc/{p}/fd"):
                with suppress(OSError):
                    link = os.readlink(f"/proc/{p}/fd/{fd}")
                    n += link.startswith("socket:[") and link[8:-1] in inodes
        out.append(n)
    return out


def _stop_workers(serve: Proc) -> None:
    """Stop ``serve --workers`` as Ctrl-C does: SIGINT to each dashboard process (they exit 0,
    so the parent does not restart them and, once all are gone, stops its ingest and Redis),
    then to the parent. Whatever of the family is left is terminated, then killed."""
    family = _family(serve.proc.pid)
    for p in _workers(serve):
        with suppress(ProcessLookupError):
            os.kill(p, signal.SIGINT)
    try:
        serve.proc.wait(30)
    except subprocess.TimeoutExpired:
        serve.proc.send_signal(signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            serve.proc.wait(30)
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        left = [p for p in family if _alive(p)]
        for p in left:
            with suppress(ProcessLookupError):
                os.kill(p, sig)
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in left) and time.monotonic() < deadline:
            time.sleep(0.1)
    serve.stop()  # reaps it


# -- the stacks ------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("QUANTPANEL_")}


@contextmanager
def broker_stack(tmp: Path, rate_hz: float, seconds: float, *, workers: int = 0) -> Iterator[Stack]:
    """The exchange replaying the probe, an observer on it, and the dashboard fed through Redis:
    ``workers=0``: a private redis-server (this process's), ``quantpanel ingest --broker`` and
    ``quantpanel serve --broker``; ``workers=N``: ``quantpanel serve --workers N`` alone."""
    from quantpanel.broker.local import LocalRedis

    capture = probe_capture(tmp, rate_hz, seconds)
    procs: list[Proc] = []
    redis: LocalRedis | None = None
    serve: Proc | None = None
    observer: Observer | None = None
    try:
        ex = spawn("-m", "quantpanel", "exchange", "--data", str(capture), *PROBE_REPLAY)
        procs.append(ex)
        ws = ex.wait_line(r"exchange listening on (\S+)", 60).group(1)
        cfg, port = app_config(tmp, ws, SYMBOLS), free_port()
        base = ["-m", "quantpanel", "--config", str(cfg)]
        extra: Callable[[], dict[str, Any]] | None = None
        if workers:
            serve = spawn(*base, "serve", "--port", str(port), "--workers", str(workers), env=_env())
            serving = serve
            cpu = _cpu_of(lambda: _family(serving.proc.pid))

            def spread() -> dict[str, Any]:
                return {"connections_per_worker": _connections(_workers(serving), port)}
            extra = spread
        else:
            redis = LocalRedis().start()
            ingest = spawn(*base, "ingest", "--broker", redis.url, env=_env())
            procs.append(ingest)
            ingest.wait_line(r"quantpanel ingest: .* publishing to", 60)
            serve = spawn(*base, "serve", "--port", str(port), "--broker", redis.url, env=_env())
            procs.append(serve)
            assert redis.proc is not None
            pids = [ingest.proc.pid, serve.proc.pid, redis.proc.pid]
            cpu = _cpu_of(lambda: pids)
        serve.wait_line(r"quantpanel serving on", 60)
        wait_http(f"http://127.0.0.1:{port}/static/js/bokeh.min.js", 60)
        observer = Observer(ws)
        yield f"http://127.0.0.1:{port}/", observer, cpu, extra
    finally:
        if observer:
            observer.stop()
        try:
            if workers and serve:
                _stop_workers(serve)
        finally:
            for p in reversed(procs):  # the dashboard, the ingest, then the exchange
                p.stop()
            if redis:
                redis.close()


@contextmanager
def in_process_stack(tmp: Path, rate_hz: float, seconds: float) -> Iterator[Stack]:
    """The push bench's stack: `quantpanel serve` ingesting the exchange itself."""
    with probe_stack(tmp, rate_hz, seconds) as (_ex, server, url, observer):
        pid = server.proc.pid
        yield url, observer, lambda: cpu_seconds(pid), None


# -- the benchmark ----------------------------------------------------------------------------------
def _measure(stack: Callable[[Path, float, float], AbstractContextManager[Stack]], counts: tuple[int, ...], *,
             rate_hz: float, measure_s: float, chromium_pages: int, stop: Callable[[int, dict[str, Any]], bool] | None,
             open_timeout_s: float, open_s_per_session: float, first_measure_s: float) -> dict[str, Any]:
    """One stack's stages: its CPU with no session, then each count's figures (``run_stages``)."""
    seconds = 60 + measure_s * (len(counts) + 1) * 3 + 600 + sum(counts) * open_s_per_session
    with tempfile.TemporaryDirectory(prefix="qp-broker-") as tmp_, \
            stack(Path(tmp_), rate_hz, seconds) as (url, obs, cpu, extra):
        pages = open_pages()
        try:
            wait_for_probe(obs, rate_hz)
            idle = cpu_rate(cpu, measure_s / 2)
            sessions = run_stages(url, obs, counts, pages=pages, chromium_pages=chromium_pages, cpu=cpu,
                                  idle_cpu=idle, measure_s=measure_s, open_timeout_s=open_timeout_s,
                                  open_s_per_session=open_s_per_session, extra=extra, stop=stop,
                                  first_measure_s=first_measure_s)
        finally:
            if pages:
                pages.close()
    return {"chromium": pages is not None, "server_cpu_no_session_pct": round(idle * 100, 1),
            "sessions": sessions}


def _under(r: dict[str, Any] | None, target_ms: float) -> bool:
    """All of the stage's sessions opened and its p99 is within the target."""
    if not r or "note" in r or r["latency_p99_ms"] is None:
        return False
    return bool(r["latency_p99_ms"] < target_ms)


def _held(sessions: dict[str, dict[str, Any]], ladder: tuple[int, ...], target_ms: float) -> int:
    """The largest count of the ladder below its first miss (0: the first count missed)."""
    best = 0
    for n in ladder:
        if not _under(sessions.get(str(n)), target_ms):
            break
        best = n
    return best


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 1)


def run_broker_bench(*, latency_counts: tuple[int, ...] = (1, 5), ladder: tuple[int, ...] = LADDER,
                     target_ms: float = LATENCY_TARGET_MS, workers: int = 2, measure_s: float = 10.0,
                     latency_measure_s: float = 20.0, rate_hz: float = 20.0, chromium_pages: int = 1,
                     open_timeout_s: float = 20.0, open_s_per_session: float = 3.0) -> dict[str, Any]:
    """Latency with ``latency_counts`` sessions in process and via the broker (its first count
    gives the headline figures); the largest count of ``ladder`` within ``target_ms`` p99 for one
    process and ``serve --workers N``. An empty ``ladder`` skips the sessions part (its figures
    None). The in-process stack serves both parts: the latency counts, then the ladder. Each
    stack's first stage lasts ``latency_measure_s`` (one session's p99 needs the samples), the
    others ``measure_s``."""
    kw: dict[str, Any] = {"rate_hz": rate_hz, "measure_s": measure_s, "chromium_pages": chromium_pages,
                          "open_timeout_s": open_timeout_s, "open_s_per_session": open_s_per_session,
                          "first_measure_s": latency_measure_s}

    def stop(n: int, r: dict[str, Any]) -> bool:  # climbing the ladder ends at its first miss
        return n in ladder and not _under(r, target_ms)

    in_counts = tuple(dict.fromkeys(latency_counts + ladder))
    in_proc = _measure(in_process_stack, in_counts, stop=stop, **kw)
    via = _measure(broker_stack, latency_counts, stop=None, **kw)
    ladder_counts = tuple(dict.fromkeys(latency_counts[:1] + ladder))
    work = (_measure(lambda t, r, s: broker_stack(t, r, s, workers=workers), ladder_counts, stop=stop, **kw)
            if ladder else None)

    first = str(latency_counts[0])
    a, b = in_proc["sessions"].get(first, {}), via["sessions"].get(first, {})
    res: dict[str, Any] = {
        "data": f"simulated probe trades, {rate_hz:g}/s per symbol x {len(SYMBOLS)}",
        "measure_s": measure_s, "latency_measure_s": latency_measure_s, "latency_sessions": latency_counts[0],
        "workers": workers,
        "latency_in_process_p50_ms": a.get("latency_p50_ms"), "latency_in_process_p99_ms": a.get("latency_p99_ms"),
        "latency_broker_p50_ms": b.get("latency_p50_ms"), "latency_broker_p99_ms": b.get("latency_p99_ms"),
        "broker_added_p50_ms": _diff(b.get("latency_p50_ms"), a.get("latency_p50_ms")),
        "broker_added_p99_ms": _diff(b.get("latency_p99_ms"), a.get("latency_p99_ms")),
        "latency_target_ms": target_ms,
        "sessions_one_process": _held(in_proc["sessions"], ladder, target_ms) if ladder else None,
        f"sessions_workers_{workers}": _held(work["sessions"], ladder, target_ms) if work else None,
        "ladder": [{"sessions": n,
                    "one_process_p99_ms": in_proc["sessions"].get(str(n), {}).get("latency_p99_ms"),
                    f"workers_{workers}_p99_ms": (work["sessions"].get(str(n), {}).get("latency_p99_ms")
                                                  if work else None)} for n in ladder],
        "in_process": in_proc, "via_broker": via, f"workers_{workers}": work,
    }
    return res


def format_broker(r: dict[str, Any]) -> str:
    w = r["workers"]
    lines = [f"broker: tick -> browser document through Redis Streams ({r['data']})"]
    for n in r["via_broker"]["sessions"]:
        a = r["in_process"]["sessions"].get(n, {})
        b = r["via_broker"]["sessions"][n]
        lines.append(
            f"  {n:>2} sessions  in process p50 {a.get('latency_p50_ms')} ms  p99 {a.get('latency_p99_ms')} ms"
            f"   via broker p50 {b['latency_p50_ms']} ms  p99 {b['latency_p99_ms']} ms"
            f"   added p50 {_diff(b['latency_p50_ms'], a.get('latency_p50_ms'))} ms"
            f"  p99 {_diff(b['latency_p99_ms'], a.get('latency_p99_ms'))} ms"
            f"   (CPU of ingest + redis + serve {b['server_cpu_pct']} %, in process {a.get('server_cpu_pct')} %)")
    if not r["ladder"]:
        lines.append("  sessions within the latency target: not measured")
        return "\n".join(lines)
    lines.append(f"  sessions with p99 < {r['latency_target_ms']:g} ms: one process {r['sessions_one_process']},"
                 f" serve --workers {w} {r[f'sessions_workers_{w}']}")
    work = (r.get(f"workers_{w}") or {}).get("sessions", {})
    for row in r["ladder"]:
        n = str(row["sessions"])
        one, many = r["in_process"]["sessions"].get(n, {}), work.get(n, {})
        lines.append(
            f"    {n:>2} sessions  one process p99 {row['one_process_p99_ms']} ms"
            f" (CPU {one.get('server_cpu_pct')} %, {one.get('updates_per_session_s')} updates/s per session)"
            f"   workers {w} p99 {row[f'workers_{w}_p99_ms']} ms (CPU {many.get('server_cpu_pct')} %,"
            f" {many.get('updates_per_session_s')} updates/s per session,"
            f" connections per worker {many.get('connections_per_worker')})"
            + "".join(f"  [{s['note']}]" for s in (one, many) if "note" in s))
    return "\n".join(lines)


def _main(argv: list[str]) -> int:
    """``python -m quantpanel.bench.broker [--quick] [--json]``: this section alone."""
    import orjson

    r = (run_broker_bench(latency_counts=(1,), ladder=(), measure_s=5.0, latency_measure_s=5.0) if "--quick" in argv
         else run_broker_bench())
    print(orjson.dumps(r).decode() if "--json" in argv else format_broker(r))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

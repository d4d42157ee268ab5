"""Memory over a long run: the served app ingesting ~2k ticks/s with a session open.

The local exchange loops the bundled real recording (ids and times shifted per pass) at a speed
that gives ``rate`` ticks/s; `quantpanel serve` ingests it live and one Bokeh client session
watches. The server's RSS is sampled from /proc; growth is measured from the end of a warm-up
(buffers and caches fill during the first minutes by design) to the end.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from quantpanel.bench.procs import served_app, spawn
from quantpanel.feeds.recording import load_recording

__all__ = ["run_soak", "rss_mib"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def run_soak(data: Path, *, minutes: float = 30.0, rate: float = 2_000.0,
             warmup_fraction: float = 0.2, sample_s: float = 10.0) -> dict[str, Any]:
    rec = load_recording(data)
    speed = rate / (len(rec.trades) / (rec.span_ms() / 1000))
    with tempfile.TemporaryDirectory(prefix="qp-soak-") as tmp_:
        tmp = Path(tmp_)
        with served_app(tmp, data, rec.symbols, "--speed", f"{speed:.3f}", "--loop", "--rebase-to-now",
                        "--free-run") as (_, server, _, url):
            client = spawn("-m", "quantpanel.bench.push", "clients", url, "1")
            try:
                client.wait_line(r"^ready 1$", 180)
                started = time.monotonic()
                samples: list[tuple[float, float]] = []
                while (elapsed := time.monotonic() - started) < minutes * 60:
                    samples.append((round(elapsed, 1), round(rss_mib(server.proc.pid), 1)))
                    time.sleep(min(sample_s, max(0.1, minutes * 60 - elapsed)))
                samples.append((round(time.monotonic() - started, 1), round(rss_mib(server.proc.pid), 1)))
            finally:
                client.stop()
    warm = next(r for t, r in samples if t >= minutes * 60 * warmup_fraction)
    end = samples[-1][1]
    return {"data": f"{rec.source} (real trades, looped at x{speed:.1f})", "minutes": minutes,
            "ticks_per_s": rate, "rss_start_mib": samples[0][1], "rss_warm_mib": warm,
            "rss_end_mib": end, "rss_max_mib": max(r for _, r in samples),
            "rss_growth_pct": round((end - warm) / warm * 100, 2), "samples": samples}


def format_soak(r: dict[str, Any]) -> str:
    return (f"memory soak: {r['minutes']:g} min at ~{r['ticks_per_s']:,.0f} ticks/s, one session: server RSS "
            f"{r['rss_start_mib']:.0f} MiB at start, {r['rss_warm_mib']:.0f} after warm-up, "
            f"{r['rss_end_mib']:.0f} at end (max {r['rss_max_mib']:.0f}): growth {r['rss_growth_pct']:+.2f} %")

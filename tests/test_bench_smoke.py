"""`scripts/bench.py --quick --json` runs, reports every figure and its correctness checks held.

A smoke test only: no timing is asserted (the machine may be busy); a figure just has to be there
and positive.
"""

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import ROOT

RATES = [
    "orjson_loads_per_s", "parse_frame_per_s", "bars_only_ticks_per_s", "pipeline_only_ticks_per_s",
    "store_only_ticks_per_s", "ingest_ticks_per_s", "ingest_emit_ticks_per_s",
    "bare_ws_msgs_per_s", "loopback_msgs_per_s", "bare_ws_xproc_msgs_per_s",
    "loopback_xproc_msgs_per_s",
]
RATIOS = ["parse_frame_vs_orjson", "ingest_vs_orjson", "ingest_vs_parse_frame",
          "loopback_vs_bare_ws", "loopback_xproc_vs_bare_ws"]


@pytest.fixture(scope="module")
def report() -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.timeout(260)
def test_every_figure_is_present_and_positive(report):
    for key in RATES + RATIOS + ["peak_rss_mib", "rss_after_fixtures_mib"]:
        value = report[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
    assert report["runs"] >= 3
    for name, times in report["samples_seconds"].items():
        assert len(times) == report["runs"] and all(t > 0 for t in times), (name, times)


@pytest.mark.timeout(260)
def test_counts_and_zero_loss_held(report):
    n = report["frames"]
    assert report["recording_trades"] == 35_389 and n == 35_389 * report["passes"]
    assert report["checks"] and all(report["checks"].values()), report["checks"]
    assert report["ok"] is True
    assert report["ingest_emitted"] == report["ingest_stored"] == n
    assert report["loopback_lost"] == 0 and report["loopback_xproc_lost"] == 0
    assert report["loopback_stored"] == report["loopback_xproc_stored"] == n


@pytest.mark.timeout(260)
def test_machine_info(report):
    m = report["machine"]
    assert m["cores"] >= 1 and m["python"].count(".") == 2
    assert len(m["loadavg_end"]) == 3 and m["loadavg_max_1min"] >= 0

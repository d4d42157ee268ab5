"""`quantpanel bench --quick --json` runs and reports every figure (no timing thresholds)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

KEYS = ["orjson_loads_per_s", "parse_frame_per_s", "bars_only_ticks_per_s", "store_only_ticks_per_s",
        "ingest_ticks_per_s", "bare_ws_msgs_per_s", "loopback_msgs_per_s", "ingest_vs_orjson",
        "loopback_vs_bare_ws", "peak_rss_mib"]


@pytest.mark.timeout(180)
def test_bench_quick_reports_all_figures_with_zero_loss():
    proc = subprocess.run([sys.executable, "-m", "quantpanel", "bench", "--quick", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=170)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    assert r["frames"] == 35_389
    assert all(r[k] > 0 for k in KEYS), {k: r[k] for k in KEYS}
    assert r["ingest_stored_all"] is True and r["loopback_lost"] == 0
    assert r["machine"]["cores"] >= 1
    a = r["analytics"]
    assert a["data"].startswith("simulated") and a["bars"] == 10_000
    assert all(a[k] > 0 for k in ("kalman_s", "backtest_s", "sweep_20x20_s", "scanner_20_symbols_s"))

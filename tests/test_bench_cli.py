"""`quantpanel bench --quick --json` runs end to end and reports every figure with its target
(a smoke test: no timing thresholds; the figures themselves are for people)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

KEYS = ["orjson_loads_per_s", "parse_frame_per_s", "bars_only_ticks_per_s", "store_only_ticks_per_s",
        "ingest_ticks_per_s", "bare_ws_msgs_per_s", "loopback_msgs_per_s", "ingest_vs_orjson",
        "loopback_vs_bare_ws", "peak_rss_mib"]
BROKER_KEYS = ["latency_in_process_p50_ms", "latency_in_process_p99_ms", "latency_broker_p50_ms",
               "latency_broker_p99_ms", "broker_added_p50_ms", "broker_added_p99_ms", "latency_target_ms",
               "sessions_one_process", "sessions_workers_2", "ladder"]
IMPORT_KEYS = ["rows", "floor_seconds", "floor_rows_per_s", "import_seconds", "rows_per_s", "vs_floor", "bars"]
HISTORY_KEYS = ["days", "ticks", "bars_1m_per_symbol", "build_seconds", "analyze_30d_seconds",
                "analyze_cli_seconds", "warm_start_seconds", "load_bars_1m_30d_seconds"]


@pytest.mark.timeout(600)
def test_bench_quick_reports_all_figures_with_zero_loss():
    proc = subprocess.run([sys.executable, "-m", "quantpanel", "bench", "--quick", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=590)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert r["frames"] == 30_000 and r["symbols"] == 10 and r["pairs"] == 5
    assert all(r[k] > 0 for k in KEYS), {k: r[k] for k in KEYS}
    assert r["ingest_stored_all"] is True and r["loopback_lost"] == 0
    assert r["machine"]["cores"] >= 1
    a = r["analytics"]
    assert a["data"].startswith("simulated") and a["bars"] == 10_000
    assert all(a[k] > 0 for k in ("kalman_s", "backtest_s", "sweep_20x20_s", "scanner_20_symbols_s",
                                   "tests_s", "live_per_closed_bar_us"))
    assert a["live_pairs"] == 10 and a["live_window"] == 300
    # push: real chromium and a Bokeh client session saw probe prices arrive
    p = r["push"]
    assert p["data"].startswith("simulated") and p["chromium"] is True
    assert set(p["sessions"]) == {"1", "3"}
    for s in p["sessions"].values():
        assert s["samples"] > 0 and s["latency_p50_ms"] > 0 and s["server_cpu_pct"] > 0
    assert p["sessions"]["3"]["client_sessions"] == 2
    assert p["sessions"]["3"]["client_samples"] > 0  # the Bokeh client sessions' own latencies
    # issue 14's figures: the chart path against raw Bokeh, and what opening a session costs
    f = p["refresh"]
    assert p["refresh_vs_raw_bokeh"] == f["refresh_vs_raw_bokeh"] > 0
    assert f["raw_bokeh_cpu_ms"] > 0 and f["dashboard_cpu_ms"] > 0 and f["holoviews_cpu_ms"] > 0
    assert p["session_open_cpu_ms"] > 0 and len(p["session_open_cpu_ms_runs"]) == 3
    assert p["max_cpu_per_session_pct"] > 0
    # issue 17's broker section: the latency in process and through Redis; --quick skips the ladder
    b = r["broker"]
    assert set(BROKER_KEYS) <= set(b), set(BROKER_KEYS) - set(b)
    assert b["latency_in_process_p50_ms"] > 0 and b["latency_broker_p50_ms"] > 0
    assert b["broker_added_p50_ms"] == round(b["latency_broker_p50_ms"] - b["latency_in_process_p50_ms"], 1)
    assert b["latency_target_ms"] > 0 and b["ladder"] == []
    assert b["sessions_one_process"] is None and b["sessions_workers_2"] is None
    assert not any(t["figure"].startswith("broker") for t in r["targets"])  # no target of its own
    # issue 18: the columnar import against its floor, and stored history at scale (3 days here)
    i = r["import"]
    assert all(isinstance(i[k], int | float) and i[k] > 0 for k in IMPORT_KEYS), {k: i.get(k) for k in IMPORT_KEYS}
    assert i["rows"] == i["stored"] == 200_000 and i["source"].startswith("real BTCUSDT trades repeated")
    h = r["history"]
    assert all(isinstance(h[k], int | float) and h[k] > 0 for k in HISTORY_KEYS), {k: h.get(k) for k in HISTORY_KEYS}
    assert h["days"] == 3 and h["bars_1m_per_symbol"] == 3 * 1440 == h["analyze_bars"]
    assert h["analyze_same_in_cli"] is True and h["source"].startswith("real BTCUSDT and ETHUSDT trades")
    assert {"import", "history"} <= set(r["section_seconds"])
    assert {"import.vs_floor", "history.analyze_30d_seconds", "history.warm_start_seconds"} <= {
        t["figure"] for t in r["targets"] if t["value"] is not None}
    assert [t["figure"] for t in r["targets"]][:3] == ["ingest_vs_orjson", "ingest_ticks_per_s",
                                                       "loopback_msgs_per_s"]
    assert all(t["value"] is not None for t in r["targets"] if not t["figure"].startswith(("soak", "push.sessions.20")))
    assert {"push.refresh_vs_raw_bokeh", "push.session_open_cpu_ms", "push.max_cpu_per_session_pct"} <= {
        t["figure"] for t in r["targets"]}


def test_probe_prices_are_identified_from_the_price_card():
    from quantpanel.bench.probe import parse_shown_price, probe_price

    card = ('&lt;div style=&quot;font-size: 10pt&quot;&gt;BTCUSDT last&lt;/div&gt;\n'
            '&lt;div style=&quot;font-size: 22pt&quot;&gt;{}&lt;/div&gt;')
    for k in (0, 1, 9, 12_345, 99_999):
        shown = f"{float(probe_price(k)):,.6g}"  # the card's format
        assert parse_shown_price(card.format(shown)) == k
    assert parse_shown_price(card.format("0")) is None
    assert parse_shown_price("no card") is None

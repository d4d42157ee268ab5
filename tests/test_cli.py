"""The `quantpanel` command as users run it: separate processes talking over loopback."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from quantpanel.pipeline.bars import build_bars
from quantpanel.storage.store import Store

from tests.conftest import CRYPTOFEED, ROOT, USDM_TRADES

pytestmark = pytest.mark.timeout(120)
QP = [sys.executable, "-m", "quantpanel"]


def run(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*QP, *args], capture_output=True, text=True, cwd=ROOT, timeout=100, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"quantpanel {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def start_exchange(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*QP, "exchange", "--data", str(USDM_TRADES), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    m = re.search(r"listening on (ws://\S+)", line)
    assert m, f"exchange did not start: {line!r}"
    return proc, m.group(1)


def record_from_exchange(tmp_path: Path, *exchange_args: str, duration: str = "6", backfill: bool = True) -> dict:
    """Run `quantpanel exchange ARGS` and `quantpanel record` of the trades against it (REST, for
    backfill, on the exchange too unless ``backfill`` is off); the record summary."""
    ex, url = start_exchange(*exchange_args)
    try:
        rec = run("record", "--ws-url", url, "--db", str(tmp_path / "r.db"), "--duration", duration,
                  "--symbols", "btcusdt,ETHUSDT", "--streams", "aggTrade", "--spot-symbols", "",
                  "--rest-url", rest_of(url) if backfill else "")
    finally:
        ex.terminate()
        ex.wait(10)
    return json.loads(rec.stdout.strip().splitlines()[-1])


def rest_of(ws_url: str) -> str:
    """The exchange's REST base URL (same port as its streams)."""
    return "http://" + ws_url.split("/")[2]


def sent_keys(path: Path) -> list[tuple[str, int]]:
    """The trades a sent log lists (market frames, ``=KIND FRAME`` lines, left out)."""
    return [(s, int(a)) for s, a in (line.split() for line in path.read_text().splitlines()
                                     if not line.startswith("="))]


def test_record_against_exchange_stores_exactly_what_was_sent(tmp_path, usdm_recording):
    sent = tmp_path / "sent.log"
    summary = record_from_exchange(tmp_path, "--speed", "0", "--sent-log", str(sent))
    keys = sent_keys(sent)
    assert len(keys) == len(usdm_recording.trades) == 35_389
    with Store(tmp_path / "r.db") as store:
        stored = store.tick_ids()
        assert stored == set(keys)  # none lost
        assert store.tick_count() == len(keys)  # none duplicated
        # values too: the stored ticks are the recording's
        t0 = usdm_recording.trades[0]
        first = store.read_ticks(t0.symbol, t0.time, t0.time + 1)[0]
        assert (first.agg_id, first.price, first.qty) == (t0.agg_id, float(t0.price), float(t0.qty))
    assert summary["ticks_stored"] == len(keys) and summary["reconnects"] == 0


def test_record_reconnects_after_drops_ticks_sent_while_disconnected_missing_until_backfill(tmp_path):
    """The exchange's timeline keeps running while the client is away (--free-run at x40).

    Everything the exchange sent is stored exactly once. What it sent to nobody while the client
    was reconnecting is missing: REST backfill (the reliability issue) will close those gaps.
    """
    sent = tmp_path / "sent.log"
    summary = record_from_exchange(tmp_path, "--speed", "40", "--free-run", "--drop-every", "1500",
                                   "--sent-log", str(sent), duration="5", backfill=False)
    keys = sent_keys(sent)
    assert summary["reconnects"] >= 2
    with Store(tmp_path / "r.db") as store:
        assert store.tick_ids() == set(keys)
        assert store.tick_count() == len(keys) == len(set(keys))
        # and the disconnects really did leave holes in the agg id sequence
        ids = sorted(a for s, a in keys if s == "BTCUSDT")
        assert ids[-1] - ids[0] + 1 > len(ids)


def test_garbage_frames_are_counted_and_ingestion_goes_on(tmp_path, usdm_recording):
    s = record_from_exchange(tmp_path, "--speed", "0", "--garbage-every", "1000", duration="5")
    n = len(usdm_recording.trades)
    assert s["ticks_stored"] == n
    assert s["malformed"] + s["other_events"].get("depthUpdate", 0) == n // 1000
    assert s["malformed"] == 26 and s["other_events"] == {"depthUpdate": 9}


def test_bars_csv_is_the_definition(tmp_path, usdm_ticks):
    db = tmp_path / "q.db"
    run("import", "--db", str(db), str(USDM_TRADES))
    out = run("bars", "--db", str(db), "--symbol", "ethusdt", "--timeframe", "1m").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["time", "open", "high", "low", "close", "volume", "trades", "vwap", "buy_volume"]
    ref = [b for b in build_bars(usdm_ticks, ["1m"])[0] if b.symbol == "ETHUSDT"]
    assert [r["time"] for r in rows] == [
        pd.Timestamp(b.time, unit="ms").strftime("%Y-%m-%dT%H:%M:%SZ") for b in ref]
    assert rows[0]["time"] == "2024-08-08T23:54:00Z"
    for r, b in zip(rows, ref):
        assert (float(r["open"]), float(r["close"]), float(r["volume"]), int(r["trades"]),
                float(r["vwap"]), float(r["buy_volume"])) == (b.open, b.close, b.volume, b.trades, b.vwap, b.buy_volume)
    # a range, written to a file
    f = tmp_path / "b.csv"
    run("bars", "--db", str(db), "--symbol", "BTCUSDT", "--timeframe", "1s",
        "--start", "2024-08-08T23:55:00Z", "--end", "2024-08-08T23:55:10", "--out", str(f))
    got = pd.read_csv(f)
    assert list(got.time) == [f"2024-08-08T23:55:0{i}Z" for i in range(10)]


def test_import_reports_and_rebuilds_bars(tmp_path):
    db = tmp_path / "q.db"
    out = run("import", "--db", str(db), str(CRYPTOFEED), str(USDM_TRADES)).stdout
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines[0]["stored"] == 91 and lines[0]["skipped"]["bookTicker"] == 613
    assert lines[1]["stored"] == 35_389
    rebuilt = {x["symbol"]: x["bars_rebuilt"] for x in lines if "bars_rebuilt" in x}
    assert set(rebuilt) == {"BTCUSDT", "ETHUSDT", "AKROUSDT", "CTKUSDT", "KEEPUSDT", "SUSHIUSDT"}
    again = [json.loads(x) for x in run("import", "--db", str(db), str(USDM_TRADES)).stdout.splitlines()]
    assert again[0]["stored"] == 0 and again[0]["already_stored"] == 35_389


def test_bad_input_exits_2_with_a_message_naming_it(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text("symbols: []\nfeed:\n  colour: blue\n")
    proc = run("--config", str(bad), "bars", "--symbol", "X", check=False)
    assert proc.returncode == 2
    assert "symbols: must list at least one symbol" in proc.stderr
    assert "feed.colour: unknown key" in proc.stderr
    proc = run("bars", "--symbol", "X", "--db", str(tmp_path / "none.db"), check=False)
    assert proc.returncode == 2 and "none.db: no such database" in proc.stderr
    proc = run("bars", "--symbol", "X", "--start", "last tuesday", check=False)
    assert proc.returncode == 2 and "is not ISO-8601" in proc.stderr
    csvf = tmp_path / "BTCUSDT-aggTrades-2024-01-01.csv"
    csvf.write_text("1,2,3\n")
    proc = run("import", "--db", str(tmp_path / "q.db"), str(csvf), check=False)
    assert proc.returncode == 2 and "aggTrades-2024-01-01.csv:1: expected 7 columns" in proc.stderr


@pytest.mark.parametrize("cmd", ["serve", "exchange", "record", "import", "bars", "analyze", "backtest", "sweep", "bench"])
def test_every_command_has_help(cmd):
    out = run(cmd, "--help").stdout
    assert out.startswith(f"usage: quantpanel {cmd}")


def test_console_script_and_module_both_work():
    exe = Path(sys.executable).with_name("quantpanel")
    assert exe.exists(), "the project is installed in the virtualenv (pip install -e .)"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60,
                         env={**os.environ}).stdout
    assert "serve" in out and "exchange" in out and "record" in out

"""`quantpanel record` against `quantpanel exchange` on both Binance routes, as users run them: trades,
marks and liquidations on the market connection, bookTicker on the public one, REST for backfill,
funding history and open interest; the exchange drops each connection now and then.

Trades are real (the bundled recording), so are the quotes; marks, funding, liquidations and open
interest are the exchange's SIMULATED ones. What was stored is compared with what the exchange's
sent log says it sent; trades the drops cost are backfilled over REST, so all of them are stored.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from pathlib import Path

import pytest

from quantpanel.feeds.exchange.simulated import MarketModel, simulate
from quantpanel.feeds.recording import load_recording
from quantpanel.models import MarkPrice, Quote
from quantpanel.storage.store import Store

from tests.conftest import DATA, ROOT, USDM_TRADES
from tests.test_cli import QP, rest_of, sent_keys, start_exchange

pytestmark = pytest.mark.timeout(180)
QUOTES = DATA / "binance-usdm-btcusdt-ethusdt-2024-08-08.bookticker.gz"
SPOT = DATA / "binance-spot-btcusdt-ethusdt-2024-08-08.trades.gz"


def _config(tmp: Path, **feed: object) -> Path:
    lines = ["storage:", "  keep_quotes: true", "feed:", "  backoff_initial_s: 0.05", "  backoff_max_s: 0.2",
             *(f"  {k}: {v}" for k, v in feed.items())]
    path = tmp / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _record(tmp: Path, config: Path, market: str, public: str, rest: str, *more: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*QP, "record", "--config", str(config), "--db", str(tmp / "r.db"), "--symbols", "BTCUSDT,ETHUSDT",
         "--ws-url", market, "--public-ws-url", public, "--rest-url", rest, "--duration", "120",
         "--spot-symbols", "BTCUSDT,ETHUSDT", "--spot-ws-url", market.replace("/market/", "/spot/"), *more],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _summary(rec: subprocess.Popen[str]) -> tuple[dict, str]:
    """Stop the recorder as a user would (SIGTERM): its JSON summary and its log."""
    rec.send_signal(signal.SIGTERM)
    out, err = rec.communicate(timeout=60)
    assert rec.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


def _sent_frames(sent: Path, kind: str) -> list[dict]:
    return [json.loads(line.split(" ", 1)[1])["data"] for line in sent.read_text().splitlines()
            if line.startswith(f"={kind} ")]


def test_record_stores_trades_quotes_marks_and_funding_as_sent_across_drops_on_either_route(tmp_path):
    sent = tmp_path / "sent.log"
    ex, url = start_exchange("--quotes", str(QUOTES), "--spot", str(SPOT), "--speed", "4", "--drop-every", "25000",
                             "--sent-log", str(sent), "--exit-when-done", "--linger", "3")
    base = url.removesuffix("/stream")
    rec = _record(tmp_path, _config(tmp_path), f"{base}/market/stream", f"{base}/public/stream", rest_of(url))
    try:
        ex.wait(150)  # the 5.7-minute recording at x4, then 3 s for the last backfill
    finally:
        ex.kill()
    summary, _ = _summary(rec)
    recording = load_recording(USDM_TRADES)
    assert summary["connections"]["market"]["reconnects"] >= 1, "the market connection was dropped"
    assert summary["connections"]["bookTicker"]["reconnects"] >= 3, "the public connection was dropped"

    quotes_sent = [Quote(d["s"], d["T"], d["u"], float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]))
                   for d in _sent_frames(sent, "bookTicker")]
    marks_sent = [MarkPrice(d["s"], d["E"], float(d["p"]), float(d["i"]), float(d["P"]), float(d["r"]), d["T"])
                  for d in _sent_frames(sent, "markPrice@1s")]
    assert len(quotes_sent) > 100_000 and len(marks_sent) > 600
    with Store(tmp_path / "r.db") as store:
        # every trade, the ones the drops cost backfilled over REST; each once
        futures = {k for k in store.tick_ids() if not k[0].endswith(".SPOT")}
        assert futures == {(t.symbol, t.agg_id) for t in recording.trades}
        assert store.tick_count("BTCUSDT") + store.tick_count("ETHUSDT") == len(recording.trades)
        assert store.tick_count("BTCUSDT.SPOT") + store.tick_count("ETHUSDT.SPOT") == summary["spot_ticks_received"]
        assert len(set(sent_keys(sent))) < len(recording.trades) <= len(set(sent_keys(sent))) + summary["trades_backfilled"]
        stored_quotes = [q for s in ("BTCUSDT", "ETHUSDT") for q in store.read_quotes(s)]
        stored_marks = [m for s in ("BTCUSDT", "ETHUSDT") for m in store.read_marks(s)]
        funding = [f for s in ("BTCUSDT", "ETHUSDT") for f in store.read_funding(s)]
        quote_bars = store.read_quote_bars("BTCUSDT", "1s")
    # quotes and marks: exactly the frames sent (none while a connection was down: Binance has no
    # REST backfill of either), values exact
    assert sorted(stored_quotes) == sorted(set(quotes_sent))
    assert sorted(stored_marks) == sorted(set(marks_sent))
    assert quote_bars and all(b.updates > 0 and b.bid <= b.ask for b in quote_bars)
    # funding: each event the exchange simulated whose time passed while we listened, rate exact,
    # from the stream's mark updates or the REST history fetched after each reconnect
    simulated = {(f.symbol, f.time): float(f.rate) for f in simulate(recording, MarketModel()).funding}
    assert funding and {(f.symbol, f.time) for f in funding} <= set(simulated)
    assert [f for f in funding if f.rate != simulated[(f.symbol, f.time)]] == []
    seen = {(m.symbol, m.next_funding) for m in marks_sent}
    # revealed: a later update named the following funding (the stream has no "paid" message)
    passed = {k for k in simulated if k in seen and any(m.symbol == k[0] and m.next_funding > k[1] for m in marks_sent)}
    assert passed <= {(f.symbol, f.time) for f in funding}
    assert all(math.isfinite(f.mark) for f in funding if (f.symbol, f.time) in passed)
    assert summary["silent_streams"] == []
    assert summary["open_interest_stored"] >= 2
    spot = load_recording(SPOT)
    assert 0.99 * len(spot.trades) < summary["spot_ticks_received"] <= len(spot.trades)
    assert summary["connections"]["spot"]["reconnects"] >= 0


def test_a_stream_subscribed_on_the_wrong_route_is_reported_by_name(tmp_path):
    ex, url = start_exchange("--quotes", str(QUOTES), "--speed", "1")
    base = url.removesuffix("/stream")
    # bookTicker asked of the market route: acknowledged, never delivered
    rec = _record(tmp_path, _config(tmp_path, stream_silence_s=2), f"{base}/market/stream",
                  f"{base}/market/stream", rest_of(url), "--spot-symbols", "")
    try:
        time.sleep(6)
        summary, log = _summary(rec)
    finally:
        ex.terminate()
        ex.wait(10)
    assert summary["silent_streams"] == ["btcusdt@bookTicker", "ethusdt@bookTicker"]
    assert summary["ticks_stored"] > 0 and summary["quotes_received"] == 0
    assert "btcusdt@bookTicker subscribed on" in log and "never delivered" in log

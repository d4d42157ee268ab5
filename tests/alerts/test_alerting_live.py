"""The alert engine live: the real recorded data replayed through the runtime, persistence across
restarts, and the webhook against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from quantpanel.alerts.engine import Alert
from quantpanel.alerts.rules import Rule, inactive_reason
from quantpanel.notify.webhook import Webhook
from quantpanel.pipeline.runtime import Runtime

from tests.test_pipeline import _config, wait_for

pytestmark = pytest.mark.timeout(120)

Z_RULE = {"name": "z outside 1.5", "metric": "zscore", "pair": ["ETHUSDT", "BTCUSDT"], "timeframe": "1s",
          "op": "outside", "threshold": 1.5, "reset": 0.5}


def btc_closes(usdm_ticks) -> pd.Series:
    """1 s closes of BTCUSDT straight from the raw recording (pandas, not our bar builder)."""
    ticks = [t for t in usdm_ticks if t.symbol == "BTCUSDT"]
    s = pd.Series([t.price for t in ticks], index=pd.to_datetime([t.time for t in ticks], unit="ms"))
    return s.resample("1s").last().ffill()


async def replay(tmp_path, rules: list[dict], **over) -> tuple[Runtime, list[Alert], dict]:
    cfg = _config(tmp_path, source="replay", **{"alerts.rules": rules, "windows.zscore": 30,
                                                "windows.hedge_refit_bars": 10**6, **over})
    rt = Runtime(cfg)
    got: list[Alert] = []
    points: dict = {}

    def attach(r: Runtime) -> None:
        r.rules.alerting.alerts.sink(got.extend)
        r.ingestion.pipeline.pair_points.sink(lambda d: [points.setdefault(k, []).extend(v) for k, v in d.items()])

    rt.on_ready(attach)
    await rt.start()
    try:
        await wait_for(lambda: rt.status().ticks == 35_389, timeout=60)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(rt.ingestion.writer.flush, 30)
    finally:
        await rt.stop()
    return rt, got, points


async def test_alerts_on_the_real_replay_equal_an_independent_computation(tmp_path, usdm_ticks):
    closes = btc_closes(usdm_ticks)
    level = float(np.median(closes))
    rules = [Z_RULE,
             {"name": "btc crosses median", "metric": "price", "symbol": "BTCUSDT", "timeframe": "1s",
              "op": "crosses_above", "threshold": level},
             {"name": "btc +0.01% over 5 bars", "metric": "price_change_pct", "symbol": "BTCUSDT",
              "timeframe": "1s", "op": ">", "threshold": 0.01, "change_bars": 5, "reset": 0.0}]
    rt, got, points = await replay(tmp_path, rules)
    by_rule = {name: [a for a in got if a.rule == name] for name in (r["name"] for r in rules)}
    assert all(by_rule.values()), {k: len(v) for k, v in by_rule.items()}

    # price crossings: the alerts are exactly the upward crossings of the 1 s closes
    last_closed = max(a.time for a in got)
    c = closes[closes.index <= pd.Timestamp(max(p.time for pts in points.values() for p in pts), unit="ms")]
    v = c.to_numpy()
    ms = (c.index.astype("datetime64[ns]").asi8 // 1_000_000)
    crossings = [int(ms[i]) for i in range(1, len(v)) if v[i - 1] <= level < v[i]]
    assert [a.time for a in by_rule["btc crosses median"]] == crossings
    assert all(a.value > level for a in by_rule["btc crosses median"])

    # change over 5 bars > 0.01 %, re-armed at <= 0
    chg = (v[5:] / v[:-5] - 1) * 100
    expected, armed = [], True
    for i, x in enumerate(chg):
        armed = armed or x <= 0.0
        if armed and x > 0.01:
            expected.append(int(ms[i + 5]))
            armed = False
    assert [a.time for a in by_rule["btc +0.01% over 5 bars"]] == expected

    # z-score: |z| > 1.5 re-armed inside ±0.5, over the z the pipeline computed for the pair
    (spec, pts), = [(k, p) for k, p in points.items() if (k.a, k.b) == ("ETHUSDT", "BTCUSDT")]
    expected, armed = [], True
    for p in pts:
        if np.isnan(p.zscore):
            continue
        armed = armed or abs(p.zscore) <= 0.5
        if armed and abs(p.zscore) > 1.5:
            expected.append(p.time)
            armed = False
    assert [a.time for a in by_rule["z outside 1.5"]] == expected and last_closed >= expected[-1]

    # every alert is in the store's log, in order
    stored = rt.rules.recent_alerts(10_000)
    assert [(a.time, a.rule) for a in stored] == [(a.time, a.rule) for a in got]


async def test_rules_and_the_alert_log_survive_a_restart_and_deleted_config_rules_stay_deleted(tmp_path):
    rt, got, _ = await replay(tmp_path, [Z_RULE])
    assert got
    # edit through the runtime as the UI does (needs a started runtime: reuse its db)
    rt2 = Runtime(rt.config)
    await rt2.start()
    try:
        rules = {r.name: r for r in rt2.rules.alerting.rules.values()}
        assert set(rules) == {"z outside 1.5"}
        added = await rt2.rules.save(Rule(name="btc above 1", metric="price", symbol="BTCUSDT",
                                         timeframe="1m", op=">", threshold=1.0))
        assert added.id is not None and added.id in rt2.rules.alerting.rules
        await rt2.rules.delete(rules["z outside 1.5"].id)
        assert [a.time for a in rt2.rules.recent_alerts(10_000)][: len(got)] == [a.time for a in got]
    finally:
        await rt2.stop()
    rt3 = Runtime(rt.config)
    await rt3.start()
    try:
        assert {r.name for r in rt3.rules.alerting.rules.values()} == {"btc above 1"}  # not re-seeded
        assert len(rt3.rules.recent_alerts(10_000)) >= len(got)
    finally:
        await rt3.stop()


async def test_the_default_rule_is_the_first_pairs_z_outside_2(tmp_path):
    cfg = _config(tmp_path, source="replay")
    rt = Runtime(cfg)
    await rt.start()
    try:
        (rule,) = rt.rules.alerting.rules.values()
        assert (rule.metric, rule.pair, rule.op, rule.threshold) == ("zscore", ("BTCUSDT", "ETHUSDT"), "outside", 2.0)
    finally:
        await rt.stop()


def test_a_bad_rule_in_config_names_its_key(tmp_path):
    from quantpanel.errors import ConfigError

    with pytest.raises(ConfigError, match=r"alerts\.rules\.0.*pair"):
        _config(tmp_path, **{"alerts.rules": [{"name": "x", "metric": "zscore", "op": ">", "threshold": 1}]})
    # a rule on a symbol the feed does not ingest is no error: kept, and inactive (issue 13)
    cfg = _config(tmp_path, **{"alerts.rules": [{"name": "x", "metric": "price", "symbol": "DOGEUSDT",
                                                 "op": ">", "threshold": 1}]})
    assert "DOGEUSDT not ingested" in inactive_reason(cfg.alerts.rules[0], cfg.symbols, cfg.timeframes)


# -- webhook -------------------------------------------------------------------------------------
class _Server:
    """A real HTTP server on 127.0.0.1 recording POSTed JSON; ``delay`` and ``status`` per server."""

    def __init__(self, *, delay: float = 0.0, status: int = 200) -> None:
        self.bodies: list[dict] = []
        self.hits = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.hits += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay)
                if status == 200:
                    outer.bodies.append(json.loads(body))
                try:
                    self.send_response(status)
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _alert(i: int) -> Alert:
    return Alert(i, 1, "r", "zscore", "A/B", "1s", 2.5, 2.0, "zscore A/B 1s > 2")


def test_webhook_posts_each_alert_as_json():
    srv = _Server()
    hook = Webhook(srv.url, timeout_s=2)
    try:
        hook.put([_alert(1), _alert(2)])
        assert hook.drain(10)
        assert [b["time"] for b in srv.bodies] == [1, 2] and srv.bodies[0]["value"] == 2.5
        assert srv.bodies[0]["type"] == "alert" and hook.stats.sent == 2 and hook.stats.failed == 0
    finally:
        hook.close()
        srv.close()


def test_failing_and_slow_webhooks_are_retried_counted_and_logged_never_blocking(caplog):
    failing, slow = _Server(status=500), _Server(delay=1.0)
    bad = Webhook(failing.url, timeout_s=1, retries=2, backoff_s=0.01)
    late = Webhook(slow.url, timeout_s=0.2, retries=1, backoff_s=0.01, queue_max=3)
    try:
        with caplog.at_level(logging.WARNING, logger="quantpanel.notify.webhook"):
            started = time.perf_counter()
            bad.put([_alert(1)])
            late.put([_alert(i) for i in range(10)])  # more than the queue holds
            put_s = time.perf_counter() - started
            assert bad.drain(10) and late.drain(30)
        assert put_s < 0.5  # put() never waits for the network (a bound, not a benchmark)
        assert failing.hits == 3 and bad.stats.failed == 1 and bad.stats.retries == 2
        assert "500" in bad.stats.last_error
        assert late.stats.dropped >= 6 and late.stats.failed + late.stats.sent == 10 - late.stats.dropped
        assert late.stats.failed >= 1 and "timed out" in late.stats.last_error
        assert "webhook gave up" in caplog.text
    finally:
        bad.close()
        late.close()
        failing.close()
        slow.close()


async def test_ingest_completes_at_full_rate_with_a_slow_webhook(tmp_path):
    slow = _Server(delay=2.0)
    try:
        rules = [{**Z_RULE, "threshold": 0.5, "reset": 0.4}]  # fires often
        rt, got, _ = await replay(tmp_path, rules, **{"alerts.webhook.url": slow.url,
                                                     "alerts.webhook.timeout_s": 0.5,
                                                     "alerts.webhook.retries": 0})
        assert len(got) > 5
        assert rt.ingestion.writer.stats.ticks_written == 35_389  # everything stored, nothing waited
        assert rt.rules.webhook.stats.failed + rt.rules.webhook.stats.sent + rt.rules.webhook.stats.dropped \
            + rt.rules.webhook._q.qsize() <= len(got)
        assert rt.rules.webhook.stats.failed >= 1
    finally:
        slow.close()

"""Hostile input, fuzzed with a fixed example budget (derandomized: the same examples every run):
the frame parser, the CSV importers, the config loader and the alert-rule parser either accept
the input or raise their own error naming what is wrong — never crash — and stored data is
untouched by a rejected file."""

from __future__ import annotations

import string
from pathlib import Path

import orjson
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantpanel.alerts.rules import RuleError, parse_rule
from quantpanel.config import load_config
from quantpanel.errors import ConfigError, FrameError, ImportFileError
from quantpanel.feeds.binance_futures import parse_frame
from quantpanel.storage.importer import import_file, unpack_agg_trades
from quantpanel.storage.ohlc import parse_ohlc_csv
from quantpanel.storage.store import Store

from tests.offline.cases import zipped as zip_bytes

BUDGET = settings(max_examples=300, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

GOOD_FRAME = {"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "E": 1723161600123, "a": 5,
              "s": "BTCUSDT", "p": "60000.1", "q": "0.002", "f": 7, "l": 7, "T": 1723161600120, "m": True}}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=20)


@BUDGET
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300), json_values.map(orjson.dumps)))
def test_frame_parser_rejects_garbage_with_frame_error(raw):
    try:
        parse_frame(raw)
    except FrameError:
        pass


@BUDGET
@given(st.sampled_from(sorted(GOOD_FRAME["data"])), json_values)
def test_frame_parser_checks_every_field(key, value):
    frame = {**GOOD_FRAME, "data": {**GOOD_FRAME["data"], key: value}}
    try:
        out = parse_frame(orjson.dumps(frame))
    except FrameError as exc:
        assert str(exc)
        return
    if isinstance(out, tuple):  # accepted: the values are the frame's, typed
        tick, event_ms = out
        assert isinstance(tick.price, float) and isinstance(tick.agg_id, int) and isinstance(event_ms, int)


# CSV-shaped noise: cells of numbers, words, times and junk, ragged rows
cell = st.one_of(st.integers(-10, 2_000_000_000_000).map(str), st.floats(allow_nan=True).map(str),
                 st.sampled_from(["", "abc", "2024-01-01", "2024-01-01T00:01:00Z", "true", "NaN", '"', ",,"]),
                 st.text(string.printable, max_size=8))
csv_text = st.tuples(
    st.lists(st.sampled_from(["time", "open", "high", "low", "close", "volume", "symbol", "x", "Open",
                              "timestamp", "agg_trade_id", "price"]), max_size=8),
    st.lists(st.lists(cell, max_size=9), max_size=12),
).map(lambda hr: ("\n".join([",".join(hr[0])] + [",".join(r) for r in hr[1]]) + "\n"))


@BUDGET
@given(st.one_of(csv_text.map(str.encode), st.binary(max_size=400)))
def test_ohlc_parser_accepts_or_names_the_problem(data):
    try:
        series = parse_ohlc_csv(data, name="FUZZUSDT-simulated.csv", max_bytes=10_000)
    except ImportFileError as exc:
        assert "FUZZUSDT-simulated.csv" in str(exc)
        return
    for s in series:  # accepted: sorted, unique, consistent bars
        f = s.frame
        assert f["time"].is_monotonic_increasing and f["time"].is_unique
        assert (f["high"] >= f["low"]).all()


@BUDGET
@given(st.one_of(csv_text, st.text(max_size=300)), st.booleans())
def test_agg_trades_import_stores_all_or_nothing(tmp_path_factory, usdm_ticks, text, zipped):
    name = "BTCUSDT-aggTrades-2024-08-08.csv"
    data = text.encode()
    if zipped:
        data, name = zip_bytes(name, data), name.replace(".csv", ".zip")
    tmp = Path(tmp_path_factory.mktemp("f"))
    with Store(tmp / "q.db") as store:
        store.insert_ticks(usdm_ticks[:50])
        before = store.tick_ids()
        try:
            csv_name, csv = unpack_agg_trades(name, data, max_bytes=100_000)
            (tmp / csv_name).write_bytes(csv)
            res = import_file(store, tmp / csv_name)
        except ImportFileError as exc:
            assert "BTCUSDT-aggTrades-2024-08-08" in str(exc)
            assert store.tick_ids() == before  # nothing of a rejected file
            return
        after = store.tick_ids()
        assert before <= after and len(after - before) == res.stored


config_trees = st.dictionaries(
    st.sampled_from(["symbols", "timeframes", "feed", "storage", "server", "windows", "alerts", "replay",
                     "source", "bogus"]),
    st.one_of(json_values, st.dictionaries(st.sampled_from(["ws_url", "rest_url", "port", "host", "db_path",
                                                             "zscore", "rules", "speed", "nope"]),
                                           json_values, max_size=3)),
    max_size=4)


@BUDGET
@given(config_trees)
def test_config_loader_accepts_or_names_the_key(tmp_path_factory, tree):
    path = Path(tmp_path_factory.mktemp("cfg")) / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


@BUDGET
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_config_loader_survives_a_broken_file(tmp_path_factory, raw):
    path = Path(tmp_path_factory.mktemp("cfg")) / "config.yaml"
    path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


rule_trees = st.dictionaries(
    st.sampled_from(["name", "metric", "pair", "symbol", "timeframe", "op", "threshold", "lower", "for_bars",
                     "reset", "reset_lower", "cooldown_s", "muted", "window", "extra"]),
    st.one_of(json_values, st.sampled_from(["zscore", "price", "BTCUSDT/ETHUSDT", "BTCUSDT", "1m", ">",
                                            "outside", "crosses_above", 2.0, -1, 0])),
    max_size=8)


@BUDGET
@given(rule_trees)
def test_rule_parser_accepts_or_names_the_field(tree):
    try:
        rule = parse_rule(tree, where="fuzz")
    except RuleError as exc:
        assert str(exc).startswith("fuzz")
        return
    assert rule.name

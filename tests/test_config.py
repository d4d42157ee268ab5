from pathlib import Path

import pytest

from quantpanel.config import load_config
from quantpanel.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_repository_config_is_valid_and_paths_resolve_next_to_it():
    cfg = load_config(ROOT / "config.yaml")
    assert cfg.symbols == ("BTCUSDT", "ETHUSDT")
    assert cfg.timeframes == ("1s", "1m", "5m")
    assert cfg.replay.data == ROOT / "data/replay/binance-usdm-btcusdt-ethusdt-2024-08-08.trades.gz"
    assert cfg.replay.data.is_file()
    assert cfg.feed.ws_url == "wss://fstream.binance.com/market/stream"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("bogus: 1", r"config.yaml: bogus: unknown key"),
        ("feed:\n  batch_size: 3", r"feed.batch_size: unknown key"),
        ("feed:\n  batch_interval_ms: fast", r"feed.batch_interval_ms: Input should be a valid integer"),
        ("symbols: []", r"symbols: must list at least one symbol"),
        ("symbols: [BTC-USDT]", r"symbols: symbol 'BTC-USDT' is not a Binance symbol"),
        ("symbols: [BTCUSDT, btcusdt]", r"symbols: symbol BTCUSDT is listed twice"),
        ("timeframes: [2m]", r"timeframes: unknown timeframe"),
        ("source: sometimes", r"source: Input should be 'auto', 'live' or 'replay'"),
        ("feed:\n  ws_url: https://example.com", r"feed.ws_url: must start with ws:// or wss://"),
        ("server:\n  port: 70000", r"server.port: Input should be less than or equal to 65535"),
        ("dashboard:\n  default_timeframe: 5m\ntimeframes: [1s]", r"dashboard.default_timeframe: '5m' is not in timeframes"),
        ("- a\n- b", r"top level must be a mapping"),
        ("symbols: [unclosed", r"not valid YAML"),
    ],
)
def test_bad_config_names_the_key_and_the_problem(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_overrides_win_and_are_validated_too(tmp_path):
    path = write(tmp_path, "symbols: [BTCUSDT]\nfeed:\n  ws_url: wss://a/stream\n")
    cfg = load_config(path, {"feed.ws_url": "ws://127.0.0.1:1/stream", "symbols": "ethusdt,solusdt"})
    assert cfg.feed.ws_url == "ws://127.0.0.1:1/stream"
    assert cfg.symbols == ("ETHUSDT", "SOLUSDT")
    with pytest.raises(ConfigError, match=r"server.port"):
        load_config(path, {"server.port": -1})


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_env_var_selects_config(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTPANEL_CONFIG", str(write(tmp_path, "symbols: [SOLUSDT]")))
    assert load_config().symbols == ("SOLUSDT",)

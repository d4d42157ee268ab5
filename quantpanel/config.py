"""config.yaml -> a typed, validated, frozen ``Config``.

Validation is pydantic's (strict about unknown keys); ``load_config`` turns its errors into one
``ConfigError`` whose lines each name the key path, e.g. ``feed.batch_interval_ms: ...``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from quantpanel.alerts.rules import Rule
from quantpanel.errors import ConfigError
from quantpanel.models import MARKET_STREAMS, SPOT_SUFFIX, TIMEFRAMES

__all__ = ["Config", "alert_rules", "load_config", "DEFAULT_CONFIG_PATHS", "BINANCE_FUTURES_WS",
           "BINANCE_FUTURES_PUBLIC_WS"]

#: Binance USD-M futures combined-stream endpoint of the ``market`` route (aggTrade lives there).
BINANCE_FUTURES_WS = "wss://fstream.binance.com/market/stream"
#: Binance spot's combined-stream endpoint (the spot twins of ``feed.spot_symbols``).
BINANCE_SPOT_WS = "wss://stream.binance.com:9443/stream"
#: ... and of the ``public`` route (bookTicker and depth live there, so they need a second connection).
BINANCE_FUTURES_PUBLIC_WS = "wss://fstream.binance.com/public/stream"
BINANCE_FUTURES_REST = "https://fapi.binance.com"
DEFAULT_CONFIG_PATHS = ("config.yaml",)
log = logging.getLogger(__name__)
_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeedConfig(_Section):
    """Where and how the live feed connects."""

    ws_url: str = BINANCE_FUTURES_WS
    public_ws_url: str = BINANCE_FUTURES_PUBLIC_WS
    rest_url: str = BINANCE_FUTURES_REST
    # per symbol: aggTrade, markPrice@1s and forceOrder on ws_url; bookTicker on public_ws_url
    streams: tuple[str, ...] = ("aggTrade", "markPrice@1s", "forceOrder", "bookTicker")
    stream_silence_s: float = Field(15.0, gt=0, le=3_600)  # a subscribed stream silent this long is reported
    open_interest_s: float = Field(60.0, ge=0, le=86_400)  # poll GET /fapi/v1/openInterest this often; 0 = off
    # futures symbols whose spot twin is followed too (venue spot, on spot_ws_url): its trades
    # build bars under SYMBOL.SPOT, and the futures symbol gets its live basis against it
    spot_symbols: tuple[str, ...] = ()
    spot_ws_url: str = BINANCE_SPOT_WS
    connect_timeout_s: float = Field(5.0, gt=0, le=120)
    batch_max_ticks: int = Field(500, ge=1, le=100_000)
    batch_interval_ms: int = Field(75, ge=1, le=5_000)
    silence_timeout_s: float = Field(30.0, gt=0, le=3_600)
    backoff_initial_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=600)
    backfill_max_hold_s: float = Field(15.0, gt=0, le=600)  # hold the live stream this long for a gap
    rest_weight_limit_1m: int = Field(2400, ge=20, le=1_000_000)  # the REST server's request-weight limit
    max_connection_age_s: float = Field(84_600.0, ge=0, le=86_400)  # roll over before Binance's 24 h cut

    @field_validator("streams")
    @classmethod
    def _streams(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [s for s in v if s not in MARKET_STREAMS]
        if bad:
            raise ValueError(f"unknown stream(s) {bad}; expected some of {list(MARKET_STREAMS)}")
        if "aggTrade" not in v:
            raise ValueError("must include aggTrade (the trades every bar is built from)")
        if "markPrice" in v and "markPrice@1s" in v:
            raise ValueError("list markPrice (every 3 s) or markPrice@1s, not both")
        return tuple(dict.fromkeys(v))

    @field_validator("spot_symbols", mode="before")
    @classmethod
    def _spot(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [s for s in re.split(r"[,\s]+", v) if s]
        if isinstance(v, (list, tuple)):
            out = [str(s).strip().upper().removesuffix(SPOT_SUFFIX) for s in v]
            bad = [s for s in out if not _SYMBOL.match(s)]
            if bad:
                raise ValueError(f"{bad} are not Binance symbols (A-Z, 0-9)")
            return tuple(dict.fromkeys(out))
        return v

    @field_validator("ws_url", "public_ws_url", "spot_ws_url")
    @classmethod
    def _ws_scheme(cls, v: str) -> str:
        if not v.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return v

    @field_validator("rest_url")
    @classmethod
    def _http_scheme(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):  # "": no REST (no backfill, no polls)
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class ReplayConfig(_Section):
    """The local Binance-compatible exchange used offline (source ``replay``, or ``auto`` fallback)."""

    data: Path = Path("data/replay/binance-usdm-btcusdt-ethusdt-2024-08-08.trades.gz")
    # real spot trades of the same minutes, served as the spot twins (feed.spot_symbols; null: none)
    spot: Path | None = Path("data/replay/binance-spot-btcusdt-ethusdt-2024-08-08.trades.gz")
    # real bookTicker frames of the same minutes, served on the public route (null: no quotes)
    quotes: Path | None = Path("data/replay/binance-usdm-btcusdt-ethusdt-2024-08-08.bookticker.gz")
    label: str = (
        "real Binance USD-M trades and best bid/ask and real spot trades, BTCUSDT+ETHUSDT, "
        "2024-08-08 23:54-00:00 UTC "
        "(trade stream served as aggTrade; times shifted to now, looping); mark price, funding, "
        "liquidations and open interest SIMULATED"
    )
    simulated: bool = False  # the trades are real; what is simulated besides them, the label says
    funding_interval_s: int = Field(60, ge=1, le=86_400)  # simulated funding (Binance: every 8 h)
    speed: float = Field(1.0, ge=0)  # 0 = as fast as possible
    loop: bool = True
    rebase_to_now: bool = True
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65_535)  # 0 = any free port


class StorageConfig(_Section):
    """SQLite files. Replayed ticks go to their own file so they never mix with live history."""

    db_path: Path = Path("data/quantpanel.db")
    replay_db_path: Path = Path("data/replay.db")
    max_upload_mb: float = Field(50.0, gt=0, le=2048)  # OHLC / aggTrades files uploaded or imported
    bundled_ohlc_dir: Path = Path("data/ohlc")  # real OHLC files the Offline tab offers in one click
    keep_quotes: bool = False  # store every bookTicker update too (per-bar quote statistics always are)
    # `quantpanel archive` moves ticks of whole UTC days older than this to Parquet (0 / None = never)
    archive_after_days: int | None = Field(30, ge=0, le=36_500)
    archive_dir: Path = Path("data/archive")  # <archive_dir>/<SYMBOL>/<YYYY-MM-DD>.parquet


class ServerConfig(_Section):
    """The Panel/Bokeh server. Binds loopback unless told otherwise."""

    host: str = "127.0.0.1"
    port: int = Field(5006, ge=0, le=65_535)
    allow_websocket_origin: tuple[str, ...] = ()


class BarsConfig(_Section):
    """Bar closing; see docs/ANALYTICS.md "Bars". (The warm-up length is ``dashboard.buffer_bars``.)"""

    close_grace_ms: int = Field(250, ge=0, le=60_000)

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        # bars.warmup_bars was never read: accepted in older config files, with a warning
        if isinstance(data, dict) and "warmup_bars" in data:
            log.warning("config bars.warmup_bars is no longer used (the warm-up is dashboard.buffer_bars): "
                        "remove it")
            data = {k: v for k, v in data.items() if k != "warmup_bars"}
        return data


class DashboardConfig(_Section):
    """How sessions are fed: throttled pulls of bounded buffers."""

    push_interval_ms: int = Field(500, ge=50, le=10_000)  # periodic pull: status strip, tables
    live_push_ms: int = Field(50, ge=0, le=10_000)  # new ticks wake a session at most this often; 0 = off
    full_rate_sessions: int = Field(10, ge=0)  # beyond this many, live pushes and charts slow down; 0 = never
    chart_refresh_ms: int = Field(1000, ge=0, le=60_000)  # live charts redraw at most this often (cards: live)
    buffer_bars: int = Field(600, ge=10, le=100_000)
    default_timeframe: str = "1s"


class WindowsConfig(_Section):
    """Analytics windows in bars (used by the pair analytics)."""

    zscore: int = Field(60, ge=2)
    correlation: int = Field(60, ge=2)
    lookback: int = Field(0, ge=0)  # 0 = all aligned bars loaded
    hedge_refit_bars: int = Field(60, ge=1)
    adf_maxlag: int | None = Field(None, ge=0)  # None = statsmodels' 12*(n/100)^(1/4)
    hurst_max_lag: int = Field(100, ge=3)


class KalmanConfig(_Section):
    """Kalman-filter hedge ratio (ANALYTICS.md): Vw = delta / (1 - delta), observation noise Ve."""

    delta: float = Field(1e-4, gt=0, lt=1)
    ve: float = Field(1e-3, gt=0)


class BacktestConfig(_Section):
    """Defaults of the mean-reversion backtest (UI and CLI override them)."""

    entry: float = Field(2.0, gt=0)
    exit: float = Field(0.0, ge=0)
    stop: float | None = Field(None, gt=0)
    fee_bps: float = Field(4.0, ge=0)
    slippage_bps: float = Field(0.0, ge=0)
    slippage_model: Literal["fixed", "half_spread"] = "fixed"  # half_spread: half the stored quoted spread
    funding: Literal["auto", "off"] = "auto"  # auto: charged when both legs have stored funding events


class WebhookConfig(_Section):
    """Optional HTTP POST of every alert as JSON; never blocks ingestion."""

    url: str | None = None
    timeout_s: float = Field(5.0, gt=0, le=60)
    retries: int = Field(3, ge=0, le=10)
    queue_max: int = Field(1_000, ge=1)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} is not an http:// or https:// URL")
        return v or None


class AlertsConfig(_Section):
    """Alert rules seeded into the database (then edited in the UI), the webhook, the UI log."""

    rules: tuple[Rule, ...] | None = None  # None: |z| > 2 (re-arm inside ±1) on the first two symbols
    webhook: WebhookConfig = WebhookConfig()
    log_rows: int = Field(500, ge=1, le=100_000)  # alerts each session's log shows
    health_interval_s: float = Field(1.0, gt=0, le=60)  # feed rules are evaluated this often


class BrokerConfig(_Section):
    """Scale-out over Redis Streams (``quantpanel ingest --broker``, ``serve --broker``): off by
    default; the embedded single process needs no broker."""

    url: str = ""  # redis://HOST:PORT/DB; "" = no broker (ingestion runs inside the server)
    prefix: str = Field("qp", min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")  # key namespace
    maxlen: int = Field(5_000, ge=100, le=10_000_000)  # entries kept per stream (MAXLEN ~)
    heartbeat_s: float = Field(0.5, gt=0, le=60)  # ingest publishes its status this often
    offline_after_s: float = Field(3.0, gt=0, le=600)  # no heartbeat this long: "ingest offline"
    command_timeout_s: float = Field(15.0, gt=0, le=600)  # a dashboard waits this long for a reply

    @field_validator("url")
    @classmethod
    def _redis(cls, v: str) -> str:
        if v and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{v!r} is not a redis:// URL (redis://HOST:PORT/DB)")
        return v


class Config(_Section):
    """The whole configuration; every field has a working default."""

    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    timeframes: tuple[str, ...] = ("1s", "1m", "5m")
    source: Literal["auto", "live", "replay"] = "auto"
    feed: FeedConfig = FeedConfig()
    replay: ReplayConfig = ReplayConfig()
    storage: StorageConfig = StorageConfig()
    server: ServerConfig = ServerConfig()
    bars: BarsConfig = BarsConfig()
    dashboard: DashboardConfig = DashboardConfig()
    windows: WindowsConfig = WindowsConfig()
    kalman: KalmanConfig = KalmanConfig()
    backtest: BacktestConfig = BacktestConfig()
    alerts: AlertsConfig = AlertsConfig()
    broker: BrokerConfig = BrokerConfig()

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [s for s in re.split(r"[,\s]+", v) if s]
        if isinstance(v, (list, tuple)):
            out = []
            for s in v:
                if not isinstance(s, str):
                    raise ValueError(f"symbol {s!r} is not a string")
                s = s.strip().upper()
                if not _SYMBOL.match(s):
                    raise ValueError(f"symbol {s!r} is not a Binance symbol (A-Z, 0-9)")
                if s in out:
                    raise ValueError(f"symbol {s} is listed twice")
                out.append(s)
            if not out:
                raise ValueError("must list at least one symbol")
            if len(out) > 200:
                raise ValueError("at most 200 symbols (Binance's streams per connection)")
            return tuple(out)
        return v

    @field_validator("timeframes")
    @classmethod
    def _timeframes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("must list at least one timeframe")
        bad = [t for t in v if t not in TIMEFRAMES]
        if bad:
            raise ValueError(f"unknown timeframe(s) {bad}; expected some of {list(TIMEFRAMES)}")
        return tuple(sorted(set(v), key=lambda t: TIMEFRAMES[t]))

    @model_validator(mode="after")
    def _default_tf(self) -> Config:
        if self.dashboard.default_timeframe not in self.timeframes:
            raise ValueError(
                f"dashboard.default_timeframe: {self.dashboard.default_timeframe!r} "
                f"is not in timeframes {list(self.timeframes)}"
            )
        # Alert rules naming symbols or timeframes the feed does not have are not an error: they
        # stay stored and are marked inactive (alerts.rules.inactive_reason), so a --symbols
        # override never turns a valid config file into a fatal one.
        return self


def alert_rules(cfg: Config) -> tuple[Rule, ...]:
    """The configured rules, or the default: z-score of the first pair outside ±2."""
    if cfg.alerts.rules is not None:
        return cfg.alerts.rules
    if len(cfg.symbols) < 2:
        return ()
    a, b = cfg.symbols[:2]
    # a str here, but one of `timeframes` (Config checks it), all of which Rule takes; Rule checks it again
    timeframe = cast("Any", cfg.dashboard.default_timeframe)
    return (Rule(name=f"z-score {a}/{b} outside ±2", metric="zscore", pair=(a, b),
                 timeframe=timeframe, op="outside", threshold=2.0, reset=1.0),)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: cannot override inside {key!r}, which is not a mapping")
        node = child
    node[leaf] = value


def _shown(value: Any) -> str:
    """An offending value, short: a problem line never dumps the config (or a section of it)."""
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format(err: ValidationError, source: str) -> str:
    """One line per problem: file, key path, why, the offending value."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        if not path:  # a check across keys: its message starts with the key path
            lines.append(f"{source}: {msg}")
        else:
            lines.append(f"{source}: {path}: {msg} (got {_shown(e.get('input'))})")
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _resolve_paths(cfg: Config, base: Path) -> Config:
    """Make relative file paths relative to the config file, so any working directory works."""

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    return cfg.model_copy(
        update={
            "replay": cfg.replay.model_copy(update={
                "data": fix(cfg.replay.data),
                "quotes": fix(cfg.replay.quotes) if cfg.replay.quotes is not None else None,
                "spot": fix(cfg.replay.spot) if cfg.replay.spot is not None else None}),
            "storage": cfg.storage.model_copy(
                update={
                    "db_path": fix(cfg.storage.db_path),
                    "replay_db_path": fix(cfg.storage.replay_db_path),
                    "bundled_ohlc_dir": fix(cfg.storage.bundled_ohlc_dir),
                    "archive_dir": fix(cfg.storage.archive_dir),
                }
            ),
        }
    )


def find_config_path(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Explicit path, else ``$QUANTPANEL_CONFIG``, else ``./config.yaml`` if present."""
    if path is not None:
        return Path(path)
    env = os.environ.get("QUANTPANEL_CONFIG")
    if env:
        return Path(env)
    for candidate in DEFAULT_CONFIG_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> Config:
    """Read and validate the config; ``overrides`` (dotted keys, e.g. ``feed.ws_url``) win.

    Raises ``ConfigError`` naming the file, the key path and what is wrong.
    """
    cfg_path = find_config_path(path)
    tree: dict[str, Any] = {}
    source = "defaults"
    if cfg_path is not None:
        source = str(cfg_path)
        try:
            text = cfg_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{cfg_path}: cannot read config file: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{cfg_path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{cfg_path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{cfg_path}: top level must be a mapping, got {type(loaded).__name__}")
        tree = loaded
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(tree, dotted, value)
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None
    base = cfg_path.resolve().parent if cfg_path is not None else Path.cwd()
    return _resolve_paths(cfg, base)

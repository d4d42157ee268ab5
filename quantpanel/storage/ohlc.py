"""OHLC CSV files (offline mode): parse and validate completely before anything is stored.

A file has a time column and open/high/low/close (volume optional), one symbol per file or a
symbol column. Column names are matched case-insensitively against common variants; a Binance
kline dump without a header line is read by its 12-column layout. Times may be ISO-8601 or epoch
seconds / ms / µs / ns (``quantpanel.epochs`` tells them apart). The timeframe is the data's own
bar interval. What a file does not say (volume, trades, vwap, taker buy volume) is NaN, never
invented; vwap comes from a vwap column or quote volume / volume. Every problem raises
``ImportFileError`` naming the file, the line (1 = the header) and the column.
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from quantpanel.epochs import EpochError, epochs_to_ms
from quantpanel.errors import ImportFileError
from quantpanel.models import SERIES_TIMEFRAMES
from quantpanel.storage.store import OHLC_BAR_COLUMNS, Store

__all__ = ["OhlcSeries", "parse_ohlc_csv", "looks_like_ohlc", "read_file_bytes", "is_ohlc_file",
           "store_ohlc", "OHLC_TIMEFRAMES", "OHLC_COLUMNS"]

OHLC_TIMEFRAMES: dict[str, int] = SERIES_TIMEFRAMES
OHLC_COLUMNS = OHLC_BAR_COLUMNS
#: data.binance.vision kline CSV columns (the header newer files have; older ones have none)
KLINE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
                 "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore")
_VARIANTS = {
    "time": ("time", "timestamp", "date", "datetime", "open_time", "open time", "opentime", "ts", "t"),
    "open": ("open", "o", "open_price"),
    "high": ("high", "h", "high_price"),
    "low": ("low", "l", "low_price"),
    "close": ("close", "c", "close_price", "last"),
    "volume": ("volume", "vol", "v", "base_volume", "volume_base"),
    "trades": ("trades", "count", "number_of_trades", "num_trades", "trade_count"),
    "vwap": ("vwap",),
    "quote_volume": ("quote_volume", "quote_asset_volume", "quote volume"),
    "buy_volume": ("buy_volume", "taker_buy_volume", "taker_buy_base_volume", "taker_buy_base_asset_volume"),
    "symbol": ("symbol", "ticker", "pair", "instrument"),
}
_SYMBOL_IN_NAME = re.compile(r"(?<![A-Z0-9])([A-Z0-9]{2,}?(?:USDT|USDC|BUSD|FDUSD|USD|BTC|ETH))(?![A-Z0-9])")


@dataclass(frozen=True)
class OhlcSeries:
    """One symbol's validated bars: ``frame`` has OHLC_COLUMNS, ``time`` in epoch ms, sorted."""

    symbol: str
    timeframe: str
    frame: pd.DataFrame


def _is_kline_row(line: str) -> bool:
    """A headerless Binance kline dump's first line: 12 numbers."""
    cells = line.strip().split(",")
    try:
        return len(cells) == len(KLINE_COLUMNS) and all(np.isfinite(float(c)) for c in cells)
    except ValueError:
        return False


def looks_like_ohlc(header: str) -> bool:
    """A CSV header line naming open, high, low and close columns, or a kline dump's first row."""
    cols = {c.strip().strip('"').lower() for c in header.split(",")}
    return (all(any(v in cols for v in _VARIANTS[k]) for k in ("open", "high", "low", "close"))
            or _is_kline_row(header))


def _fail(name: str, msg: str) -> ImportFileError:
    return ImportFileError(f"{name}: {msg}")


def _columns(df: pd.DataFrame, name: str) -> dict[str, str]:
    by_lower = {c.strip().lower(): c for c in df.columns}
    found = {}
    for key, variants in _VARIANTS.items():
        hit = next((by_lower[v] for v in variants if v in by_lower), None)
        if hit is not None:
            found[key] = hit
    missing = [k for k in ("time", "open", "high", "low", "close") if k not in found]
    if missing:
        raise _fail(name, f"missing column(s) {', '.join(missing)}; the header has "
                          f"{', '.join(map(str, df.columns))}")
    return found


def _times(raw: pd.Series, name: str, col: str) -> np.ndarray:
    """Epoch ms from ISO-8601 strings or epoch s / ms / µs / ns (one unit per file)."""
    num = pd.to_numeric(raw, errors="coerce")
    if num.notna().all():
        try:
            return epochs_to_ms(num.to_numpy())[0]
        except EpochError as exc:
            raise _fail(name, f"line {exc.index + 2}, column {col}: {exc}") from None
    if num.notna().any():
        bad = int(np.flatnonzero(num.isna().to_numpy())[0])
        raise _fail(name, f"line {bad + 2}, column {col}: {raw.iloc[bad]!r} is not a time like the "
                          f"other rows' epoch numbers")
    parsed = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    if parsed.isna().any():
        bad = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise _fail(name, f"line {bad + 2}, column {col}: {raw.iloc[bad]!r} is not a time "
                          f"(ISO-8601, or epoch s / ms / µs / ns)")
    return (parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ms]")
            .astype("int64").to_numpy())


def _numbers(raw: pd.Series, name: str, col: str, lines: np.ndarray) -> np.ndarray:
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna() | ~np.isfinite(num.to_numpy(dtype="float64", na_value=np.nan))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise _fail(name, f"line {lines[i]}, column {col}: {raw.iloc[i]!r} is not a number")
    return num.to_numpy(dtype="float64")


def _timeframe(t: np.ndarray, name: str, lines: np.ndarray, symbol: str) -> str:
    if len(t) < 2:
        raise _fail(name, f"{symbol}: one bar only; the timeframe cannot be told (need 2 or more rows)")
    d = np.diff(t)
    down = np.flatnonzero(d < 0)
    if len(down):
        i = int(down[0]) + 1
        raise _fail(name, f"line {lines[i]}, column time: earlier than line {lines[i - 1]} (rows must be "
                          f"sorted by time)")
    dup = np.flatnonzero(d == 0)
    if len(dup):
        i = int(dup[0]) + 1
        raise _fail(name, f"line {lines[i]}, column time: duplicate time, also on line {lines[i - 1]}")
    values, counts = np.unique(d, return_counts=True)
    step = int(values[counts.argmax()])
    tf = next((k for k, v in OHLC_TIMEFRAMES.items() if v == step), None)
    if tf is None:
        raise _fail(name, f"{symbol}: bars are {step / 1000:g} s apart, not one of the timeframes "
                          f"{', '.join(OHLC_TIMEFRAMES)}")
    odd = np.flatnonzero(d % step != 0)
    others = [(int(v), int(c)) for v, c in zip(values, counts, strict=True) if v != step and c >= max(2, 0.1 * len(d))]
    if len(odd) or others:
        i = int(odd[0]) + 1 if len(odd) else int(np.flatnonzero(d == others[0][0])[0]) + 1
        gap = int(d[i - 1])
        raise _fail(name, f"line {lines[i]}, column time: mixed timeframes — {gap / 1000:g} s after the "
                          f"previous bar where the file's bars are {tf} apart (one timeframe per file)")
    return tf


def parse_ohlc_csv(data: bytes, *, name: str, symbol: str | None = None, timeframe: str | None = None,
                   max_bytes: int = 50 * 2**20) -> list[OhlcSeries]:
    """Validated series of an OHLC CSV (one per symbol). Raises ImportFileError; stores nothing."""
    if len(data) > max_bytes:
        raise _fail(name, f"{len(data):,} bytes is more than the upload cap of {max_bytes:,} bytes")
    if not data.strip():
        raise _fail(name, "the file is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _fail(name, f"line {line}: not UTF-8 text (byte {exc.start}); save the file as UTF-8 CSV") from None
    headerless = _is_kline_row(text.split("\n", 1)[0])
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True,
                         header=None if headerless else "infer", names=KLINE_COLUMNS if headerless else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise _fail(name, f"not a CSV file: {exc}") from None
    if df.empty:
        raise _fail(name, "the file has a header but no rows")
    cols = _columns(df, name)
    lines = np.arange(len(df)) + (1 if headerless else 2)  # line 1 is the header, if there is one
    if "symbol" in cols:
        syms = df[cols["symbol"]].str.strip().str.upper()
        empty = np.flatnonzero((syms == "").to_numpy())
        if len(empty):
            raise _fail(name, f"line {lines[empty[0]]}, column {cols['symbol']}: empty symbol")
    else:
        sym = (symbol or "").upper() or next(iter(_SYMBOL_IN_NAME.findall(name.upper())), "")
        if not sym:
            raise _fail(name, "cannot tell the symbol: add a symbol column, name the file after it "
                              "(e.g. BTCUSDT-1m.csv) or pass --symbol")
        syms = pd.Series([sym] * len(df))
    if symbol and "symbol" in cols and set(syms) != {symbol.upper()}:
        raise _fail(name, f"--symbol {symbol.upper()} but the symbol column has {sorted(set(syms))}")
    t = _times(df[cols["time"]].str.strip(), name, cols["time"])
    o, h, lo, c = (_numbers(df[cols[k]], name, cols[k], lines) for k in ("open", "high", "low", "close"))
    nan = np.full(len(df), np.nan)

    def optional(key: str) -> np.ndarray:
        """A column the file may lack or leave blank (NaN there); text in it is still an error."""
        if key not in cols:
            return nan
        raw = df[cols[key]]
        given = (raw.str.strip() != "").to_numpy()
        out = nan.copy()
        out[given] = _numbers(raw[given], name, cols[key], lines[given])
        return out

    v, n, bv = optional("volume"), optional("trades"), optional("buy_volume")
    if "vwap" in cols:
        vwap = optional("vwap")
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            vwap = np.where(v > 0, optional("quote_volume") / v, np.where(v == 0, c, np.nan))
    for arr, col in ((o, "open"), (h, "high"), (lo, "low"), (c, "close")):
        nonpos = np.flatnonzero(arr <= 0)
        if len(nonpos):
            raise _fail(name, f"line {lines[nonpos[0]]}, column {cols[col]}: price {arr[nonpos[0]]:g} is not positive")
    neg = np.flatnonzero(v < 0)
    if len(neg):
        raise _fail(name, f"line {lines[neg[0]]}, column {cols['volume']}: negative volume {v[neg[0]]:g}")
    inverted = np.flatnonzero(h < lo)
    if len(inverted):
        i = inverted[0]
        raise _fail(name, f"line {lines[i]}, columns {cols['high']}/{cols['low']}: high {h[i]:g} < low {lo[i]:g}")
    outside = np.flatnonzero((np.maximum(o, c) > h) | (np.minimum(o, c) < lo))
    if len(outside):
        i = outside[0]
        raise _fail(name, f"line {lines[i]}: open {o[i]:g} / close {c[i]:g} outside the bar's range "
                          f"low {lo[i]:g} .. high {h[i]:g}")
    out = []
    for sym in dict.fromkeys(syms):
        m = (syms == sym).to_numpy()
        tf = _timeframe(t[m], name, lines[m], sym)
        if timeframe and tf != timeframe:
            raise _fail(name, f"--timeframe {timeframe}, but {sym}'s bars are {tf} apart")
        frame = pd.DataFrame({"time": t[m], "open": o[m], "high": h[m], "low": lo[m], "close": c[m], "volume": v[m],
                              "trades": n[m], "vwap": vwap[m], "buy_volume": bv[m]})
        out.append(OhlcSeries(sym, tf, frame.reset_index(drop=True)))
    return out


def read_file_bytes(path: Path, *, max_bytes: int) -> bytes:
    """A file's bytes, unpacked from .gz or a one-member .zip; the cap applies to the unpacked size."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read(max_bytes + 1)
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                if len(names) != 1:
                    raise ImportFileError(f"{path}: a zip must hold exactly one CSV, it holds {len(names)} files")
                with zf.open(names[0]) as fh:
                    data = fh.read(max_bytes + 1)
        else:
            with path.open("rb") as fh:
                data = fh.read(max_bytes + 1)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ImportFileError(f"{path}: cannot read: {exc}") from None
    return data


def is_ohlc_file(path: Path) -> bool:
    """Its first line is a header naming open/high/low/close columns."""
    head = read_file_bytes(path, max_bytes=4096)
    return looks_like_ohlc(head.decode("utf-8-sig", errors="replace").splitlines()[0] if head.strip() else "")


def _rows(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    """Store rows of a series, None (SQL NULL) where the file did not say."""
    cols = [frame[c].astype("object").where(frame[c].notna(), None).tolist() for c in OHLC_COLUMNS]
    return list(zip(*cols, strict=True))


def store_ohlc(store: Store, series: list[OhlcSeries]) -> int:
    """All series of one file in one transaction: a failure stores none of them."""
    return store.insert_ohlc((s.symbol, s.timeframe, _rows(s.frame)) for s in series)

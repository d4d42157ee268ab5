"""The data that flows through quantpanel: ticks in, bars out.

``Tick`` is a ``NamedTuple`` rather than a frozen dataclass on purpose: it is created once per trade
on the ingest hot path (~3x cheaper than a slotted frozen dataclass) and is a plain tuple for
``sqlite3.executemany``. It is just as immutable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Tick", "TickBatch", "Bar", "TIMEFRAMES", "TIME_FORMAT", "timeframe_ms"]

#: Supported bar timeframes and their length in milliseconds.
TIMEFRAMES: dict[str, int] = {"1s": 1_000, "1m": 60_000, "5m": 300_000}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # bar and trade times in every CSV we write (UTC)


def timeframe_ms(timeframe: str) -> int:
    """Length of ``timeframe`` in ms; ``ValueError`` names the allowed values."""
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        raise ValueError(
            f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}"
        ) from None


class Tick(NamedTuple):
    """One aggregate trade (Binance ``aggTrade``): the unit everything is built from.

    Ordered within a symbol by ``(time, agg_id)``; ``(symbol, agg_id)`` is unique.
    """

    symbol: str
    time: int  # trade time T, ms since the Unix epoch, UTC
    agg_id: int  # aggregate trade id a
    price: float
    qty: float
    buyer_maker: bool  # m: true when the buyer was the maker (the taker sold)


@dataclass(frozen=True, slots=True)
class TickBatch:
    """Ticks received together, with the receive clock used for lag and wall-clock bar closing."""

    ticks: tuple[Tick, ...]
    received_ms: int  # local wall clock when the batch was flushed
    event_ms: int  # largest exchange event time E in the batch (0 when unknown)


@dataclass(frozen=True, slots=True)
class Bar:
    """An OHLCV bar covering ``[time, time + timeframe)``; see ANALYTICS.md "Bars"."""

    symbol: str
    timeframe: str
    time: int  # bar open, ms since epoch, a multiple of the timeframe
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    vwap: float
    buy_volume: float
    closed: bool = True

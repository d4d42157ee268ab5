"""The data that flows through quantpanel: ticks in, bars out.

``Tick`` is a ``NamedTuple`` rather than a frozen dataclass on purpose: it is created once per trade
on the ingest hot path (~3x cheaper than a slotted frozen dataclass) and is a plain tuple for
``sqlite3.executemany``. It is just as immutable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["Tick", "TickBatch", "Bar", "BAR_COLUMNS", "Quote", "MarkPrice", "Liquidation", "FundingEvent",
           "OpenInterest", "QuoteBar", "MarketEvent", "MarketBatch", "MARKET_STREAMS", "SPOT_SUFFIX",
           "TIMEFRAMES", "SERIES_TIMEFRAMES", "TIME_FORMAT", "timeframe_ms", "SYNTHETIC_ID_BASE",
           "synthetic_agg_id", "is_synthetic_id", "TickColumns", "SIDE_UNKNOWN"]

#: Timeframes the bar builder makes from ticks (config ``timeframes``), length in ms; all aligned
#: to the Unix epoch, so ``1d`` bars start at 00:00 UTC (ANALYTICS.md "Timeframes").
TIMEFRAMES: dict[str, int] = {"1s": 1_000, "1m": 60_000, "5m": 300_000, "15m": 900_000,
                              "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}
#: Every timeframe a stored series may have: the builder's plus those an imported OHLC file may carry.
SERIES_TIMEFRAMES: dict[str, int] = dict(sorted(
    {**TIMEFRAMES, "3m": 180_000, "30m": 1_800_000, "1w": 604_800_000}.items(), key=lambda kv: kv[1]))
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # bar and trade times in every CSV we write (UTC)
#: A bar's fields as every table and file of bars holds them, in this order (the ``bars`` and
#: ``ohlc_bars`` tables, ``quantpanel bars``, the dashboard's frames and downloads).
BAR_COLUMNS: tuple[str, ...] = ("time", "open", "high", "low", "close", "volume", "trades", "vwap",
                                "buy_volume")

#: Trades recorded without exchange ids (a browser collector's NDJSON) get keys below this base,
#: increasing with time: they never collide with a real aggregate trade id (always >= 0), never
#: look like a gap to the id sequencer, and importing the same file twice stores it once.
SYNTHETIC_ID_BASE = -(2**62)


def synthetic_agg_id(time_ms: int, nth: int) -> int:
    """The stable key of the ``nth`` (0-based, file order) trade of a symbol at ``time_ms``."""
    if not 0 <= nth < 1000:
        raise ValueError(f"at most 1000 trades of a symbol per millisecond, got trade {nth + 1}")
    return SYNTHETIC_ID_BASE + time_ms * 1000 + nth


def is_synthetic_id(agg_id: int) -> bool:
    return agg_id < 0


def timeframe_ms(timeframe: str) -> int:
    """Length of ``timeframe`` in ms; ``ValueError`` names the allowed values."""
    try:
        return SERIES_TIMEFRAMES[timeframe]
    except KeyError:
        raise ValueError(
            f"unknown timeframe {timeframe!r}; expected one of {', '.join(SERIES_TIMEFRAMES)}"
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
    buyer_maker: bool | None  # m: true when the buyer was the maker (the taker sold); None: unknown


#: ``TickColumns.side`` (and the ``ticks.buyer_maker`` column): 0 the buyer took (taker buy), 1 the
#: buyer was the maker (taker sell), 2 unknown (a collector without sides).
SIDE_UNKNOWN = 2


@dataclass(frozen=True, slots=True)
class TickColumns:
    """Ticks of one symbol as columns: what imports and archives move, ~20x cheaper than a
    ``Tick`` per trade. ``side`` is 0, 1 or ``SIDE_UNKNOWN`` (``Tick.buyer_maker`` False, True, None)."""

    time: npt.NDArray[np.int64]
    agg_id: npt.NDArray[np.int64]
    price: npt.NDArray[np.float64]
    qty: npt.NDArray[np.float64]
    side: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return len(self.time)

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_] | slice) -> TickColumns:
        """The rows at ``index`` (positions, a mask or a slice), as new columns."""
        return TickColumns(self.time[index], self.agg_id[index], self.price[index], self.qty[index],
                           self.side[index])


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
    trades: float  # a count; NaN for an imported OHLC series without one
    vwap: float  # NaN when the data cannot tell (an OHLC series without quote volume)
    buy_volume: float  # NaN when a tick's side is unknown, or the series has no taker volume
    closed: bool = True


# -- futures-native market data (docs/ANALYTICS.md "Perpetual-futures funding", "Quoted spread") ----
#: The stream kinds a feed may subscribe to per symbol (config ``feed.streams``), by Binance route:
#: aggTrade, markPrice and forceOrder on ``/market``, bookTicker on ``/public``.
#: A spot twin's trades build bars under its symbol with this suffix (``BTCUSDT.SPOT``), apart from
#: the futures symbol's: Binance names both ``BTCUSDT``.
SPOT_SUFFIX = ".SPOT"
MARKET_STREAMS: dict[str, str] = {"aggTrade": "market", "markPrice@1s": "market", "markPrice": "market",
                                  "forceOrder": "market", "bookTicker": "public"}


class Quote(NamedTuple):
    """Best bid/ask (Binance ``bookTicker``); ``(symbol, update_id)`` is unique."""

    symbol: str
    time: int  # transaction time T (ms)
    update_id: int  # order book update id u
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float


class MarkPrice(NamedTuple):
    """One ``markPriceUpdate``: mark and index price, the predicted funding rate and when it is paid."""

    symbol: str
    time: int  # event time E (ms)
    mark: float
    index_price: float
    settle: float  # estimated settle price P (meaningful only in the last hour before delivery)
    funding_rate: float  # r: the rate paid at next_funding (predicted until then)
    next_funding: int  # T: the next funding time (ms)


class Liquidation(NamedTuple):
    """One ``forceOrder`` (Binance pushes at most one per symbol per second: an undercount)."""

    symbol: str
    time: int  # order trade time o.T (ms)
    side: str  # "SELL": a long was liquidated; "BUY": a short
    qty: float  # o.q original quantity
    price: float  # o.p
    avg_price: float  # o.ap
    status: str  # o.X
    last_qty: float  # o.l
    filled_qty: float  # o.z accumulated filled quantity

    @property
    def notional(self) -> float:
        """Quote-currency value of what was filled (average price x filled quantity)."""
        return self.avg_price * self.filled_qty


class FundingEvent(NamedTuple):
    """A funding payment of ``symbol`` at ``time`` at ``rate`` (positive: longs pay shorts)."""

    symbol: str
    time: int  # funding time F (ms)
    rate: float
    mark: float  # the mark price at F when known, else NaN


class OpenInterest(NamedTuple):
    """``GET /fapi/v1/openInterest``: open contracts of ``symbol`` at ``time``."""

    symbol: str
    time: int
    open_interest: float


@dataclass(frozen=True, slots=True)
class QuoteBar:
    """Quote statistics of ``[time, time + timeframe)``: the last bid/ask in it and the mean and
    max quoted spread in bps over its ``updates`` bookTicker updates."""

    symbol: str
    timeframe: str
    time: int
    bid: float
    ask: float
    mean_spread_bps: float
    max_spread_bps: float
    updates: int


#: A non-trade event of the feed.
MarketEvent = Quote | MarkPrice | Liquidation


@dataclass(frozen=True, slots=True)
class MarketBatch:
    """Non-trade events received together (the feed flushes them with its tick batches)."""

    quotes: tuple[Quote, ...] = ()
    marks: tuple[MarkPrice, ...] = ()
    liquidations: tuple[Liquidation, ...] = ()
    received_ms: int = 0
    open_interest: tuple[OpenInterest, ...] = ()  # REST polls, not the feed

"""Binance USD-M Futures market data beside aggTrade: every fact of the bookTicker, markPrice and
forceOrder streams and of ``GET /fapi/v1/fundingRate`` / ``GET /fapi/v1/openInterest`` in one
module, so the feed client and the local exchange cannot disagree (``binance_futures`` is the same
for aggTrade; this module never imports it, so it may import this one).

Streams are split by route (``models.MARKET_STREAMS``): bookTicker on ``/public``; aggTrade,
markPrice and forceOrder on ``/market``. A real combined-stream bookTicker frame::

    {"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":5123107839020,"s":"BTCUSDT",
     "b":"61800.20","B":"2.507","a":"61800.30","A":"2.510","T":1723161256313,"E":1723161256313}}

``book_ticker_quote``, ``mark_price`` and ``force_order`` are THE validators: times and ids must be
JSON integers >= 0, prices and quantities decimal strings (``"61800.20"``; no numbers, exponents,
``NaN`` or blanks), unknown extra fields are ignored. A FrameError names the event, the symbol and
the field. Decisions, where Binance's documents leave room:

* bookTicker: ``b``/``a`` > 0 and ``B``/``A`` > 0. A crossed top (bid > ask) is accepted: it is what
  the exchange sent, and dropping it would hide it from the quoted-spread statistics that should
  show it. None of the 120,694 real frames bundled is crossed or locked.
* markPriceUpdate: mark ``p`` and index ``i`` > 0 (an index of 0 would make the basis infinite);
  the estimated settle price ``P`` >= 0 (it means something only before a delivery); ``r`` any
  signed decimal, or ``""`` (Binance's value for a delivery contract, read as NaN); ``T`` >= 0
  (0 for a delivery contract).
* forceOrder: ``S`` BUY or SELL, ``q`` and ``p`` > 0, ``ap``, ``l`` and ``z`` >= 0, ``X`` any
  non-empty status.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from quantpanel.errors import FrameError
from quantpanel.models import MARKET_STREAMS, FundingEvent, Liquidation, MarkPrice, OpenInterest, Quote

__all__ = [
    "FUNDING_RATE_DEFAULT_LIMIT",
    "FUNDING_RATE_MAX_LIMIT",
    "FUNDING_RATE_PATH",
    "FUNDING_RATE_WEIGHT",
    "OPEN_INTEREST_PATH",
    "OPEN_INTEREST_WEIGHT",
    "RecordedFunding",
    "RecordedLiquidation",
    "RecordedMark",
    "RecordedQuote",
    "stream_name",
    "route_of",
    "kind_of_stream",
    "route_of_path",
    "book_ticker_quote",
    "recorded_quote",
    "to_quote",
    "mark_price",
    "force_order",
    "render_book_ticker",
    "render_mark_price",
    "render_force_order",
    "funding_rate_url",
    "funding_rate_row",
    "parse_funding_rates",
    "open_interest_url",
    "open_interest_body",
    "parse_open_interest",
]

FUNDING_RATE_PATH = "/fapi/v1/fundingRate"
# Binance documents no REQUEST_WEIGHT for fundingRate: it "shares a 500/5min/IP rate limit with
# GET /fapi/v1/fundingInfo" (developers.binance.com, USDS-M "Get Funding Rate History"). What it adds
# to X-MBX-USED-WEIGHT-1M is unknown, so it is counted as 1 here.
FUNDING_RATE_WEIGHT = 1
FUNDING_RATE_DEFAULT_LIMIT = 100
FUNDING_RATE_MAX_LIMIT = 1000
OPEN_INTEREST_PATH = "/fapi/v1/openInterest"
OPEN_INTEREST_WEIGHT = 1  # developers.binance.com, USDS-M "Open Interest": Request Weight 1
_ROUTES = ("market", "public", "private")

_UNSIGNED = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_SIGNED = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_INF = math.inf
_NAN = math.nan


# -- records: the exact strings the exchange sent, so a replay is byte-identical -----------------
@dataclass(frozen=True, slots=True)
class RecordedQuote:
    """One bookTicker as sent (prices and quantities as their exact strings)."""

    symbol: str
    update_id: int  # u
    bid: str
    bid_qty: str
    ask: str
    ask_qty: str
    time: int  # T, transaction time
    event_time: int  # E


@dataclass(frozen=True, slots=True)
class RecordedMark:
    """One markPriceUpdate as sent."""

    symbol: str
    event_time: int  # E
    mark: str  # p
    index: str  # i
    settle: str  # P
    funding_rate: str  # r
    next_funding: int  # T


@dataclass(frozen=True, slots=True)
class RecordedLiquidation:
    """One forceOrder as sent (the order object ``o`` and the event time)."""

    symbol: str
    event_time: int  # E
    side: str  # o.S
    qty: str  # o.q
    price: str  # o.p
    avg_price: str  # o.ap
    status: str  # o.X
    last_qty: str  # o.l
    filled_qty: str  # o.z
    time: int  # o.T


@dataclass(frozen=True, slots=True)
class RecordedFunding:
    """One ``GET /fapi/v1/fundingRate`` row as sent."""

    symbol: str
    time: int  # fundingTime
    rate: str  # fundingRate
    mark: str  # markPrice


# -- streams and routes --------------------------------------------------------------------------
def stream_name(symbol: str, kind: str) -> str:
    """``BTCUSDT``, ``bookTicker`` -> ``btcusdt@bookTicker``; ValueError for an unknown kind."""
    route_of(kind)
    return f"{symbol.lower()}@{kind}"


def route_of(kind: str) -> str:
    """The route (``market`` / ``public``) that carries stream ``kind``."""
    try:
        return MARKET_STREAMS[kind]
    except KeyError:
        raise ValueError(f"unknown stream kind {kind!r}; expected one of {', '.join(MARKET_STREAMS)}") from None


def kind_of_stream(stream: str) -> str | None:
    """``btcusdt@markPrice@1s`` -> ``markPrice@1s``; None for a kind outside ``MARKET_STREAMS``."""
    kind = stream.partition("@")[2]
    return kind if kind in MARKET_STREAMS else None


def route_of_path(path: str) -> str:
    """The route of a connection path: ``market``, ``public`` or ``private``; ``""`` for the old
    unrouted ``/stream`` and ``/ws`` (which Binance serves no route-split stream on)."""
    segs = [s for s in urlsplit(path).path.split("/") if s]
    return segs[0] if segs and segs[0] in _ROUTES else ""


# -- field checks ---------------------------------------------------------------------------------
def _int(data: dict[str, Any], key: str, what: str) -> int:
    v = data[key]
    if v.__class__ is not int or v < 0:
        raise FrameError(f"{what}: field {key!r} is {v!r}, not an integer >= 0")
    return int(v)


def _dec(data: dict[str, Any], key: str, what: str, *, positive: bool) -> float:
    """A decimal string > 0 (``positive``) or >= 0, as a float."""
    v = data[key]
    if v.__class__ is not str or not _UNSIGNED.fullmatch(v):
        raise FrameError(f"{what}: field {key!r} is {v!r}, not a decimal string")
    x = float(v)
    if not (0 < x < _INF if positive else x < _INF):
        raise FrameError(f"{what}: field {key!r} is {v!r}, not a finite number {'>' if positive else '>='} 0")
    return x


def _symbol(data: dict[str, Any], event: str) -> str:
    sym = data["s"]  # a KeyError: the caller names the missing field
    if sym.__class__ is not str or not sym:
        raise FrameError(f"{event}: field 's' is {sym!r}, not a symbol")
    return str(sym)


def _missing(event: str, data: dict[str, Any], key: object) -> FrameError:
    return FrameError(f"{event} {data.get('s', '?')}: no field {key!r}")


# -- bookTicker ------------------------------------------------------------------------------------
def book_ticker_quote(data: dict[str, Any]) -> Quote:
    """The ``Quote`` of one bookTicker object (a frame's ``data``); FrameError names the field."""
    try:
        sym = _symbol(data, "bookTicker")
        what = f"bookTicker {sym}"
        u, t = _int(data, "u", what), _int(data, "T", what)
        _int(data, "E", what)
        return Quote(sym, t, u, _dec(data, "b", what, positive=True), _dec(data, "B", what, positive=True),
                     _dec(data, "a", what, positive=True), _dec(data, "A", what, positive=True))
    except KeyError as exc:
        raise _missing("bookTicker", data, exc.args[0]) from None


def recorded_quote(data: dict[str, Any]) -> RecordedQuote:
    """A bookTicker object checked by ``book_ticker_quote``, kept as its exact strings."""
    q = book_ticker_quote(data)
    return RecordedQuote(q.symbol, q.update_id, data["b"], data["B"], data["a"], data["A"], q.time, data["E"])


def to_quote(q: RecordedQuote) -> Quote:
    return Quote(q.symbol, q.time, q.update_id, float(q.bid), float(q.bid_qty), float(q.ask), float(q.ask_qty))


def render_book_ticker(q: RecordedQuote, dt: int, du: int) -> str:
    """The exact combined-stream frame Binance sends for one bookTicker, shifted by dt ms and du
    update ids (the bundled frames come out byte for byte with dt = du = 0)."""
    return (f'{{"stream":"{q.symbol.lower()}@bookTicker","data":{{"e":"bookTicker","u":{q.update_id + du},'
            f'"s":"{q.symbol}","b":"{q.bid}","B":"{q.bid_qty}","a":"{q.ask}","A":"{q.ask_qty}",'
            f'"T":{q.time + dt},"E":{q.event_time + dt}}}}}')


# -- markPriceUpdate -------------------------------------------------------------------------------
def mark_price(data: dict[str, Any]) -> MarkPrice:
    """The ``MarkPrice`` of one markPriceUpdate object; FrameError names the field.

    Binance's example (developers.binance.com, USDS-M "Mark Price Stream")::

        {"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000",
         "i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}
    """
    try:
        sym = _symbol(data, "markPriceUpdate")
        what = f"markPriceUpdate {sym}"
        e, nxt = _int(data, "E", what), _int(data, "T", what)
        mark = _dec(data, "p", what, positive=True)
        index = _dec(data, "i", what, positive=True)
        settle = _dec(data, "P", what, positive=False)
        r = data["r"]
    except KeyError as exc:
        raise _missing("markPriceUpdate", data, exc.args[0]) from None
    if r == "":
        rate = _NAN  # a delivery contract: no funding
    elif r.__class__ is str and _SIGNED.fullmatch(r):
        rate = float(r)
    else:
        raise FrameError(f"{what}: field 'r' is {r!r}, not a signed decimal string")
    return MarkPrice(sym, e, mark, index, settle, rate, nxt)


def render_mark_price(m: RecordedMark, dt: int, *, kind: str = "markPrice@1s") -> str:
    """The exact frame of one markPriceUpdate on stream ``kind`` (``markPrice@1s`` or
    ``markPrice``), in Binance's wire order (e, E, s, p, P, i, r, T), shifted by dt ms."""
    return (f'{{"stream":"{m.symbol.lower()}@{kind}","data":{{"e":"markPriceUpdate","E":{m.event_time + dt},'
            f'"s":"{m.symbol}","p":"{m.mark}","P":"{m.settle}","i":"{m.index}","r":"{m.funding_rate}",'
            f'"T":{m.next_funding + dt}}}}}')


# -- forceOrder ----------------------------------------------------------------------------------------
_SIDES = ("BUY", "SELL")


def force_order(data: dict[str, Any]) -> Liquidation:
    """The ``Liquidation`` of one forceOrder object; FrameError names the field.

    Binance's example (developers.binance.com, USDS-M "Liquidation Order Streams")::

        {"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC",
         "q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014","T":1568014460893}}
    """
    o = data.get("o")
    if o.__class__ is not dict:
        raise FrameError(f"forceOrder: field 'o' is {type(o).__name__}, not an object")
    try:
        sym = _symbol(o, "forceOrder")
        what = f"forceOrder {sym}"
        _int(data, "E", what)
        t = _int(o, "T", what)
        side, status = o["S"], o["X"]
        qty, price = _dec(o, "q", what, positive=True), _dec(o, "p", what, positive=True)
        avg, last, filled = (_dec(o, k, what, positive=False) for k in ("ap", "l", "z"))
    except KeyError as exc:
        raise _missing("forceOrder", o, exc.args[0]) from None
    if side not in _SIDES:
        raise FrameError(f"{what}: field 'S' is {side!r}, not BUY or SELL")
    if status.__class__ is not str or not status:
        raise FrameError(f"{what}: field 'X' is {status!r}, not an order status")
    return Liquidation(sym, t, side, qty, price, avg, status, last, filled)


def render_force_order(x: RecordedLiquidation, dt: int) -> str:
    """The exact frame of one forceOrder (order type LIMIT, IOC, as Binance's are), shifted by dt ms."""
    return (f'{{"stream":"{x.symbol.lower()}@forceOrder","data":{{"e":"forceOrder","E":{x.event_time + dt},'
            f'"o":{{"s":"{x.symbol}","S":"{x.side}","o":"LIMIT","f":"IOC","q":"{x.qty}","p":"{x.price}",'
            f'"ap":"{x.avg_price}","X":"{x.status}","l":"{x.last_qty}","z":"{x.filled_qty}",'
            f'"T":{x.time + dt}}}}}}}')


# -- REST: GET /fapi/v1/fundingRate ---------------------------------------------------------------
def funding_rate_url(base: str, symbol: str | None, start_time: int | None = None,
                     end_time: int | None = None, limit: int = FUNDING_RATE_MAX_LIMIT) -> str:
    """The URL of up to ``limit`` (capped at 1000) funding events, ``startTime``/``endTime``
    inclusive. Binance: with neither time the most recent ``limit`` rows, else the first ``limit``
    from ``startTime``; rows ascending; ``symbol`` None asks for every symbol. The URL asks for a
    full page (1000) unless told otherwise: a backfill pages until a page comes back short, which
    with the server's default of 100 would stop early."""
    params: dict[str, object] = {} if symbol is None else {"symbol": symbol}
    if start_time is not None:
        params["startTime"] = start_time
    if end_time is not None:
        params["endTime"] = end_time
    params["limit"] = min(limit, FUNDING_RATE_MAX_LIMIT)
    return f"{base.rstrip('/')}{FUNDING_RATE_PATH}?{urlencode(params)}"


def funding_rate_row(f: RecordedFunding, dt: int) -> dict[str, object]:
    """One fundingRate response row, shifted by dt ms (Binance's key order)."""
    return {"symbol": f.symbol, "fundingTime": f.time + dt, "fundingRate": f.rate, "markPrice": f.mark}


def _json_list(body: bytes, what: str) -> list[Any]:
    try:
        rows = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"{what} response is not JSON: {exc}") from None
    if not isinstance(rows, list):
        raise FrameError(f"{what} response is not a list: {body[:200]!r}")
    return rows


def parse_funding_rates(body: bytes) -> list[FundingEvent]:
    """A fundingRate response as ``FundingEvent``s; ``markPrice`` absent or ``""`` (older rows) is
    NaN. FrameError names the row and the field."""
    out: list[FundingEvent] = []
    for i, row in enumerate(_json_list(body, "fundingRate")):
        what = f"fundingRate row {i}"
        if row.__class__ is not dict:
            raise FrameError(f"{what} is {type(row).__name__}, not an object")
        try:
            sym, t, r = row["symbol"], _int(row, "fundingTime", what), row["fundingRate"]
        except KeyError as exc:
            raise FrameError(f"{what}: no field {exc.args[0]!r}") from None
        if sym.__class__ is not str or not sym:
            raise FrameError(f"{what}: field 'symbol' is {sym!r}, not a symbol")
        if r.__class__ is not str or not _SIGNED.fullmatch(r):
            raise FrameError(f"{what} {sym}: field 'fundingRate' is {r!r}, not a signed decimal string")
        mark = _NAN if row.get("markPrice", "") == "" else _dec(row, "markPrice", f"{what} {sym}", positive=True)
        out.append(FundingEvent(sym, t, float(r), mark))
    return out


# -- REST: GET /fapi/v1/openInterest -------------------------------------------------------------
def open_interest_url(base: str, symbol: str) -> str:
    return f"{base.rstrip('/')}{OPEN_INTEREST_PATH}?{urlencode({'symbol': symbol})}"


def open_interest_body(symbol: str, open_interest: str, time_ms: int) -> dict[str, object]:
    """An openInterest answer in Binance's key order."""
    return {"openInterest": open_interest, "symbol": symbol, "time": time_ms}


def parse_open_interest(body: bytes) -> OpenInterest:
    """An openInterest response as ``OpenInterest``; FrameError names the field."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"openInterest response is not JSON: {exc}") from None
    if obj.__class__ is not dict:
        raise FrameError(f"openInterest response is not an object: {body[:200]!r}")
    try:
        sym = obj["symbol"]
        if sym.__class__ is not str or not sym:
            raise FrameError(f"openInterest: field 'symbol' is {sym!r}, not a symbol")
        what = f"openInterest {sym}"
        return OpenInterest(sym, _int(obj, "time", what), _dec(obj, "openInterest", what, positive=False))
    except KeyError as exc:
        raise FrameError(f"openInterest {obj.get('symbol', '?')}: no field {exc.args[0]!r}") from None

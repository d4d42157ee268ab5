"""Binance USD-M Futures: every fact of the protocol quantpanel speaks, in one module, so the feed
client and the local exchange cannot disagree. Stream names and URLs, control messages and their
replies, the aggTrade frame (parsed and rendered), ``GET /fapi/v1/aggTrades`` (path, parameters,
weight, rows) and the one aggTrade validator.

Parsing is separate from the connection so recorded frames replay through exactly this code.
A combined-stream aggTrade frame, trimmed::

    {"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1723161256322,"s":"BTCUSDT",
     "a":5266583935,"p":"61800.30","q":"0.006","nq":"0.006","f":100,"l":101,"T":1723161256322,
     "m":false}}

``agg_trade_tick`` is the one aggTrade validator: the live stream (``parse_frame``), REST backfill
(``parse_agg_trades``) and recorded captures (``trade_files.read_capture``) all go through it, so
a value refused on one path is refused on every path. ``nq`` (quantity without RPI fills, newer
frames only) is validated but not kept: bars use ``q``, which includes RPI fills, so bars built
live match bars built from historical dumps, which have no ``nq``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import msgspec
import numpy as np
import orjson

from quantpanel.errors import FrameError
from quantpanel.feeds.binance_market import book_ticker_quote, force_order, mark_price
from quantpanel.models import MarketEvent, Tick

__all__ = [
    "AGG_TRADES_DEFAULT_LIMIT",
    "AGG_TRADES_MAX_LIMIT",
    "AGG_TRADES_PATH",
    "AGG_TRADES_WEIGHT",
    "USED_WEIGHT_HEADER",
    "WEIGHT_LIMIT_1M",
    "AggTradesQuery",
    "ControlMethod",
    "RecordedTrade",
    "agg_trade_row",
    "agg_trade_stream",
    "agg_trade_tick",
    "agg_trades_query",
    "agg_trades_url",
    "answer_control",
    "combined_stream_url",
    "control_message",
    "is_agg_trade_frame",
    "parse_agg_trades",
    "parse_trade_frames",
    "parse_frame",
    "render_agg_trade",
    "streams_of_path",
    "symbol_of_stream",
]

AGG_TRADES_PATH = "/fapi/v1/aggTrades"
AGG_TRADES_WEIGHT = 20  # the request weight of one aggTrades call
AGG_TRADES_DEFAULT_LIMIT = 500
AGG_TRADES_MAX_LIMIT = 1000
WEIGHT_LIMIT_1M = 2400  # the default REQUEST_WEIGHT limit per minute and IP
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"  # on every REST answer: weight used this UTC minute
_ROUTE_PREFIXES = ("market", "public", "private")  # /market/stream?... is /stream?... too

#: The control requests a stream connection takes.
ControlMethod = Literal["SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS"]


@dataclass(frozen=True, slots=True)
class RecordedTrade:
    """One aggTrade as Binance reports it, price and quantity as its exact strings so a replay is
    byte-identical (``buyer_maker`` None: the recording does not say, as NDJSON ticks don't)."""

    symbol: str
    time: int
    agg_id: int
    first_id: int
    last_id: int
    price: str
    qty: str
    buyer_maker: bool | None
    event_time: int


# -- streams -----------------------------------------------------------------------------------
def agg_trade_stream(symbol: str) -> str:
    """``BTCUSDT`` -> ``btcusdt@aggTrade`` (Binance stream names are lower case)."""
    return f"{symbol.lower()}@aggTrade"


def symbol_of_stream(stream: str) -> str:
    """``btcusdt@aggTrade`` -> ``BTCUSDT``."""
    return stream.split("@", 1)[0].upper()


def combined_stream_url(base: str, streams: Iterable[str]) -> str:
    """The combined-stream URL for ``streams`` (names such as ``btcusdt@aggTrade``) on ``base``
    (a ``.../stream`` endpoint). ``base`` may already carry a query; its ``streams`` parameter is
    replaced."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, f"streams={'/'.join(streams)}", ""))


def streams_of_path(path: str) -> set[str] | None:
    """The streams a connection path asks for: ``/stream?streams=a/b`` or ``/ws/a/b``, with or
    without a route prefix such as ``/market``; None when the path is not a stream endpoint."""
    parts = urlsplit(path)
    segs = [s for s in parts.path.split("/") if s]
    if segs and segs[0] in _ROUTE_PREFIXES:
        segs = segs[1:]
    if segs[:1] == ["stream"] and len(segs) == 1:
        raw = parse_qs(parts.query).get("streams", [""])[0]
        return {s for s in raw.split("/") if s}
    if segs[:1] == ["ws"]:
        return {s for seg in segs[1:] for s in seg.split("/") if s}
    return None


def control_message(method: ControlMethod, streams: list[str], request_id: int) -> bytes:
    """A SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS request as Binance expects it."""
    msg: dict[str, object] = {"method": method, "id": request_id}
    if method != "LIST_SUBSCRIPTIONS":
        msg["params"] = streams
    return orjson.dumps(msg)


def answer_control(streams: set[str], message: str | bytes) -> str:
    """Binance's reply to one control request on a connection subscribed to ``streams``, which a
    SUBSCRIBE or UNSUBSCRIBE changes in place; errors in Binance's shapes and codes."""
    try:
        req = orjson.loads(message)
    except orjson.JSONDecodeError:
        return '{"error":{"code":3,"msg":"Invalid JSON: expected value at line 1 column 1"}}'
    if not isinstance(req, dict):
        return '{"error":{"code":2,"msg":"Invalid request"}}'
    rid = req.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0:
        return _reply({"error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"},
                       "id": None})
    method = req.get("method")
    params = req.get("params", [])
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return _reply({"error": {"code": 1, "msg": "Invalid value type: expected Array of Strings"}, "id": rid})
        if method == "SUBSCRIBE":
            streams.update(params)
        else:
            streams.difference_update(params)
        return _reply({"result": None, "id": rid})
    if method == "LIST_SUBSCRIPTIONS":
        return _reply({"result": sorted(streams), "id": rid})
    return _reply({"error": {"code": 0, "msg": f"Unknown property {method!r}"}, "id": rid})


def _reply(msg: dict[str, object]) -> str:
    return orjson.dumps(msg).decode()


_SIDE = {True: ',"m":true', False: ',"m":false', None: ""}  # None: a recording without sides


def render_agg_trade(t: RecordedTrade, dt: int, da: int) -> str:
    """The exact combined-stream frame Binance sends for one aggTrade, shifted by dt ms / da ids.

    A trade of unknown side (NDJSON ticks) has no ``m`` at all: the parser reads that as unknown,
    where any made-up value would be a lie the bars would count as buy volume or not.
    """
    return (
        f'{{"stream":"{agg_trade_stream(t.symbol)}","data":{{"e":"aggTrade","E":{t.event_time + dt},'
        f'"a":{t.agg_id + da},"s":"{t.symbol}","p":"{t.price}","q":"{t.qty}",'
        f'"f":{t.first_id + da},"l":{t.last_id + da},"T":{t.time + dt}{_SIDE[t.buyer_maker]}}}}}'
    )


# -- REST: GET /fapi/v1/aggTrades ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AggTradesQuery:
    """The parameters of one aggTrades request."""

    symbol: str
    from_id: int | None
    limit: int


def agg_trades_url(base: str, symbol: str, from_id: int, limit: int) -> str:
    """The URL of up to ``limit`` (capped at 1000) trades of ``symbol`` with ``a >= from_id``."""
    query = urlencode({"symbol": symbol, "fromId": from_id, "limit": min(limit, AGG_TRADES_MAX_LIMIT)})
    return f"{base.rstrip('/')}{AGG_TRADES_PATH}?{query}"


def agg_trades_query(query: str) -> AggTradesQuery:
    """An aggTrades request's query string read as Binance reads it (``symbol`` upper-cased,
    ``limit`` defaulted and capped); ValueError when ``symbol`` is missing or a number is bad."""
    q = parse_qs(query)
    try:
        symbol = q["symbol"][0].upper()
        limit = min(int(q.get("limit", [str(AGG_TRADES_DEFAULT_LIMIT)])[0]), AGG_TRADES_MAX_LIMIT)
        from_id = int(q["fromId"][0]) if "fromId" in q else None
    except (KeyError, ValueError, IndexError):
        raise ValueError(f"bad aggTrades query {query!r}") from None
    return AggTradesQuery(symbol, from_id, limit)


def agg_trade_row(t: RecordedTrade, dt: int, da: int) -> dict[str, object]:
    """One aggTrades response row, shifted by dt ms / da ids (no ``m`` when the side is unknown)."""
    row: dict[str, object] = {"a": t.agg_id + da, "p": t.price, "q": t.qty, "f": t.first_id + da,
                              "l": t.last_id + da, "T": t.time + dt}
    if t.buyer_maker is not None:
        row["m"] = t.buyer_maker
    return row


def parse_agg_trades(symbol: str, body: bytes) -> list[Tick]:
    """An aggTrades response body as ticks, every row checked by the stream's own validator
    (``agg_trade_tick``), so backfill accepts exactly what the live path accepts; FrameError names
    the symbol, the row and what is wrong."""
    try:
        rows = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"aggTrades response is not JSON: {exc}") from None
    if not isinstance(rows, list):
        raise FrameError(f"aggTrades response is not a list: {body[:200]!r}")
    ticks: list[Tick] = []
    for i, row in enumerate(rows):
        if row.__class__ is not dict:
            raise FrameError(
                f"aggTrades response for {symbol}: row {i} is {type(row).__name__}, not an object")
        try:
            ticks.append(agg_trade_tick(row, symbol))
        except FrameError as exc:
            raise FrameError(f"aggTrades response for {symbol}, row {i}: {exc}") from None
    return ticks


# -- parsing -----------------------------------------------------------------------------------
_INF = math.inf
_NAN = math.nan
_new_tick = tuple.__new__  # a Tick from its fields without NamedTuple's keyword handling: the hot path
#: The other events a feed keeps, by their ``e``, each with its one validator.
_MARKET_EVENTS: dict[str, Callable[[dict[str, Any]], MarketEvent]] = {
    "bookTicker": book_ticker_quote, "markPriceUpdate": mark_price, "forceOrder": force_order}


def agg_trade_tick(data: dict[str, Any], symbol: str | None = None) -> Tick:
    """The ``Tick`` of one aggTrade object (a stream frame's ``data`` or a REST row); FrameError
    names the field and the trade when anything is off.

    REST rows carry no ``s``: pass ``symbol`` (it wins over ``s``). ``T`` and ``a`` must be JSON
    integers (``a >= 0``), ``p`` and ``q`` finite and > 0, ``m`` a JSON boolean. ``m`` absent means
    the side is unknown (``buyer_maker`` None): only the local exchange serving a recording without
    sides sends that; a present non-boolean ``m`` ("false", 0, null) is an error, never a guess.
    ``nq`` (newer frames: ``q`` without RPI fills), when present, must be a finite number with
    0 <= nq <= q; it is checked, not stored: bars use ``q``, RPI fills included, to match
    historical dumps, which have no ``nq``. Unknown extra fields are ignored.
    """
    try:
        sym = data["s"] if symbol is None else symbol
        t, a, p, q = data["T"], data["a"], data["p"], data["q"]
        price, qty = float(p), float(q)
    except KeyError as exc:
        raise FrameError(f"aggTrade without field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise FrameError(f"aggTrade with a bad value: {exc}") from None
    if sym.__class__ is not str or not sym:
        raise FrameError(f"aggTrade with bad symbol {sym!r}")
    if t.__class__ is not int or a.__class__ is not int or a < 0 or t < 0:
        raise FrameError(f"aggTrade {sym}: T={t!r} and a={a!r} must be integers >= 0")
    if not (0 < price < _INF and 0 < qty < _INF) or p.__class__ is bool or q.__class__ is bool:
        raise FrameError(f"aggTrade {sym} a={a} with bad price/qty {p!r}/{q!r}")
    if "m" in data:
        m = data["m"]
        if m.__class__ is not bool:
            raise FrameError(f"aggTrade {sym} a={a}: 'm' is {m!r}, not a boolean")
    else:
        m = None
    if "nq" in data:  # in every frame since RPI: inlined; the same text as q (no RPI fill) is valid
        nq = data["nq"]
        if nq != q or nq.__class__ is not str:
            try:
                nq_value = float(nq)
            except (TypeError, ValueError):
                nq_value = _NAN
            if not 0 <= nq_value <= qty or nq.__class__ is bool:
                raise FrameError(f"aggTrade {sym} a={a}: 'nq' is {nq!r}, not a number within 0..q ({q!r})")
    return _new_tick(Tick, (sym, t, a, price, qty, m))


class _AggTradeData(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Every field of an aggTrade's ``data``, each in the one JSON type Binance sends."""

    e: str
    E: int = 0
    s: str
    a: int
    p: str
    q: str
    nq: str | msgspec.UnsetType = msgspec.UNSET
    f: int = 0
    l: int = 0  # noqa: E741 (Binance's name)
    T: int
    m: bool | msgspec.UnsetType = msgspec.UNSET


class _AggTradeFrame(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    stream: str = ""
    data: _AggTradeData


_decode_agg_trade = msgspec.json.Decoder(_AggTradeFrame).decode
_U64_MAX = 2**64 - 1  # orjson reads a larger integer as a float (which agg_trade_tick refuses)
_I64_MIN = -(2**63)


def _fast_agg_trade(raw: str) -> tuple[Tick, int] | None:
    """``parse_frame`` of a combined-stream aggTrade frame exactly as Binance sends it, without a
    dict per frame; None for anything else, which then takes the general path (so a frame is
    accepted, refused and worded exactly as there).

    A subset by construction: the typed decoder takes only the fields and JSON types of a real
    frame (an unknown field, a number sent as a string or the other way round, a null: None), and
    what it accepts is then checked as ``agg_trade_tick`` checks it.
    """
    try:
        d = _decode_agg_trade(raw).data
        price, qty = float(d.p), float(d.q)
        nq = d.nq
        if nq is not msgspec.UNSET and nq != d.q and not 0 <= float(nq) <= qty:
            return None
    except ValueError:  # msgspec's errors and float()'s
        return None
    sym, t, a, m, ev = d.s, d.T, d.a, d.m, d.E
    if (d.e != "aggTrade" or not sym or not 0 <= t <= _U64_MAX or not 0 <= a <= _U64_MAX
            or not _I64_MIN <= ev <= _U64_MAX or not (0 < price < _INF and 0 < qty < _INF)):
        return None
    return _new_tick(Tick, (sym, t, a, price, qty, None if m is msgspec.UNSET else m)), ev


_decode_agg_trade_lines = msgspec.json.Decoder(_AggTradeFrame).decode_lines


def is_agg_trade_frame(raw: str | bytes) -> bool:
    """A text frame naming an aggTrade stream (its first 64 characters): ``parse_trade_frames``' input."""
    return isinstance(raw, str) and raw.find('@aggTrade"', 0, 64) != -1


def parse_trade_frames(raws: list[str]) -> tuple[list[Tick], int] | None:
    """A batch of aggTrade frames (``is_agg_trade_frame``) as their ticks in order and the highest
    event time, or None when any frame is not exactly a real aggTrade frame: the caller then
    gives each to ``parse_frame``, which accepts, refuses and words it as always.

    The feed's hot path: one typed decode of the whole batch, a line per frame (each frame one
    ``{...}`` object and exactly one value per frame: no value can run across two frames, since a
    JSON string holds no raw newline and ``}`` then ``{`` is no JSON, and a frame of two values
    changes the count), then the checks of ``agg_trade_tick`` over the batch's columns instead
    of frame by frame (about twice as cheap as ``parse_frame`` each).
    """
    if not raws:
        return [], 0
    if not all(r[:1] == "{" and r[-1:] == "}" for r in raws):
        return None  # each frame one object: no value can run from one frame into the next
    try:
        frames = _decode_agg_trade_lines("\n".join(raws))
    except msgspec.DecodeError:  # a malformed frame, or one with other fields or types
        return None
    if len(frames) != len(raws):
        return None
    ds = [f.data for f in frames]
    syms = [d.s for d in ds]
    ts = [d.T for d in ds]
    aids = [d.a for d in ds]
    evs = [d.E for d in ds]
    qs = [d.q for d in ds]
    try:
        prices = list(map(float, [d.p for d in ds]))
        qtys = list(map(float, qs))
    except ValueError:
        return None
    pq = np.array((prices, qtys))
    if not (((pq > 0) & (pq < _INF)).all() and min(ts) >= 0 and max(ts) <= _U64_MAX and min(aids) >= 0
            and max(aids) <= _U64_MAX and min(evs) >= _I64_MIN and max(evs) <= _U64_MAX and all(syms)
            and all(d.e == "aggTrade" for d in ds)):
        return None
    for d, q in zip(ds, qtys, strict=True):  # nq: in every frame since RPI, nearly always the same text as q
        nq = d.nq
        if nq is not msgspec.UNSET and nq != d.q:
            try:
                if not 0 <= float(nq) <= q:
                    return None
            except ValueError:
                return None
    marks = [d.m for d in ds]
    sides: list[bool | None] = [None if m is msgspec.UNSET else m for m in marks] if any(
        m is msgspec.UNSET for m in marks) else marks  # type: ignore[assignment]  # no UNSET left
    return list(map(_new_tick, repeat(Tick), zip(syms, ts, aids, prices, qtys, sides, strict=True))), max(evs)


def parse_frame(raw: str | bytes) -> tuple[Tick, int] | MarketEvent | str:
    """Parse one text frame.

    Returns ``(tick, event_time_ms)`` for an aggTrade (checked by ``agg_trade_tick``); a ``Quote``,
    ``MarkPrice`` or ``Liquidation`` for a bookTicker, markPriceUpdate or forceOrder (checked by
    ``binance_market``'s validators); else the kind of message as a string: the event type
    (``"depthUpdate"``, ``"kline"``, ...), ``"response"`` for a control reply or ``"error"`` for a
    control error. Raises ``FrameError`` for anything malformed, so the caller can count and drop it.

    A frame that names an aggTrade stream goes through a typed decoder first (``_fast_agg_trade``,
    ~2x faster); whatever it does not take comes here in full, so both give the same answers.
    """
    if isinstance(raw, str) and raw.find('@aggTrade"', 0, 64) != -1:
        fast = _fast_agg_trade(raw)
        if fast is not None:
            return fast
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"not JSON ({exc}); frame starts {raw[:60]!r}") from None
    if msg.__class__ is not dict:
        raise FrameError(f"expected a JSON object, got {type(msg).__name__}")
    data = msg.get("data", msg)
    if data.__class__ is not dict:
        raise FrameError(f"'data' is {type(data).__name__}, not an object")
    event = data.get("e")
    if event != "aggTrade":
        market = _MARKET_EVENTS.get(event) if event.__class__ is str else None
        if market is not None:
            return market(data)
        if event is not None:
            return str(event)
        if "result" in msg and "id" in msg:
            return "response"
        if "error" in msg:
            return "error"
        raise FrameError(f"no event type in frame with keys {sorted(data)[:8]}")
    tick = agg_trade_tick(data)
    try:
        event_ms = int(data.get("E", 0))
    except (TypeError, ValueError) as exc:
        raise FrameError(f"aggTrade {tick.symbol} a={tick.agg_id} with a bad E: {exc}") from None
    return tick, event_ms

"""Binance USD-M Futures: stream names, URLs and the pure frame parser.

Parsing is separate from the connection so recorded frames replay through exactly this code.
A combined-stream aggTrade frame, trimmed::

    {"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1723161256322,"s":"BTCUSDT",
     "a":5266583935,"p":"61800.30","q":"0.006","nq":"0.006","f":100,"l":101,"T":1723161256322,
     "m":false}}

``agg_trade_tick`` is the one aggTrade validator: the live stream (``parse_frame``), REST backfill
(``rest.parse_agg_trades``) and recorded captures (``recording.read_capture``) all go through it, so
a value refused on one path is refused on every path. ``nq`` (quantity without RPI fills, newer
frames only) is validated but not kept: bars use ``q``, which includes RPI fills, so bars built
live match bars built from historical dumps, which have no ``nq``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from quantpanel.errors import FrameError
from quantpanel.models import Tick

__all__ = [
    "agg_trade_stream",
    "agg_trade_tick",
    "combined_stream_url",
    "parse_frame",
    "symbol_of_stream",
    "control_message",
]


def agg_trade_stream(symbol: str) -> str:
    """``BTCUSDT`` -> ``btcusdt@aggTrade`` (Binance stream names are lower case)."""
    return f"{symbol.lower()}@aggTrade"


def symbol_of_stream(stream: str) -> str:
    """``btcusdt@aggTrade`` -> ``BTCUSDT``."""
    return stream.split("@", 1)[0].upper()


def combined_stream_url(base: str, symbols: Iterable[str]) -> str:
    """The combined-stream URL for ``symbols``' aggTrades on ``base`` (a ``.../stream`` endpoint).

    ``base`` may already carry a query; its ``streams`` parameter is replaced.
    """
    parts = urlsplit(base)
    streams = "/".join(agg_trade_stream(s) for s in symbols)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, f"streams={streams}", ""))


def control_message(method: str, streams: list[str], request_id: int) -> bytes:
    """A SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS request as Binance expects it."""
    msg: dict[str, object] = {"method": method, "id": request_id}
    if method != "LIST_SUBSCRIPTIONS":
        msg["params"] = streams
    return orjson.dumps(msg)


_INF = math.inf
_NAN = math.nan
_new_tick = tuple.__new__  # a Tick from its fields without NamedTuple's keyword handling: the hot path


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


def parse_frame(raw: str | bytes) -> tuple[Tick, int] | str:
    """Parse one text frame.

    Returns ``(tick, event_time_ms)`` for an aggTrade (checked by ``agg_trade_tick``), else the
    kind of message as a string: the event type (``"bookTicker"``, ``"depthUpdate"``, ...),
    ``"response"`` for a control reply or ``"error"`` for a control error. Raises ``FrameError``
    for anything malformed, so the caller can count and drop it.
    """
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

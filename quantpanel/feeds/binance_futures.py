"""Binance USD-M Futures: stream names, URLs and the pure frame parser.

Parsing is separate from the connection so recorded frames replay through exactly this code.
A combined-stream aggTrade frame, trimmed::

    {"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1723161256322,"s":"BTCUSDT",
     "a":5266583935,"p":"61800.30","q":"0.006","f":100,"l":101,"T":1723161256322,"m":false}}
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import orjson

from quantpanel.errors import FrameError
from quantpanel.models import Tick

__all__ = [
    "agg_trade_stream",
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
_new_tick = tuple.__new__  # a Tick from its fields without NamedTuple's keyword handling: the hot path


def parse_frame(raw: str | bytes) -> tuple[Tick, int] | str:
    """Parse one text frame.

    Returns ``(tick, event_time_ms)`` for an aggTrade, else the kind of message as a string: the
    event type (``"bookTicker"``, ``"depthUpdate"``, ...), ``"response"`` for a control reply or
    ``"error"`` for a control error. Raises ``FrameError`` for anything malformed, so the caller
    can count and drop it.
    """
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"not JSON ({exc}); frame starts {raw[:60]!r}") from None
    if not isinstance(msg, dict):
        raise FrameError(f"expected a JSON object, got {type(msg).__name__}")
    data = msg.get("data", msg)
    if not isinstance(data, dict):
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
    try:
        sym, price, qty, buyer_maker = data["s"], float(data["p"]), float(data["q"]), data["m"]
        tick = _new_tick(Tick, (sym, int(data["T"]), int(data["a"]), price, qty, buyer_maker is True))
        event_ms = int(data.get("E", 0))
    except KeyError as exc:
        raise FrameError(f"aggTrade without field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise FrameError(f"aggTrade with a bad value: {exc}") from None
    if sym.__class__ is not str or not sym:
        raise FrameError(f"aggTrade with bad symbol {sym!r}")
    if not (0 < price < _INF and 0 < qty < _INF):
        raise FrameError(
            f"aggTrade {sym} a={tick.agg_id} with bad price/qty {data['p']!r}/{data['q']!r}"
        )
    if buyer_maker.__class__ is not bool:
        raise FrameError(f"aggTrade {sym} a={tick.agg_id}: 'm' is {buyer_maker!r}, not a boolean")
    return tick, event_ms

"""Tick batches, and what the ingest process publishes, as bytes: for a pipeline split across
processes (``docs/scaling.md``).

An ingest worker publishes ``encode_batch(batch)`` to a log partitioned by symbol (Kafka or any
Kafka-protocol broker); analytics workers run the same streamz graph with
``Stream.from_kafka_batched(...).flatten().map(decode_batch)`` as the pipeline's ``source``.
Columnar JSON (orjson): compact, and one ``loads`` per batch rather than per tick.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable
from typing import Any, Generic, TypeVar, cast

import orjson

from quantpanel.alerts.engine import Alert
from quantpanel.errors import FrameError
from quantpanel.models import Bar, FundingEvent, Liquidation, MarkPrice, OpenInterest, Quote, Tick, TickBatch
from quantpanel.pipeline.market import MarketView

__all__ = ["encode_batch", "decode_batch", "MESSAGE_VERSION", "encode_message", "decode_message",
           "encode_view", "decode_view", "BARS", "ALERTS", "MARKS", "LIQUIDATIONS"]

_FIELDS = Tick._fields


def encode_batch(batch: TickBatch) -> bytes:
    cols: list[tuple[object, ...]] = list(zip(*batch.ticks, strict=True)) if batch.ticks else [() for _ in _FIELDS]
    return orjson.dumps({"received_ms": batch.received_ms, "event_ms": batch.event_ms,
                         **{f: list(c) for f, c in zip(_FIELDS, cols, strict=True)}})


def decode_batch(data: bytes) -> TickBatch:
    """The batch ``encode_batch`` wrote; a message that is not one raises ``FrameError``."""
    try:
        msg = orjson.loads(data)
        cols = [msg[f] for f in _FIELDS]
        ticks = tuple(Tick(s, int(t), int(a), float(p), float(q), None if m is None else bool(m))
                      for s, t, a, p, q, m in zip(*cols, strict=True))  # None: side unknown (kept, never a buy)
        if any(len(c) != len(ticks) for c in cols):
            raise ValueError("columns of different lengths")
        return TickBatch(ticks, int(msg["received_ms"]), int(msg["event_ms"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise FrameError(f"not a tick batch: {exc}") from None


# -- what the ingest process publishes to the broker (``quantpanel.broker``) ----------------------
#: The version of the broker messages below. A reader refuses another version with a named error
#: (a dashboard older or newer than its ingest process), never guesses at fields.
MESSAGE_VERSION = 1

_Row = TypeVar("_Row")


def _floats(cls: type) -> tuple[bool, ...]:
    """Which fields of ``cls`` are floats: JSON has no NaN (orjson writes null), so they come back."""
    hints = typing.get_type_hints(cls)
    return tuple(hints[f] is float for f in _fields_of(cls))


def _fields_of(cls: type) -> tuple[str, ...]:
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    return cast(tuple[str, ...], cls._fields)  # type: ignore[attr-defined]  # a NamedTuple


class _Rows(Generic[_Row]):
    """Records of one class as lists of field values (compact; one ``loads`` per message)."""

    def __init__(self, cls: type[_Row]) -> None:
        self.cls, self.fields, self.floats = cls, _fields_of(cls), _floats(cls)

    def dump(self, items: Iterable[_Row]) -> list[list[object]]:
        return [[getattr(i, f) for f in self.fields] for i in items]

    def load(self, rows: Iterable[list[object]]) -> list[_Row]:
        fl, n, cls = self.floats, len(self.fields), self.cls
        out = []
        for r in rows:
            if len(r) != n:
                raise ValueError(f"{cls.__name__} row of {len(r)} fields, expected {n}")
            out.append(cls(*(math.nan if v is None and f else v for v, f in zip(r, fl, strict=True))))
        return out


BARS = _Rows(Bar)
ALERTS = _Rows(Alert)
MARKS = _Rows(MarkPrice)
LIQUIDATIONS = _Rows(Liquidation)
QUOTES = _Rows(Quote)
OPEN_INTEREST = _Rows(OpenInterest)
FUNDING = _Rows(FundingEvent)


def encode_message(kind: str, data: object) -> bytes:
    """One broker message: ``{"v": MESSAGE_VERSION, "k": kind, "d": data}`` (``data`` JSON-able)."""
    return orjson.dumps({"v": MESSAGE_VERSION, "k": kind, "d": data}, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_message(data: bytes, kind: str) -> Any:
    """The ``data`` of a message of ``kind``; another version or kind raises ``FrameError``."""
    try:
        msg = orjson.loads(data)
        v, k, d = msg["v"], msg["k"], msg["d"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise FrameError(f"not a quantpanel broker message: {exc}") from None
    if v != MESSAGE_VERSION:
        raise FrameError(f"broker message version {v!r}, this build reads version {MESSAGE_VERSION}: "
                         "run the same quantpanel version on both sides")
    if k != kind:
        raise FrameError(f"broker message of kind {k!r} where {kind!r} was expected")
    return d


VIEW_FUNDING_KEPT = 8


def encode_view(view: MarketView) -> dict[str, object]:
    """A symbol's newest market values (``MarketView``) as JSON-able data."""
    one: dict[str, tuple[_Rows[Any], Any]] = {"quote": (QUOTES, view.quote), "mark": (MARKS, view.mark),
           "open_interest": (OPEN_INTEREST, view.open_interest),
           "open_interest_before": (OPEN_INTEREST, view.open_interest_before)}
    out: dict[str, object] = {k: rows.dump([v])[0] if v is not None else None for k, (rows, v) in one.items()}
    # the newest funding events only: a long run holds thousands, the cards show the last
    return {**out, "symbol": view.symbol, "funding": FUNDING.dump(view.funding[-VIEW_FUNDING_KEPT:]),
            "liquidations": LIQUIDATIONS.dump(view.liquidations), "updated_ms": view.updated_ms,
            "spot_price": view.spot_price}


def decode_view(d: dict[str, Any]) -> MarketView:
    def one(rows: _Rows[_Row], row: list[object] | None) -> _Row | None:
        return None if row is None else rows.load([row])[0]

    view = MarketView(d["symbol"], quote=one(QUOTES, d["quote"]), mark=one(MARKS, d["mark"]),
                      open_interest=one(OPEN_INTEREST, d["open_interest"]),
                      open_interest_before=one(OPEN_INTEREST, d["open_interest_before"]),
                      funding=FUNDING.load(d["funding"]), updated_ms=int(d["updated_ms"]),
                      spot_price=math.nan if d["spot_price"] is None else float(d["spot_price"]))
    view.liquidations.extend(LIQUIDATIONS.load(d["liquidations"]))
    return view

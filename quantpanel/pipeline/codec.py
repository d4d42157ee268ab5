"""Tick batches as bytes, for a pipeline split across processes (see README, "Scaling out").

An ingest worker publishes ``encode_batch(batch)`` to a log partitioned by symbol (Kafka or any
Kafka-protocol broker); analytics workers run the same streamz graph with
``Stream.from_kafka_batched(...).flatten().map(decode_batch)`` as the pipeline's ``source``.
Columnar JSON (orjson): compact, and one ``loads`` per batch rather than per tick.
"""

from __future__ import annotations

import orjson

from quantpanel.errors import FrameError
from quantpanel.models import Tick, TickBatch

__all__ = ["encode_batch", "decode_batch"]

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

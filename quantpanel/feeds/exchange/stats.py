"""The exchange's counters, in one place because the server, the timeline, the fault injector and
the REST endpoint all bump them, and the CLI and the tests read them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["ExchangeStats"]


@dataclass
class ExchangeStats:
    frames_sent: int = 0  # futures trade frames, counted per client
    market_frames: Counter[str] = field(default_factory=Counter)  # other stream frames by kind, per client
    garbage_sent: int = 0  # garbage frames (``garbage_every`` and the ``garbage`` fault)
    drops: int = 0  # connections closed on purpose (``drop_every``, drop / close_error / refuse)
    connections: int = 0  # WebSocket handshakes accepted
    refused: int = 0  # handshakes answered 503 while a ``refuse`` fault lasts
    passes: int = 0  # passes of the timeline started (a loop, a jump, a new recording)
    rest_requests: int = 0
    rest_failures: int = 0  # injected 429 / 503 answers
    faults: Counter[str] = field(default_factory=Counter)  # faults injected by kind (``every``)

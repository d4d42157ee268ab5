"""Bounded logs that many sessions read incrementally, and what a session gets to catch up."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from quantpanel.models import Bar

__all__ = ["Log", "Delta", "SeriesDelta"]

T = TypeVar("T")


class Log(Generic[T]):
    """A bounded, append-only log with a sequence number, read incrementally by many sessions."""

    def __init__(self, maxlen: int) -> None:
        self.items: deque[T] = deque(maxlen=maxlen)
        self.seq = 0  # items ever appended

    def extend(self, items: list[T]) -> None:
        self.items.extend(items)
        self.seq += len(items)

    def rewrite(self, replace: Callable[[T], T]) -> bool:
        """Replace items in place (rebuilt bars); every reader then resets, since what it holds
        is stale: ``seq`` jumps past any reader's by more than the buffer."""
        items = [replace(i) for i in self.items]
        if items == list(self.items):
            return False
        self.reset_to(items)
        return True

    def reset_to(self, items: Iterable[T]) -> None:
        """Hold ``items`` (the newest ``maxlen`` of them) instead; every reader resets."""
        items = list(items)
        self.items = deque(items, maxlen=self.items.maxlen)
        self.seq += (self.items.maxlen or len(items)) + 1

    def since(self, seq: int | None) -> tuple[list[T], bool]:
        """(items after ``seq``, reset): reset when ``seq`` is None or older than the buffer."""
        new = self.seq - (seq or 0)
        if seq is None or new > len(self.items) or new < 0:
            return list(self.items), True
        return (list(self.items)[len(self.items) - new:] if new else []), False


@dataclass(frozen=True)
class Delta(Generic[T]):
    """What a session needs to catch up from ``seq``."""

    items: list[T]
    seq: int
    reset: bool  # the session is new or fell behind the bounded buffer: replace, don't append


@dataclass(frozen=True)
class SeriesDelta:
    """Bars to catch up from ``seq``: new closed bars and the forming bar."""

    closed: list[Bar]
    forming: Bar | None
    seq: int
    reset: bool

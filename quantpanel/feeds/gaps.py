"""Sequencing of aggTrade ids: Binance futures aggTrade ids are consecutive per symbol, so a jump
is a gap (trades we never received) and an id at or below the last one is a duplicate or arrived
out of order. Pure: ticks in, (ticks in id order, gaps) out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from quantpanel.models import Tick

__all__ = ["Gap", "Sequencer"]


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing ids ``first..last`` (inclusive) of ``symbol``; ``before_ms`` is the time of the tick
    that revealed it (the missing trades are at or before it)."""

    symbol: str
    first: int
    last: int
    before_ms: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


class Sequencer:
    """Admit ticks whose id is above the last admitted one of their symbol; report every jump.

    ``last_ids`` seeds it (the store's highest id per symbol at start-up), so the trades missed
    while the process was down show as a gap with the first tick after start.
    """

    def __init__(self, last_ids: Mapping[str, int] | None = None) -> None:
        self.last: dict[str, int] = {s: i for s, i in (last_ids or {}).items() if i >= 0}
        self.dropped = 0  # duplicates and out-of-order ticks (a gap's backfill brings the latter)

    def admit(self, ticks: Iterable[Tick]) -> tuple[list[Tick], list[tuple[int, Gap]]]:
        """(admitted ticks, gaps): each gap with the index of the admitted tick that revealed it,
        so the missing trades can be put back exactly where they belong."""
        out: list[Tick] = []
        gaps: list[tuple[int, Gap]] = []
        last = self.last
        for t in ticks:
            prev = last.get(t.symbol)
            if prev is not None and t.agg_id <= prev:
                self.dropped += 1
                continue
            if prev is not None and t.agg_id > prev + 1:
                gaps.append((len(out), Gap(t.symbol, prev + 1, t.agg_id - 1, t.time)))
            last[t.symbol] = t.agg_id
            out.append(t)
        return out, gaps

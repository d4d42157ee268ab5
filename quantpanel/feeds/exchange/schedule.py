"""Everything the exchange streams besides futures trades, on the recording's clock, so the server
can release it in step with the trade timeline: a pass that has passed trade time t has released
every event of time <= t (and those up to ``LEAD_MS`` before its first trade), shifted like its
trades. A replay's quotes and marks therefore line up with its trades through pause, speed, jumps
and loops.

Events and their routes: real recorded quotes (``bookTicker``, ``/public``, time T); SIMULATED
``markPrice@1s``, ``markPrice`` (every 3rd second) and ``forceOrder`` (``/market``, time E, see
``simulated``); real spot trades of a spot recording (``/spot``, time T), served as Binance spot
aggTrades. Per pass k, update ids shift by k x the quotes' update-id span and spot ids by k x each
symbol's id span, so neither repeats across passes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from quantpanel.feeds.binance_futures import RecordedTrade, agg_trade_stream
from quantpanel.feeds.binance_market import (
    RecordedLiquidation,
    RecordedMark,
    RecordedQuote,
    render_book_ticker,
    render_force_order,
    render_mark_price,
    stream_name,
)
from quantpanel.feeds.exchange.simulated import MarketModel, SimulatedMarket, simulate
from quantpanel.feeds.exchange.timeline import Pass
from quantpanel.feeds.recording import Recording

__all__ = ["LEAD_MS", "MarketEvents", "build_events", "pass_window", "render_spot_agg_trade"]

LEAD_MS = 1_000  # events this long before a pass's first trade go out with it (quotes precede trades)
_MARK_EVERY_3S = 3  # plain ``@markPrice`` is pushed every 3 s, ``@markPrice@1s`` every second

Record = RecordedQuote | RecordedMark | RecordedLiquidation | RecordedTrade


def render_spot_agg_trade(t: RecordedTrade, dt: int, da: int) -> str:
    """Binance spot's aggTrade frame: the futures fields plus ``"M":true`` (spot has no ``nq``)."""
    side = "" if t.buyer_maker is None else f',"m":{"true" if t.buyer_maker else "false"}'
    return (f'{{"stream":"{agg_trade_stream(t.symbol)}","data":{{"e":"aggTrade","E":{t.event_time + dt},'
            f'"s":"{t.symbol}","a":{t.agg_id + da},"p":"{t.price}","q":"{t.qty}","f":{t.first_id + da},'
            f'"l":{t.last_id + da},"T":{t.time + dt}{side},"M":true}}}}')


def pass_window(ps: Pass) -> tuple[int, int] | None:
    """The recording times (inclusive) whose events pass ``ps`` has released; None before its first
    trade."""
    if ps.end <= ps.start:
        return None
    trades = ps.recording.trades
    return trades[ps.start].time - LEAD_MS, trades[ps.end - 1].time


@dataclass(frozen=True)
class MarketEvents:
    """A recording's non-trade events sorted by release time, with their route and stream."""

    times: tuple[int, ...]
    routes: tuple[str, ...]  # "market" | "public" | "spot"
    kinds: tuple[str, ...]  # "bookTicker" | "markPrice@1s" | "markPrice" | "forceOrder" | "spot"
    streams: tuple[str, ...]
    records: tuple[Record, ...]
    update_span: int  # update-id shift per pass
    spot_spans: dict[str, int]  # spot id shift per pass, per symbol
    simulated: SimulatedMarket | None

    def first_at(self, time_ms: int) -> int:
        """Index of the first event at or after ``time_ms``."""
        return bisect_left(self.times, time_ms)

    def upto(self, time_ms: int) -> int:
        """Index past the last event at or before ``time_ms``."""
        return bisect_right(self.times, time_ms)

    def render(self, j: int, dt: int, pass_no: int) -> str:
        """Event ``j``'s frame as the pass ``pass_no`` shifted by ``dt`` ms sends it."""
        rec, kind = self.records[j], self.kinds[j]
        if isinstance(rec, RecordedQuote):
            return render_book_ticker(rec, dt, pass_no * self.update_span)
        if isinstance(rec, RecordedMark):
            return render_mark_price(rec, dt, kind=kind)
        if isinstance(rec, RecordedLiquidation):
            return render_force_order(rec, dt)
        return render_spot_agg_trade(rec, dt, pass_no * self.spot_spans.get(rec.symbol, 0))


def build_events(recording: Recording, *, model: MarketModel | None, spot: Recording | None) -> MarketEvents:
    """The events of ``recording`` (its quotes, what ``model`` simulates from it, unless None) and
    of the ``spot`` recording's trades, merged by release time."""
    rows: list[tuple[int, int, str, str, str, Record]] = []  # time, order, route, kind, stream, record
    for q in recording.quotes:
        rows.append((q.time, 0, "public", "bookTicker", stream_name(q.symbol, "bookTicker"), q))
    sim = simulate(recording, model) if model is not None and recording.trades else None
    if sim is not None:
        for m in sim.marks:
            rows.append((m.event_time, 1, "market", "markPrice@1s", stream_name(m.symbol, "markPrice@1s"), m))
            if (m.event_time // 1000) % _MARK_EVERY_3S == 0:
                rows.append((m.event_time, 1, "market", "markPrice", stream_name(m.symbol, "markPrice"), m))
        for x in sim.liquidations:
            rows.append((x.event_time, 2, "market", "forceOrder", stream_name(x.symbol, "forceOrder"), x))
    spot_spans: dict[str, int] = {}
    if spot is not None:
        spot_spans = {s: hi - lo + 1 for s, (lo, hi) in spot.id_spans().items()}
        for t in spot.trades:
            rows.append((t.time, 3, "spot", "spot", agg_trade_stream(t.symbol), t))
    rows.sort(key=lambda r: (r[0], r[1]))  # stable: each source keeps its own order within a ms
    ids = [q.update_id for q in recording.quotes]
    return MarketEvents(tuple(r[0] for r in rows), tuple(r[2] for r in rows), tuple(r[3] for r in rows),
                        tuple(r[4] for r in rows), tuple(r[5] for r in rows),
                        max(ids) - min(ids) + 1 if ids else 0, spot_spans, sim)

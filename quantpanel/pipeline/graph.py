"""The streamz graph, wiring only: feed events -> store, -> bar builder -> pair analytics, and
quotes/marks/liquidations -> the market node (``MarketData``).

Built with ``asynchronous=True`` on the server's event loop (a sync streamz graph would start its
own IOLoop thread and run sinks there, which is unsafe for Bokeh). Nodes receive whole batches.
Other layers subscribe to ``updates`` (every ``BarUpdate``) or ``closed`` (closed bars only).

Source and sinks are pluggable: by default the pipeline owns its source (``emit`` feeds it); pass
any streamz stream of ``TickBatch``/``Clock`` events instead (e.g. decoded batches from a Kafka
topic, ``quantpanel.pipeline.codec``), and ``sink`` any output stream to another destination.
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

from streamz import Stream

from quantpanel.models import MarketBatch, TickBatch
from quantpanel.pipeline.bars import BarState, Clock, step
from quantpanel.pipeline.market import MarketData
from quantpanel.pipeline.pairs import PairRegistry
from quantpanel.storage.writer import StoreWriter

__all__ = ["Pipeline"]


class Pipeline:
    """One per process. ``emit`` takes ``TickBatch``, ``MarketBatch`` and ``Clock`` events."""

    def __init__(self, state: BarState, writer: StoreWriter | None = None, *,
                 source: Stream | None = None, market: MarketData | None = None) -> None:
        self.source: Stream = source if source is not None else Stream(asynchronous=True, stream_name="feed")
        self.market = market if market is not None else MarketData(state.timeframes, writer)
        self.source.filter(lambda e: e.__class__ is MarketBatch).sink(self.market.on_batch)
        self.source.filter(lambda e: e.__class__ is Clock).sink(
            lambda c: self.market.on_clock(c.now_ms - state.grace_ms))  # the bars' grace: late quotes count
        trading = self.source.filter(lambda e: e.__class__ is not MarketBatch)
        ticks = trading.filter(lambda e: isinstance(e, TickBatch)).map(lambda b: b.ticks)
        self._bars_node = trading.accumulate(step, returns_state=True, start=state)
        self.updates: Stream = self._bars_node
        self.closed: Stream = self.updates.map(lambda u: u.closed).filter(bool)
        # live pair analytics for every watched PairSpec: {spec: [PairPoint, ...]} per update
        self.pairs = PairRegistry()
        self.pair_points: Stream = self.closed.map(self.pairs.update).filter(bool)
        if writer is not None:
            ticks.sink(writer.put_ticks)
            self.closed.sink(writer.put_bars)

    def emit(self, event: TickBatch | MarketBatch | Clock) -> None:
        self.source.emit(event)

    def add_series(self, warm: BarState) -> None:
        """Continue the series of ``warm`` (a symbol added at runtime, warmed from the store)
        beside the ones already built; on the event loop, between two events."""
        st = self.bar_state
        self._bars_node.state = replace(
            st, series={**st.series, **warm.series}, last_agg_id={**st.last_agg_id, **warm.last_agg_id})

    def drop_symbol(self, symbol: str) -> None:
        """Stop building ``symbol``'s bars (it was removed from the watch list)."""
        st = self.bar_state
        self._bars_node.state = replace(st, series={k: v for k, v in st.series.items() if k[0] != symbol})

    @property
    def bar_state(self) -> BarState:
        return cast(BarState, self._bars_node.state)  # streamz is untyped

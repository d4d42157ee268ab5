"""Tick batches as bytes, and a pipeline fed from an external streamz source (the shape of the
scale-out adapter: decoded batches from a log instead of the WebSocket)."""

from __future__ import annotations

import pytest
from streamz import Stream

from quantpanel.errors import FrameError
from quantpanel.models import TickBatch
from quantpanel.pipeline.bars import build_bars, initial_state
from quantpanel.pipeline.codec import decode_batch, encode_batch
from quantpanel.pipeline.graph import Pipeline
from quantpanel.pipeline.pairs import PairSpec


def test_round_trip_is_exact_on_real_ticks(usdm_ticks):
    batch = TickBatch(tuple(usdm_ticks[:2000]), 1_723_161_240_123, 1_723_161_240_100)
    assert decode_batch(encode_batch(batch)) == batch
    assert decode_batch(encode_batch(TickBatch((), 5, 0))) == TickBatch((), 5, 0)


@pytest.mark.parametrize("data", [b"", b"[]", b'{"received_ms": 1}', b"\xff\xfe",
                                  b'{"received_ms":1,"event_ms":0,"symbol":["A"],"time":[1],'
                                  b'"agg_id":[1,2],"price":[1],"qty":[1],"buyer_maker":[true]}'])
def test_a_message_that_is_not_a_batch_is_named(data):
    with pytest.raises(FrameError, match="not a tick batch"):
        decode_batch(data)


async def test_a_pipeline_on_an_external_source_builds_the_same_bars_and_pairs(usdm_ticks):
    """Bytes in (as from a topic), decoded by a streamz node the pipeline takes as its source."""
    log = Stream(asynchronous=True)
    p = Pipeline(initial_state(["1s"]), source=log.map(decode_batch))
    spec = PairSpec("BTCUSDT", "ETHUSDT", "1s", window=20)
    p.pairs.watch(spec)
    closed = p.closed.sink_to_list()
    points = p.pair_points.sink_to_list()
    for i in range(0, len(usdm_ticks), 500):
        log.emit(encode_batch(TickBatch(tuple(usdm_ticks[i:i + 500]), 0, 0)))
    ref, _ = build_bars(usdm_ticks, ["1s"], include_forming=False)
    key = lambda b: (b.symbol, b.time)  # noqa: E731
    assert sorted((b for c in closed for b in c), key=key) == sorted(ref, key=key)
    ref_p = Pipeline(initial_state(["1s"]))  # the same graph fed directly
    ref_p.pairs.watch(spec)
    ref_points = ref_p.pair_points.sink_to_list()
    for i in range(0, len(usdm_ticks), 500):
        ref_p.emit(TickBatch(tuple(usdm_ticks[i:i + 500]), 0, 0))
    assert [pt for d in points for pt in d[spec]] == [pt for d in ref_points for pt in d[spec]]
    assert len([pt for d in points for pt in d[spec]]) > 300

"""A recording to replay: trades of one or more symbols sorted by time, loaded from any file
``trade_files`` reads or from stored ticks, and optionally the quotes (bookTicker) recorded beside
them, which the local exchange serves on its ``/public`` route in step with the trades.

A replay needs contiguous ids for the feed's gap detection: ``load_recording`` renumbers trades
recorded without ids (NDJSON ticks, whose stable synthetic keys the importer stores) 1..N per
symbol (``with_contiguous_ids``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from quantpanel.errors import ImportFileError
from quantpanel.feeds.binance_futures import RecordedTrade
from quantpanel.feeds.binance_market import RecordedQuote
from quantpanel.feeds.trade_files import read_book_tickers, read_trades
from quantpanel.models import Tick, is_synthetic_id

__all__ = [
    "Recording",
    "load_recording",
    "load_quotes",
    "recording_from_ticks",
    "with_contiguous_ids",
    "to_tick",
]


@dataclass(frozen=True)
class Recording:
    """Trades of one or more symbols, sorted by (time, symbol, agg_id), ready to replay, and the
    quotes recorded beside them (if any), sorted by (time T, symbol, update id)."""

    trades: tuple[RecordedTrade, ...]
    source: str
    counts: dict[str, int] = field(default_factory=dict)
    quotes: tuple[RecordedQuote, ...] = ()

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted({t.symbol for t in self.trades}))

    def id_spans(self) -> dict[str, tuple[int, int]]:
        """Per symbol, the (lowest, highest) id in the recording, trade ids included."""
        spans: dict[str, tuple[int, int]] = {}
        for t in self.trades:
            lo, hi = spans.get(t.symbol, (t.first_id, t.last_id))
            spans[t.symbol] = (min(lo, t.first_id, t.agg_id), max(hi, t.last_id, t.agg_id))
        return spans

    def span_ms(self) -> int:
        """Time one pass takes, with a 1 s gap before the next pass of a loop."""
        return self.trades[-1].time - self.trades[0].time + 1_000


def to_tick(t: RecordedTrade) -> Tick:
    """The stored/streamed shape of a recorded trade (prices as floats)."""
    return Tick(t.symbol, t.time, t.agg_id, float(t.price), float(t.qty), t.buyer_maker)


def with_contiguous_ids(recording: Recording) -> Recording:
    """Give every symbol with synthetic keys (trades recorded without ids) agg ids 1..N in time,
    then file, order, for a replay: the feed's gap detection needs ids that rise by one per trade
    (a symbol mixing real and synthetic ids is renumbered whole)."""
    synthetic = {t.symbol for t in recording.trades if is_synthetic_id(t.agg_id)}
    if not synthetic:
        return recording
    n: Counter[str] = Counter()
    trades = []
    for t in recording.trades:  # sorted by (time, symbol, key): per symbol, time then file order
        if t.symbol in synthetic:
            n[t.symbol] += 1
            t = dataclasses.replace(t, agg_id=n[t.symbol], first_id=n[t.symbol], last_id=n[t.symbol])
        trades.append(t)
    return Recording(tuple(trades), recording.source, recording.counts, recording.quotes)


def recording_from_ticks(ticks: Iterable[Tick], source: str) -> Recording:
    """Stored ticks as a recording to replay. The store keeps no trade ids, so ``f = l = a``;
    prices and quantities are the stored floats' shortest exact strings. Symbols stored with
    synthetic keys are renumbered 1..N (``with_contiguous_ids``) for the feed's gap detection."""
    trades = [RecordedTrade(t.symbol, t.time, t.agg_id, t.agg_id, t.agg_id, repr(t.price), repr(t.qty),
                            t.buyer_maker, t.time) for t in ticks]
    trades.sort(key=lambda t: (t.time, t.symbol, t.agg_id))
    return with_contiguous_ids(Recording(tuple(trades), source, dict(Counter(t.symbol for t in trades))))


def load_quotes(path: str | Path, counts: Counter[str] | None = None) -> tuple[RecordedQuote, ...]:
    """The bookTicker frames of a capture, sorted by (time T, symbol, update id); ImportFileError
    when there are none (a quotes file without quotes is a wrong path, not an empty market)."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: no such quotes file")
    counts = counts if counts is not None else Counter()
    quotes = sorted(read_book_tickers(path, counts), key=lambda q: (q.time, q.symbol, q.update_id))
    if not quotes:
        raise ImportFileError(f"{path}: holds no bookTicker frames (saw {dict(counts)})")
    return tuple(quotes)


def load_recording(path: str | Path, *, contiguous_ids: bool = True,
                   quotes: str | Path | None = None) -> Recording:
    """Load a capture, an aggTrades CSV or NDJSON ticks into a sorted ``Recording`` to replay,
    with the bookTicker frames of capture ``quotes`` (may be the same file) beside the trades.

    Trades without exchange ids (NDJSON ticks) get ids 1..N per symbol in time, then file, order
    (``with_contiguous_ids``) so the exchange serves them gap-free; ``contiguous_ids=False`` keeps
    the stable synthetic keys the importer stores. The quotes' counts join ``counts`` prefixed
    ``quotes.`` (``quotes.bookTicker``, ``quotes.malformed``, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: no such recording file")
    counts: Counter[str] = Counter()
    _, rows = read_trades(path, counts=counts)
    trades = list(rows)
    if not trades:
        raise ImportFileError(f"{path}: holds no aggTrade or trade frames (saw {dict(counts)})")
    trades.sort(key=lambda t: (t.time, t.symbol, t.agg_id))
    quote_counts: Counter[str] = Counter()
    recorded_quotes = load_quotes(quotes, quote_counts) if quotes is not None else ()
    counts.update({f"quotes.{k}": v for k, v in quote_counts.items()})
    recording = Recording(tuple(trades), str(path), dict(counts), recorded_quotes)
    return with_contiguous_ids(recording) if contiguous_ids else recording

"""SIMULATED mark price, funding, liquidations and open interest, made from a recording's real
trades (and quotes when it has them), because no public recording holds real ones for the bundled
minutes. Deterministic: the same recording and ``MarketModel`` give the same events, byte for byte.

The model, per symbol, on the recording's own clock (every whole second from the first trade):

* **mark** = mid of the last quote at or before the second (else the last trade price);
  **index** = mark x (1 - premium), the premium a mean-reverting AR(1) around ``premium_mean``
  (clamped to +-``premium_cap``); the estimated settle price ``P`` = index.
* **funding** every ``funding_interval_s`` of recording time (default 60 s so a 6-minute replay
  shows several; real Binance is usually 8 h), times aligned to the epoch like Binance's. The rate
  is Binance's formula on the interval's average premium P: ``P + clamp(I - P, -0.05 %, +0.05 %)``
  with I = ``interest_rate`` (0.01 %), capped at +-``funding_cap``, so near 1e-4 with either sign
  possible. ``r`` of a markPriceUpdate is that rate so far (the predicted one), ``T`` the next
  funding time; at each funding time the rate in force is the funding event (mark at that second).
* **liquidations**: after a 1 s move of at least ``liquidation_move_bps``, with probability
  ``liquidation_probability`` x move / threshold (at most 1), one forceOrder in that second (Binance
  pushes at most one per symbol per second): a fall liquidates a long (a SELL order), a rise a short
  (BUY); notional lognormal (median ``liquidation_notional``, sigma ``liquidation_sigma``), filled at
  the market price, its order price 0.2-1 % beyond it. On the bundled minutes: a few per minute.
* **open interest**: a lognormal random walk (``open_interest_vol`` per second) from
  ``open_interest_notional`` / first price, less each liquidated quantity.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass

from quantpanel.feeds.binance_market import RecordedFunding, RecordedLiquidation, RecordedMark
from quantpanel.feeds.recording import Recording

__all__ = ["MarketModel", "SimulatedMarket", "simulate"]

_CLAMP = 0.0005  # Binance's +-0.05 % clamp of (interest - premium)


@dataclass(frozen=True, slots=True)
class MarketModel:
    """The simulation's knobs (config-worthy); every output of it is labelled simulated."""

    seed: int = 0
    funding_interval_s: int = 60  # real Binance: 8 h (some symbols 4 h or 1 h)
    interest_rate: float = 0.0001  # I per interval (Binance: 0.01 % per 8 h)
    premium_mean: float = 0.0001
    premium_reversion: float = 0.02  # per second
    premium_vol: float = 0.00015  # per sqrt(second)
    premium_cap: float = 0.003
    funding_cap: float = 0.003
    liquidation_move_bps: float = 2.0
    liquidation_probability: float = 0.5
    liquidation_notional: float = 5_000.0  # median, quote currency
    liquidation_sigma: float = 1.0
    open_interest_notional: float = 5e9  # quote currency at the first price
    open_interest_vol: float = 0.0002  # per sqrt(second)

    def __post_init__(self) -> None:
        if self.funding_interval_s < 1:
            raise ValueError(f"funding_interval_s must be >= 1, got {self.funding_interval_s}")
        if self.liquidation_move_bps <= 0:
            raise ValueError(f"liquidation_move_bps must be > 0, got {self.liquidation_move_bps}")


@dataclass(frozen=True)
class SimulatedMarket:
    """What ``simulate`` made, on the recording's clock (the exchange shifts it per pass)."""

    marks: tuple[RecordedMark, ...]  # one per symbol per second, by (time, symbol)
    liquidations: tuple[RecordedLiquidation, ...]  # by (event time, symbol)
    funding: tuple[RecordedFunding, ...]  # by (time, symbol)
    open_interest: dict[str, tuple[tuple[int, ...], tuple[str, ...]]]  # per symbol: seconds, values

    def open_interest_at(self, symbol: str, time_ms: int) -> tuple[int, str] | None:
        """The (second, value) in force at ``time_ms`` (the first one before it starts); None for
        a symbol the recording does not have."""
        if symbol not in self.open_interest:
            return None
        times, values = self.open_interest[symbol]
        i = max(bisect_right(times, time_ms) - 1, 0)
        return times[i], values[i]


def _prices(recording: Recording, symbol: str) -> tuple[list[int], list[float]]:
    """The price path the mark follows: quote mids when there are quotes, else trade prices."""
    quotes = [q for q in recording.quotes if q.symbol == symbol]
    if quotes:
        return [q.time for q in quotes], [(float(q.bid) + float(q.ask)) / 2 for q in quotes]
    trades = [t for t in recording.trades if t.symbol == symbol]
    return [t.time for t in trades], [float(t.price) for t in trades]


def _decimals(recording: Recording, symbol: str) -> int:
    """Price decimals of the symbol's trades (a liquidation's prices are written like them)."""
    price = next(t.price for t in recording.trades if t.symbol == symbol)
    return len(price.partition(".")[2])


def _qty_step(price: float) -> int:
    """Quantity decimals for a liquidation: 3 for coins over 100, fewer for cheaper ones."""
    return 3 if price >= 100 else 1 if price >= 1 else 0


def _rate(avg_premium: float, m: MarketModel) -> float:
    r = avg_premium + min(max(m.interest_rate - avg_premium, -_CLAMP), _CLAMP)
    return min(max(r, -m.funding_cap), m.funding_cap)


def _symbol(recording: Recording, symbol: str, seconds: range, m: MarketModel,
            ) -> tuple[list[RecordedMark], list[RecordedLiquidation], list[RecordedFunding], list[int], list[str]]:
    """One symbol's simulated series; each part of the model draws from its own seeded stream, so
    changing one knob does not reshuffle the others."""
    times, prices = _prices(recording, symbol)
    rng_p, rng_l, rng_o = (random.Random(f"{m.seed}:{symbol}:{part}") for part in ("premium", "liq", "oi"))
    decimals, interval = _decimals(recording, symbol), m.funding_interval_s * 1000
    marks: list[RecordedMark] = []
    liqs: list[RecordedLiquidation] = []
    funding: list[RecordedFunding] = []
    oi_times: list[int] = []
    oi_values: list[str] = []
    premium, prem_sum, prem_n, prev, oi = m.premium_mean, 0.0, 0, 0.0, 0.0
    for s in seconds:
        i = bisect_right(times, s) - 1
        if i < 0:
            continue  # nothing traded or quoted yet
        price = prices[i]
        premium += m.premium_reversion * (m.premium_mean - premium) + m.premium_vol * rng_p.gauss(0.0, 1.0)
        premium = min(max(premium, -m.premium_cap), m.premium_cap)
        prem_sum, prem_n = prem_sum + premium, prem_n + 1
        rate = f"{_rate(prem_sum / prem_n, m):.8f}"
        index = f"{price * (1 - premium):.8f}"
        # T is the next funding at or after now: the update at F itself still names F, carrying the
        # rate F settles at, as the last word on it (the next update names the following funding)
        marks.append(RecordedMark(symbol, s, f"{price:.8f}", index, index, rate, -(-s // interval) * interval))
        if s % interval == 0:  # the rate in force is paid now; the next interval starts afresh
            funding.append(RecordedFunding(symbol, s, rate, f"{price:.8f}"))
            prem_sum, prem_n = 0.0, 0
        if not oi:
            oi = m.open_interest_notional / price
        oi *= math.exp(m.open_interest_vol * rng_o.gauss(0.0, 1.0))
        if prev:
            move_bps = math.log(price / prev) * 1e4
            chance = m.liquidation_probability * abs(move_bps) / m.liquidation_move_bps
            if abs(move_bps) >= m.liquidation_move_bps and rng_l.random() < chance:
                liq = _liquidation(symbol, s, price, move_bps < 0, decimals, m, rng_l)
                liqs.append(liq)
                oi = max(oi - float(liq.qty), 0.0)
        prev = price
        oi_times.append(s)
        oi_values.append(f"{oi:.3f}")
    return marks, liqs, funding, oi_times, oi_values


def _liquidation(symbol: str, s: int, price: float, fell: bool, decimals: int, m: MarketModel,
                 rng: random.Random) -> RecordedLiquidation:
    """One filled forceOrder in the second ending at ``s``: SELL after a fall (a long liquidated)."""
    step = _qty_step(price)
    notional = m.liquidation_notional * math.exp(m.liquidation_sigma * rng.gauss(0.0, 1.0))
    qty = f"{max(round(notional / price, step), 10.0 ** -step):.{step}f}"
    beyond = rng.uniform(0.002, 0.01)
    order_price = price * (1 - beyond) if fell else price * (1 + beyond)
    t = s - rng.randint(1, 999)
    return RecordedLiquidation(symbol, t + rng.randint(0, 5), "SELL" if fell else "BUY", qty,
                               f"{order_price:.{decimals}f}", f"{price:.{decimals}f}", "FILLED", qty, qty, t)


def simulate(recording: Recording, model: MarketModel | None = None) -> SimulatedMarket:
    """Simulate ``recording``'s mark price, funding, liquidations and open interest (see the module
    docstring for the model); every second from the first trade to the last."""
    m = model or MarketModel()
    first, last = recording.trades[0].time, recording.trades[-1].time
    seconds = range(-(-first // 1000) * 1000, last + 1, 1000)
    marks: list[RecordedMark] = []
    liqs: list[RecordedLiquidation] = []
    funding: list[RecordedFunding] = []
    oi: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {}
    for sym in recording.symbols:
        mk, lq, fd, oi_t, oi_v = _symbol(recording, sym, seconds, m)
        marks += mk
        liqs += lq
        funding += fd
        if oi_t:
            oi[sym] = (tuple(oi_t), tuple(oi_v))
    marks.sort(key=lambda x: (x.event_time, x.symbol))
    liqs.sort(key=lambda x: (x.event_time, x.symbol))
    funding.sort(key=lambda x: (x.time, x.symbol))
    return SimulatedMarket(tuple(marks), tuple(liqs), tuple(funding), oi)

"""A local Binance-compatible exchange, so tests, benchmarks and the offline demo run the very
client code used for live Binance: ``server`` (WebSocket and HTTP by route, the replay controls),
``timeline`` (what is due when), ``schedule`` (quotes, marks, liquidations and spot trades in step
with it), ``simulated`` (the SIMULATED mark, funding, liquidations and open interest), ``faults``
(misbehaving on purpose), ``rest`` (``aggTrades``), ``market_rest`` (``fundingRate``,
``openInterest``)."""

from quantpanel.feeds.exchange.faults import FAULT_KINDS, FAULT_ROUTES, Faults
from quantpanel.feeds.exchange.server import Exchange
from quantpanel.feeds.exchange.simulated import MarketModel, SimulatedMarket
from quantpanel.feeds.exchange.stats import ExchangeStats

__all__ = ["FAULT_KINDS", "FAULT_ROUTES", "Exchange", "ExchangeStats", "Faults", "MarketModel", "SimulatedMarket"]

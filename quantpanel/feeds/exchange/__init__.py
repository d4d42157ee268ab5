"""A local Binance-compatible exchange, so tests, benchmarks and the offline demo run the very
client code used for live Binance: ``server`` (WebSocket and HTTP, the replay controls),
``timeline`` (what is due when), ``faults`` (misbehaving on purpose), ``rest`` (``aggTrades``)."""

from quantpanel.feeds.exchange.faults import FAULT_KINDS, Faults
from quantpanel.feeds.exchange.server import Exchange
from quantpanel.feeds.exchange.stats import ExchangeStats

__all__ = ["FAULT_KINDS", "Exchange", "ExchangeStats", "Faults"]

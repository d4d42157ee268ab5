"""quantpanel: real-time quantitative analytics for Binance USD-M Futures."""

__version__ = "0.1.0"

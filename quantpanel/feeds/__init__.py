"""Market data in: Binance USD-M protocol, the live connection, recordings and the local exchange."""

"""SQLite persistence: ticks (the truth), a cache of closed bars, and file imports."""

from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

__all__ = ["Store", "StoreWriter"]

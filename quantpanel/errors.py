"""Exceptions raised by quantpanel; every message says what was wrong and where."""

from __future__ import annotations

__all__ = [
    "QuantPanelError",
    "ConfigError",
    "FrameError",
    "ImportFileError",
    "StoreError",
    "SeriesNotFoundError",
    "ReplayError",
    "AnalyticsInputError",
    "InsufficientDataError",
]


class QuantPanelError(Exception):
    """Base class of every error quantpanel raises on purpose."""


class ConfigError(QuantPanelError):
    """config.yaml or a CLI flag has an unknown key or a bad value; the message names the key path."""


class FrameError(QuantPanelError):
    """A WebSocket frame could not be parsed; it is counted and dropped, never stored."""


class ImportFileError(QuantPanelError):
    """A file given to an importer is malformed; the message names the file and the line."""


class StoreError(QuantPanelError):
    """The SQLite store cannot be opened or written (path, permissions, disk full)."""


class SeriesNotFoundError(StoreError):
    """No bar of a (symbol, timeframe) is stored or can be built; the message lists what is."""


class ReplayError(QuantPanelError):
    """A replay control cannot act: not replaying, nothing stored in the range, a bad range."""


class AnalyticsInputError(QuantPanelError, ValueError):
    """Analytics input is malformed: mismatched lengths, unsorted or duplicate times, non-finite."""


class InsufficientDataError(AnalyticsInputError):
    """Too few observations for a statistic; the message says how many are needed and given."""

    def __init__(self, what: str, needed: int, got: int) -> None:
        super().__init__(f"{what} needs at least {needed} observations, got {got}")
        self.what, self.needed, self.got = what, needed, got

"""Epoch numbers of unknown unit -> milliseconds, told apart by magnitude.

Files carry epoch times in seconds, milliseconds (Binance futures), microseconds (Binance spot
dumps from 2025-01-01) or nanoseconds (collectors' receive clocks). Read in each unit, a time
of 1990..2100 lands in a range of its own (each unit is 1000x the last and the range spans less
than that), so the magnitude names the unit. A number that is a plausible time in no unit, or a
column whose rows disagree on the unit, is refused rather than guessed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EpochError", "EPOCH_UNITS", "epochs_to_ms", "epoch_to_ms", "check_ms"]

#: (unit, milliseconds per unit)
EPOCH_UNITS: tuple[tuple[str, float], ...] = (("s", 1e3), ("ms", 1.0), ("µs", 1e-3), ("ns", 1e-6))
_EARLIEST_MS = 631_152_000_000  # 1990-01-01T00:00Z
_LATEST_MS = 4_102_444_800_000  # 2100-01-01T00:00Z


class EpochError(ValueError):
    """``index`` is the first offending value's position; the message says what is wrong."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def _plain(x: object) -> object:
    """A numpy scalar as the Python number it holds (for messages)."""
    return x.item() if isinstance(x, np.generic) else x


def _units(v: np.ndarray) -> np.ndarray:
    """Per value, the index into EPOCH_UNITS of the unit that makes it a 1990..2100 time; -1: none."""
    out = np.full(len(v), -1, dtype="int64")
    for i, (_, ms) in enumerate(EPOCH_UNITS):
        t = v * ms
        out[(t >= _EARLIEST_MS) & (t < _LATEST_MS)] = i
    return out


def epochs_to_ms(values: np.ndarray) -> tuple[np.ndarray, str]:
    """Epoch numbers (all in one unit) -> (int64 ms, the unit's name). Raises ``EpochError``."""
    v = np.asarray(values, dtype="float64")
    if not len(v):
        return np.zeros(0, dtype="int64"), "ms"
    units = _units(v)
    bad = np.flatnonzero(units < 0)
    if len(bad):
        i = int(bad[0])
        raise EpochError(i, f"{_plain(values[i])!r} is not an epoch time of 1990..2100 in seconds, "
                            "milliseconds, microseconds or nanoseconds")
    first = int(units[0])
    mixed = np.flatnonzero(units != first)
    if len(mixed):
        i = int(mixed[0])
        raise EpochError(i, f"{_plain(values[i])!r} reads as epoch {EPOCH_UNITS[units[i]][0]} where the rows "
                            f"before are epoch {EPOCH_UNITS[first][0]}: one unit per column")
    name, ms = EPOCH_UNITS[first]
    if ms >= 1:
        return (v * ms).round().astype("int64"), name
    per = round(1 / ms)  # µs or ns: integer division, so no float rounding at ms boundaries
    return np.asarray(values).astype("int64") // per, name


def epoch_to_ms(value: int | float) -> int:
    """One epoch number -> ms: ``epochs_to_ms`` for row-by-row readers (pure Python, ~0.3 µs)."""
    for _name, ms in EPOCH_UNITS:
        t = value * ms
        if _EARLIEST_MS <= t < _LATEST_MS:
            return round(t) if ms >= 1 else int(value) // round(1 / ms)
    raise EpochError(0, f"{value!r} is not an epoch time of 1990..2100 in seconds, milliseconds, "
                        "microseconds or nanoseconds")


def check_ms(ms: int, text: object) -> int:
    """``ms`` (parsed from ``text``) if it is a time of 1990..2100, else ``EpochError``."""
    if not _EARLIEST_MS <= ms < _LATEST_MS:
        raise EpochError(0, f"{text!r} is not a time of 1990..2100")
    return ms

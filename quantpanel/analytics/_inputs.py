"""Validation at the analytics boundary: arrays in, clear errors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

from quantpanel.errors import AnalyticsInputError, InsufficientDataError

#: What analytics accept for a series: an array, a pandas Series (indexed by bar time) or numbers.
ArrayLike: TypeAlias = npt.NDArray[Any] | pd.Series | Sequence[float]
#: What analytics return: float64 arrays.
FloatArray: TypeAlias = npt.NDArray[np.float64]


def as_array(x: ArrayLike, name: str) -> FloatArray:
    """A float64 1-D array of finite values; the error names the argument."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise AnalyticsInputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise AnalyticsInputError(f"{name} has a non-finite value {float(arr[i])} at position {i}")
    return arr


def check_sorted_index(x: ArrayLike, name: str) -> None:
    """A Series' index (bar times) must be strictly increasing."""
    if isinstance(x, pd.Series) and len(x) > 1:
        idx = x.index
        if not idx.is_monotonic_increasing:
            raise AnalyticsInputError(f"{name} is not sorted by time")
        if idx.has_duplicates:
            raise AnalyticsInputError(f"{name} has duplicate times, e.g. {idx[idx.duplicated()][0]}")


def pair_arrays(y: ArrayLike, x: ArrayLike, *, need: int, what: str) -> tuple[FloatArray, FloatArray]:
    """Validated, equally long arrays of leg A (y) and leg B (x), with at least ``need`` points."""
    check_sorted_index(y, "y")
    check_sorted_index(x, "x")
    if isinstance(y, pd.Series) and isinstance(x, pd.Series) and not y.index.equals(x.index):
        raise AnalyticsInputError(
            "y and x are not aligned on the same bar times; inner-join them first "
            "(quantpanel.analytics.align)")
    ya, xa = as_array(y, "y"), as_array(x, "x")
    if len(ya) != len(xa):
        raise AnalyticsInputError(f"y and x differ in length: {len(ya)} vs {len(xa)}")
    if len(ya) < need:
        raise InsufficientDataError(what, need, len(ya))
    return ya, xa


def series_array(s: ArrayLike, *, need: int, what: str, name: str = "spread") -> FloatArray:
    check_sorted_index(s, name)
    arr = as_array(s, name)
    if len(arr) < need:
        raise InsufficientDataError(what, need, len(arr))
    return arr

"""The numpydoc examples of quantpanel.analytics run, and show the true output."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import quantpanel.analytics

MODULES = sorted(m.name for m in pkgutil.iter_modules(quantpanel.analytics.__path__))
# Modules whose public functions have no example yet; every other public module must have some.
WITHOUT_EXAMPLES: set[str] = set()


@pytest.mark.parametrize("name", MODULES)
def test_examples(name: str) -> None:
    module = importlib.import_module(f"quantpanel.analytics.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see the output)"
    if not name.startswith("_") and name not in WITHOUT_EXAMPLES:
        assert result.attempted > 0, f"quantpanel.analytics.{name} has no examples"


def test_every_module_is_collected() -> None:
    assert {"backtest", "correlation", "hedge", "kalman", "report", "spread", "stationarity", "stats"} <= set(MODULES)

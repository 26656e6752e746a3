"""The examples in the detectors' docstrings are true (they double as documentation)."""

import doctest
import importlib
import pkgutil

import pytest

from gatewatch import detectors

MODULES = sorted(m.name for m in pkgutil.iter_modules(detectors.__path__, "gatewatch.detectors."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0

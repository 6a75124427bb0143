"""The Examples sections of the kernels' docstrings run as written."""

import doctest
import importlib

import pytest

from medcompute import kernels

MODULES = [
    "_opencv", "_separable", "arithmetic", "backend", "bandpass", "cast", "filters", "footprint",
    "projection", "memory",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(f"medcompute.kernels.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_public_api_is_explicit_and_documented():
    for name in kernels.__all__:
        obj = getattr(kernels, name)
        assert obj.__doc__, name
        if callable(obj) and not isinstance(obj, type):
            assert "Returns" in obj.__doc__, name
            assert "Examples" in obj.__doc__, name

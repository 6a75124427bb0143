"""Fixtures for the kernel tests: run on NumPy always, on CuPy where a GPU is visible."""

from __future__ import annotations

import numpy as np
import pytest


def _cuda_device_count() -> int:
    try:
        import cupy
    except ImportError:
        return 0
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except RuntimeError:  # CUDARuntimeError and driver failures: no GPU parameters
        return 0


_XP_PARAMS = [pytest.param(np, id="numpy")]
if _cuda_device_count() > 0:
    import cupy

    _XP_PARAMS.append(pytest.param(cupy, id="cupy", marks=pytest.mark.gpu))


@pytest.fixture(params=_XP_PARAMS)
def xp(request):
    """The array namespace under test: numpy, and cupy when a GPU is present."""
    return request.param


def _to_host(array):
    get = getattr(array, "get", None)
    return np.asarray(array) if get is None else get()


@pytest.fixture
def host():
    """Copy an array of either namespace to a NumPy array."""
    return _to_host


@pytest.fixture
def rng():
    return np.random.default_rng(20240531)


def _make_image(shape, dtype, seed=0):
    """Seeded test image: integers spread over part of the dtype's range, floats ~N(100, 30)."""
    gen = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = max(int(info.min), -1000), min(int(info.max), 1000)
        return gen.integers(low, high, size=shape, endpoint=True).astype(dtype)
    return gen.normal(100.0, 30.0, size=shape).astype(dtype)


@pytest.fixture
def make_image():
    """``make_image(shape, dtype, seed=0)`` -> seeded NumPy test image."""
    return _make_image


def _assert_close(actual, expected, *, rtol=1e-6, dtype=None):
    """Compare a kernel result (either namespace) with a NumPy reference.

    The absolute tolerance scales with the reference's magnitude so that
    cancellation near zero (derivatives, differences) does not fail float32.
    """
    result = _to_host(actual)
    expected = np.asarray(expected)
    if dtype is not None:
        assert result.dtype == np.dtype(dtype)
    assert result.shape == expected.shape
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(result, expected, rtol=rtol, atol=rtol * scale)


@pytest.fixture
def assert_close(xp):
    """Like numpy's assert_allclose, 10x looser on a GPU (other summation order)."""
    factor = 1.0 if xp is np else 10.0

    def check(actual, expected, *, rtol=1e-6, dtype=None):
        assert type(actual) is type(xp.asarray(np.zeros(1)))
        _assert_close(actual, expected, rtol=rtol * factor, dtype=dtype)

    return check

"""Every operation end to end through a real server, against SciPy/NumPy as the oracle.

The service's kernels are not used here: each expected value is one scipy.ndimage (or
NumPy) call, written from that library's documentation of what the operation means."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SHAPE = (6, 20, 24)


def _volume(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(-500, 1500, SHAPE, dtype=np.int16)


def _f(vol: np.ndarray) -> np.ndarray:
    return vol.astype(np.float32)


def _dog_sigma(cutoff: float) -> float:
    # A Gaussian's gain is 1/2 at the wavelength where exp(-2 pi^2 sigma^2 / w^2) = 1/2.
    return math.sqrt(math.log(2) / 2) * cutoff / math.pi


def _edge(vol: np.ndarray, derivative) -> np.ndarray:
    x = _f(vol)
    return np.sqrt(sum(derivative(x, axis=a, mode="nearest") ** 2 for a in range(x.ndim)))


CASES = {
    "gaussian:sigma=1.2": lambda v: ndi.gaussian_filter(_f(v), 1.2, mode="nearest"),
    "mean:size=3": lambda v: ndi.uniform_filter(_f(v), 3, mode="nearest"),
    "median:size=3": lambda v: ndi.median_filter(v, 3, mode="nearest").astype(np.float32),
    "laplacian": lambda v: ndi.laplace(_f(v), mode="nearest"),
    "laplacian:sigma=1": lambda v: ndi.gaussian_laplace(_f(v), 1.0, mode="nearest"),
    "gradient:axis=1": lambda v: ndi.correlate1d(_f(v), [-0.5, 0, 0.5], axis=1, mode="nearest"),
    "gradient:axis=2,order=2": lambda v: ndi.correlate1d(_f(v), [1, -2, 1], axis=2,
                                                         mode="nearest"),
    "edge:operator=sobel": lambda v: _edge(v, ndi.sobel),
    "edge:operator=prewitt": lambda v: _edge(v, ndi.prewitt),
    "bandpass:low_cutoff=2,high_cutoff=6": lambda v: (
        ndi.gaussian_filter(_f(v), _dog_sigma(2), mode="nearest")
        - ndi.gaussian_filter(_f(v), _dog_sigma(6), mode="nearest")),
    "mip:axis=0": lambda v: _f(v).max(axis=0),
    "project:kind=mean,axis=1": lambda v: _f(v).mean(axis=1),
    "subtract:mask_frame=2": lambda v: _f(v) - _f(v[2])[None],
}


@pytest.mark.parametrize("op", list(CASES))
def test_each_operation_equals_scipy(client, op):
    vol = _volume()
    result = client.process(vol, [op])
    expected = CASES[op](vol)
    assert result.array.shape == expected.shape
    scale = float(np.abs(expected).max()) or 1.0
    np.testing.assert_allclose(result.array, expected, rtol=0, atol=scale * 2e-6)


def test_a_pipeline_equals_the_same_scipy_calls_in_order(client):
    vol = _volume(7)
    result = client.process(vol, ["gaussian:sigma=1", "edge:operator=sobel", "mip:axis=0"])
    expected = _edge(ndi.gaussian_filter(_f(vol), 1.0, mode="nearest"), ndi.sobel).max(axis=0)
    np.testing.assert_allclose(result.array, expected, rtol=0,
                               atol=float(expected.max()) * 2e-6)

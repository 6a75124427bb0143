"""The separable-correlation engine against chained scipy.ndimage.correlate1d, and the
public filters built on it against scipy.ndimage at 1e-5 relative, on 2-D and 3-D
images of several dtypes and boundary modes."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from medcompute.kernels import (
    bandpass,
    edge,
    gaussian,
    gaussian_sigma_for_cutoff,
    gradient,
    laplacian,
    mean,
)
from medcompute.kernels._opencv import _border_index, cpu_threads, set_cpu_threads
from medcompute.kernels._separable import correlate_terms, gaussian_weights

RTOL = 1e-5
DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.float32, np.float64]
MODES = ["reflect", "constant", "nearest", "mirror", "wrap"]


@pytest.fixture(params=[1, 3], ids=["1-thread", "3-threads"])
def threads(request):
    set_cpu_threads(request.param)
    yield request.param
    set_cpu_threads(None)


def f32(image):
    return image.astype(np.float32)


def _chained(image, terms, *, combine="sum", mode="nearest", cval=0.0, dtype=np.float32):
    x = image.astype(dtype)
    result = None
    for coef, weights in terms:
        term = x
        for axis, w in enumerate(weights):
            if w is not None:
                term = ndi.correlate1d(term, np.asarray(w, np.float64), axis, mode=mode,
                                       cval=cval)
        term = term.astype(np.float64) * coef
        if combine == "hypot":
            term = term * term
        result = term if result is None else result + term
    return np.sqrt(result) if combine == "hypot" else result


# --- weights ------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.3, 0.56, 1.0, 2.0, 3.7])
@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("truncate", [4.0, 2.5])
def test_gaussian_weights_are_scipys(sigma, order, truncate):
    weights = np.asarray(gaussian_weights(sigma, order, truncate=truncate))
    radius = int(truncate * sigma + 0.5)
    assert weights.shape == (2 * radius + 1,)
    # gaussian_filter1d of a unit impulse (zero border) is its convolution kernel,
    # that is the correlation weights reversed.
    impulse = np.zeros(4 * radius + 3)
    impulse[2 * radius + 1] = 1.0
    response = ndi.gaussian_filter1d(impulse, sigma, order=order, mode="constant",
                                     truncate=truncate)
    kernel = response[radius + 1: 3 * radius + 2]
    np.testing.assert_allclose(weights[::-1], kernel, rtol=1e-12, atol=1e-15)


def test_gaussian_weights_closed_forms():
    w = np.asarray(gaussian_weights(1.5))
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_array_equal(w, w[::-1])
    d = np.asarray(gaussian_weights(1.5, 1))
    np.testing.assert_allclose(d, -d[::-1], atol=1e-17)
    assert d[0] < 0  # correlation order, like the central difference (-0.5, 0, 0.5)
    x = np.arange(-6, 7)
    assert float(np.dot(d, x)) == pytest.approx(1.0, rel=1e-2)  # d/dx of x is 1


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "2"])
def test_gaussian_weights_rejects_bad_sigma(bad):
    with pytest.raises(ValueError, match="^sigma"):
        gaussian_weights(bad)


def test_gaussian_weights_rejects_bad_order():
    with pytest.raises(ValueError, match="^order"):
        gaussian_weights(1.0, -1)


# --- borders ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["reflect", "nearest", "mirror"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_border_index_reproduces_scipy_far_beyond_the_axis(mode, n):
    line = np.arange(n, dtype=np.float64)
    reach = 3 * n + 2
    weights = np.zeros(2 * reach + 1)
    for offset in range(-reach, reach + 1):
        weights[:] = 0.0
        weights[reach + offset] = 1.0
        expected = ndi.correlate1d(line, weights, mode=mode)[0]
        assert _border_index(offset, n, mode) == int(expected), (offset, n, mode)


@pytest.mark.parametrize("mode", ["reflect", "nearest", "mirror", "constant"])
@pytest.mark.parametrize("shape", [(3, 2, 4), (1, 1, 5), (2, 5, 1), (4, 3)])
def test_kernels_longer_than_the_axes(threads, mode, shape):
    image = np.random.default_rng(0).normal(50, 20, shape)
    wide = tuple(np.random.default_rng(1).normal(size=11))
    terms = [(1.0, (wide,) * len(shape))]
    out = correlate_terms(image, terms, mode=mode, dtype=np.float64)
    np.testing.assert_allclose(out, _chained(image, terms, mode=mode, dtype=np.float64),
                               rtol=1e-12, atol=1e-9)


# --- the engine -----------------------------------------------------------------

_W = {
    "gauss": gaussian_weights(1.3),
    "wide": gaussian_weights(2.0),
    "d1": (-0.5, 0.0, 0.5),
    "d2": (1.0, -2.0, 1.0),
    "smooth": (1.0, 2.0, 1.0),
    "box4": (0.25,) * 4,
    "odd": (0.3, 0.5, -0.1, 0.2),
}


def _terms(rng, ndim, count):
    names = [None] + sorted(_W)
    return [(float(rng.choice([1.0, -1.0, 0.5])),
             tuple(None if (n := names[rng.integers(len(names))]) is None else _W[n]
                   for _ in range(ndim)))
            for _ in range(count)]


@pytest.mark.parametrize("shape", [(9,), (6, 7), (5, 6, 7), (2, 3, 4, 5), (12, 9, 8)])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("combine", ["sum", "hypot"])
def test_terms_match_chained_correlate1d(threads, make_image, shape, mode, combine):
    rng = np.random.default_rng(abs(hash((shape, mode, combine))) % 2**32)
    for dtype in (np.uint8, np.int16, np.float32, np.float64):
        image = make_image(shape, dtype, seed=int(rng.integers(1000)))
        terms = _terms(rng, len(shape), int(rng.integers(1, 4)))
        for dt, rtol in ((np.float32, RTOL), (np.float64, 1e-12)):
            cval = 0.0 if mode != "constant" else float(rng.choice([0.0, -3.5]))
            out = correlate_terms(image, terms, combine=combine, mode=mode, cval=cval, dtype=dt)
            expected = _chained(image, terms, combine=combine, mode=mode, cval=cval, dtype=dt)
            assert out.dtype == dt and out.shape == shape
            scale = max(1.0, float(np.abs(expected).max()))
            np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol * scale)


def test_input_is_left_alone_and_never_returned(make_image):
    image = make_image((6, 8, 9), np.float32)
    before = image.copy()
    for terms in ([(1.0, (None, None, None))], [(1.0, (_W["wide"], _W["d1"], None))],
                  [(1.0, (_W["d2"], None, None)), (1.0, (None, _W["d2"], _W["d2"]))]):
        out = correlate_terms(image, terms)
        assert out is not image and not np.shares_memory(out, image)
        np.testing.assert_array_equal(image, before)


def test_non_contiguous_input(make_image):
    image = make_image((10, 12, 14), np.int16)
    view = image[::2, ::-1, 1:]
    terms = [(1.0, (_W["wide"], _W["gauss"], _W["d1"]))]
    out = correlate_terms(view, terms)
    expected = _chained(np.ascontiguousarray(view), terms)
    np.testing.assert_allclose(out, expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())


def test_threads_do_not_change_the_result(make_image):
    image = make_image((17, 20, 23), np.uint16)
    terms = [(1.0, (_W["wide"], _W["wide"], _W["wide"])), (-1.0, (_W["d1"], None, _W["gauss"]))]
    set_cpu_threads(1)
    try:
        one = correlate_terms(image, terms)
        set_cpu_threads(4)
        four = correlate_terms(image, terms)
    finally:
        set_cpu_threads(None)
    np.testing.assert_array_equal(one, four)


def test_cpu_threads_default_and_override(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_threads() >= 1
    set_cpu_threads(3)
    try:
        assert cpu_threads() == 3
    finally:
        set_cpu_threads(None)
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="^threads"):
            set_cpu_threads(bad)


@pytest.mark.parametrize("bad, match", [
    ([], "^terms"),
    ([(1.0, (None,))], "^terms"),
    ([(1.0, (None, None), 5)], "^first"),
])
def test_bad_terms(bad, match):
    with pytest.raises(ValueError, match=match):
        correlate_terms(np.zeros((3, 3)), bad)


def test_bad_combine():
    with pytest.raises(ValueError, match="^combine"):
        correlate_terms(np.zeros((3, 3)), [(1.0, (None, None))], combine="max")


# --- the public filters at 1e-5 of scipy.ndimage ---------------------------------

FILTER_SHAPES = [(40, 37), (14, 33, 29)]
FILTER_MODES = ["nearest", "reflect", "mirror", "constant", "wrap"]


def _close(out, expected):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(out, expected, rtol=RTOL, atol=RTOL * scale)


def _scipy_filters(image, mode):
    x = f32(image)
    sobel = np.sqrt(sum(ndi.sobel(x, a, mode=mode).astype(np.float64) ** 2
                        for a in range(x.ndim)))
    lo, hi = gaussian_sigma_for_cutoff(3.0), gaussian_sigma_for_cutoff(10.0)
    return {
        "gaussian": (lambda: gaussian(image, 2.0, mode=mode),
                     ndi.gaussian_filter(x, 2.0, mode=mode)),
        "mean": (lambda: mean(image, 5, mode=mode), ndi.uniform_filter(x, 5, mode=mode)),
        "laplacian": (lambda: laplacian(image, mode=mode), ndi.laplace(x, mode=mode)),
        "log": (lambda: laplacian(image, 1.5, mode=mode),
                ndi.gaussian_laplace(x, 1.5, mode=mode)),
        "gradient": (lambda: gradient(image, 0, mode=mode),
                     ndi.correlate1d(x, [-0.5, 0.0, 0.5], 0, mode=mode)),
        "sobel": (lambda: edge(image, "sobel", mode=mode), sobel),
        "dog": (lambda: bandpass(image, 3.0, 10.0, mode=mode),
                ndi.gaussian_filter(x, lo, mode=mode).astype(np.float64)
                - ndi.gaussian_filter(x, hi, mode=mode)),
    }


@pytest.mark.parametrize("shape", FILTER_SHAPES, ids=["2d", "3d"])
@pytest.mark.parametrize("mode", FILTER_MODES)
def test_filters_match_scipy_ndimage(threads, make_image, shape, mode):
    image = make_image(shape, np.int16, seed=31)
    for name, (ours, expected) in _scipy_filters(image, mode).items():
        out = ours()
        assert out.dtype == np.float32, name
        _close(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_filters_match_scipy_ndimage_for_every_dtype(make_image, dtype):
    image = make_image((9, 24, 21), dtype, seed=32)
    for name, (ours, expected) in _scipy_filters(image, "nearest").items():
        out = ours()
        assert out.dtype == np.float32, name
        _close(out, expected)

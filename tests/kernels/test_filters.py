import numpy as np
import pytest
import scipy.ndimage as ndi

from medcompute.kernels import (
    derivative_kernel,
    edge,
    edge_kernels,
    gaussian,
    gradient,
    laplacian,
    mean,
    median,
)

DTYPES = [np.uint8, np.int16, np.uint16, np.float32, np.float64]
MODES = ["reflect", "constant", "nearest", "mirror", "wrap"]
SHAPES = [(17, 13), (7, 9, 11)]


def f32(image):
    return image.astype(np.float32)


# --- gaussian ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_gaussian_matches_scipy(xp, make_image, assert_close, dtype, shape):
    image = make_image(shape, dtype)
    sigma = (1.5, 0.8, 2.0)[: len(shape)]
    out = gaussian(xp.asarray(image), sigma)
    expected = ndi.gaussian_filter(f32(image), sigma, mode="nearest", truncate=4.0)
    assert_close(out, expected, dtype=np.float32)


@pytest.mark.parametrize("mode", MODES)
def test_gaussian_modes_cval_truncate(xp, make_image, assert_close, mode):
    image = make_image((15, 12), np.int16, seed=1)
    out = gaussian(xp.asarray(image), 1.3, mode=mode, cval=-7.5, truncate=2.5)
    expected = ndi.gaussian_filter(f32(image), 1.3, mode=mode, cval=-7.5, truncate=2.5)
    assert_close(out, expected)


def test_gaussian_float64_compute(xp, make_image, assert_close):
    image = make_image((9, 10), np.float64, seed=2)
    out = gaussian(xp.asarray(image), 2.0, dtype=np.float64)
    assert_close(out, ndi.gaussian_filter(image, 2.0, mode="nearest"), rtol=1e-12,
                 dtype=np.float64)


def test_gaussian_mm_with_anisotropic_spacing(xp, make_image, assert_close):
    image = make_image((6, 20, 16), np.uint16, seed=3)
    spacing = (2.5, 0.5, 0.8)
    out = gaussian(xp.asarray(image), 2.0, spacing=spacing, units="mm")
    expected = ndi.gaussian_filter(f32(image), (0.8, 4.0, 2.5), mode="nearest")
    assert_close(out, expected)


def test_gaussian_zero_sigma_axis_is_untouched(xp, make_image, assert_close):
    image = make_image((5, 16), np.float32, seed=4)
    out = gaussian(xp.asarray(image), (0.0, 1.0))
    expected = np.stack([ndi.gaussian_filter1d(row, 1.0, mode="nearest") for row in image])
    assert_close(out, expected)


@pytest.mark.parametrize("kernel", [gaussian, mean, median])
def test_smoothing_keeps_a_constant_image(xp, assert_close, kernel):
    image = np.full((6, 7, 8), 321, np.uint16)
    out = kernel(xp.asarray(image), 3)
    assert_close(out, image.astype(np.float32))


# --- mean / median ------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [3, (3, 5), 4])
def test_mean_matches_uniform_filter_2d(xp, make_image, assert_close, dtype, size):
    image = make_image((14, 11), dtype, seed=5)
    out = mean(xp.asarray(image), size)
    assert_close(out, ndi.uniform_filter(f32(image), size, mode="nearest"), rtol=2e-6)


@pytest.mark.parametrize("mode", MODES)
def test_mean_3d_modes(xp, make_image, assert_close, mode):
    image = make_image((6, 7, 8), np.uint8, seed=6)
    out = mean(xp.asarray(image), (1, 3, 5), mode=mode, cval=50.0)
    expected = ndi.uniform_filter(f32(image), (1, 3, 5), mode=mode, cval=50.0)
    assert_close(out, expected, rtol=2e-6)


def test_mean_golden_1d(xp, assert_close):
    out = mean(xp.asarray(np.array([0, 3, 6, 9], np.uint8)), 3)
    assert_close(out, np.array([1.0, 3.0, 6.0, 8.0]))


def test_size_in_mm_is_the_nearest_odd_voxel_count(xp, make_image, assert_close):
    image = make_image((12, 10, 9), np.int16, seed=7)
    # 2.0 mm / (0.7, 2.0, 0.5) mm = (2.86, 1.0, 4.0) voxels -> odd (3, 1, 5); a tie goes up.
    for kernel, reference in ((mean, ndi.uniform_filter), (median, ndi.median_filter)):
        out = kernel(xp.asarray(image), 2.0, spacing=(0.7, 2.0, 0.5), units="mm")
        expected = reference(f32(image), size=(3, 1, 5), mode="nearest")
        assert_close(out, expected, rtol=2e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_median_matches_scipy(xp, make_image, assert_close, dtype, shape):
    image = make_image(shape, dtype, seed=8)
    size = (3, 5, 3)[: len(shape)]
    out = median(xp.asarray(image), size)
    assert_close(out, ndi.median_filter(f32(image), size=size, mode="nearest"))


@pytest.mark.parametrize("mode", MODES)
def test_median_modes(xp, make_image, assert_close, mode):
    image = make_image((9, 8), np.uint16, seed=9)
    out = median(xp.asarray(image), 4, mode=mode, cval=3.0)
    assert_close(out, ndi.median_filter(f32(image), size=4, mode=mode, cval=3.0))


def test_median_golden_removes_an_outlier(xp, assert_close):
    image = np.array([[1, 1, 1], [1, 250, 1], [1, 1, 1]], np.uint8)
    assert_close(median(xp.asarray(image), 3), np.ones((3, 3)))


# --- laplacian ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_laplacian_matches_laplace(xp, make_image, assert_close, dtype, shape):
    image = make_image(shape, dtype, seed=10)
    out = laplacian(xp.asarray(image))
    assert_close(out, ndi.laplace(f32(image), mode="nearest"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES)
def test_laplacian_of_gaussian_matches_gaussian_laplace(xp, make_image, assert_close,
                                                        mode, shape):
    image = make_image(shape, np.int16, seed=11)
    sigma = (1.2, 2.0, 0.9)[: len(shape)]
    out = laplacian(xp.asarray(image), sigma, mode=mode, cval=5.0, truncate=3.0)
    expected = ndi.gaussian_laplace(f32(image), sigma, mode=mode, cval=5.0, truncate=3.0)
    assert_close(out, expected, rtol=2e-6)


def test_laplacian_of_a_paraboloid_is_constant(xp, assert_close):
    z, y, x = np.mgrid[:9, :10, :11]
    image = (x**2 + y**2).astype(np.int32)
    out = laplacian(xp.asarray(image[0]))
    assert_close(out[1:-1, 1:-1], np.full((8, 9), 4.0))
    out3 = laplacian(xp.asarray((x**2 + y**2 + z**2).astype(np.float64)))
    assert_close(out3[1:-1, 1:-1, 1:-1], np.full((7, 8, 9), 6.0))


def test_log_of_a_paraboloid_is_constant_near_its_centre(xp, assert_close):
    # The sampled Gaussian's second derivative is exact for a quadratic only up to
    # truncation: at 6 sigma the error is ~1e-6; the default 4 sigma loses ~0.4 %.
    y, x = np.mgrid[:41, :41]
    image = (x - 20.0) ** 2 + (y - 20.0) ** 2
    out = laplacian(xp.asarray(image), 2.0, truncate=6.0, dtype=np.float64)
    assert_close(out[16:25, 16:25], np.full((9, 9), 4.0), rtol=1e-5)


def test_laplacian_mixed_sigma(xp, make_image, assert_close):
    image = f32(make_image((12, 14), np.float32, seed=12))
    out = laplacian(xp.asarray(image), (0.0, 1.5))
    smoothed = ndi.gaussian_filter(image, (0.0, 1.5), mode="nearest")
    expected = ndi.correlate1d(smoothed, [1.0, -2.0, 1.0], 0, mode="nearest")
    expected += ndi.gaussian_filter(image, (0.0, 1.5), order=(0, 2), mode="nearest")
    assert_close(out, expected)


def test_laplacian_sigma_in_mm(xp, make_image, assert_close):
    image = make_image((10, 12), np.uint8, seed=13)
    out = laplacian(xp.asarray(image), 1.0, spacing=(0.5, 1.0), units="mm")
    assert_close(out, ndi.gaussian_laplace(f32(image), (2.0, 1.0), mode="nearest"))


# --- gradient -----------------------------------------------------------------


def test_derivative_kernel_builder():
    assert derivative_kernel(1) == (-0.5, 0.0, 0.5)
    assert derivative_kernel(2) == (1.0, -2.0, 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_gradient_matches_numpy_gradient_in_the_interior(xp, make_image, assert_close,
                                                         dtype, shape):
    image = make_image(shape, dtype, seed=14)
    for axis in range(len(shape)):
        out = gradient(xp.asarray(image), axis)
        expected = np.gradient(image.astype(np.float64), axis=axis)
        inner = tuple(slice(1, -1) if a == axis else slice(None) for a in range(len(shape)))
        assert_close(out[inner], expected[inner])


def test_gradient_of_a_ramp_is_its_slope(xp, assert_close):
    ramp = (3 * np.arange(10)[None, :] + np.zeros((4, 1))).astype(np.int16)
    assert_close(gradient(xp.asarray(ramp), -1)[:, 1:-1], np.full((4, 8), 3.0))
    assert_close(gradient(xp.asarray(ramp), 0), np.zeros((4, 10)))
    # Golden values with the default "nearest" border.
    assert_close(gradient(xp.asarray(ramp[0]), 0)[[0, -1]], np.array([1.5, 1.5]))


def test_gradient_per_mm_and_second_order(xp, assert_close):
    x = np.arange(12, dtype=np.float64)
    image = np.tile(x**2, (3, 1))
    spacing = (1.0, 0.5)
    first = gradient(xp.asarray(image), 1, spacing=spacing, per_mm=True, dtype=np.float64)
    assert_close(first[:, 1:-1], np.tile(2 * x[1:-1], (3, 1)) / 0.5, dtype=np.float64)
    second = gradient(xp.asarray(image), 1, order=2, dtype=np.float64)
    assert_close(second[:, 1:-1], np.full((3, 10), 2.0))
    second_mm = gradient(xp.asarray(image), 1, order=2, spacing=spacing, per_mm=True)
    assert_close(second_mm[:, 1:-1], np.full((3, 10), 2.0 / 0.25))


@pytest.mark.parametrize("mode", MODES)
def test_gradient_matches_correlate1d(xp, make_image, assert_close, mode):
    image = make_image((5, 6, 7), np.uint16, seed=15)
    out = gradient(xp.asarray(image), -2, order=2, mode=mode, cval=9.0)
    expected = ndi.correlate1d(f32(image), [1.0, -2.0, 1.0], 1, mode=mode, cval=9.0)
    assert_close(out, expected)


# --- edge ---------------------------------------------------------------------


def test_edge_kernels_builder():
    assert edge_kernels("sobel") == ((-1.0, 0.0, 1.0), (1.0, 2.0, 1.0))
    assert edge_kernels("prewitt")[1] == (1.0, 1.0, 1.0)
    assert edge_kernels("scharr")[1] == (3.0, 10.0, 3.0)


@pytest.mark.parametrize("operator", ["sobel", "prewitt"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_edge_matches_scipy(xp, make_image, assert_close, operator, dtype, shape):
    image = f32(make_image(shape, dtype, seed=16))
    scipy_op = getattr(ndi, operator)
    parts = [scipy_op(image, axis=a, mode="nearest") for a in range(len(shape))]
    expected = np.sqrt(sum(p.astype(np.float64) ** 2 for p in parts))
    assert_close(edge(xp.asarray(image), operator), expected)


def _scharr_reference(image, axis, mode="nearest", cval=0.0):
    out = ndi.correlate1d(image, [-1.0, 0.0, 1.0], axis, mode=mode, cval=cval)
    for other in range(image.ndim):
        if other != axis:
            out = ndi.correlate1d(out, [3.0, 10.0, 3.0], other, mode=mode, cval=cval)
    return out.astype(np.float64)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES)
def test_edge_scharr_matches_correlate1d(xp, make_image, assert_close, mode, shape):
    image = f32(make_image(shape, np.int16, seed=17))
    expected = np.sqrt(sum(_scharr_reference(image, a, mode, 2.0) ** 2
                           for a in range(len(shape))))
    assert_close(edge(xp.asarray(image), "scharr", mode=mode, cval=2.0), expected)


def test_edge_axes_subset(xp, make_image, assert_close):
    image = f32(make_image((6, 7, 8), np.uint8, seed=18))
    out = edge(xp.asarray(image), "sobel", axes=(-1, 1))
    a = ndi.sobel(image, axis=1, mode="nearest").astype(np.float64)
    b = ndi.sobel(image, axis=2, mode="nearest").astype(np.float64)
    assert_close(out, np.sqrt(a**2 + b**2))
    single = edge(xp.asarray(image), "prewitt", axes=0)
    assert_close(single, np.abs(ndi.prewitt(image, axis=0, mode="nearest")))


def test_edge_golden_step(xp, assert_close):
    image = np.array([[0, 0, 10, 10]] * 3, np.uint8)
    expected = np.array([[0.0, 40.0, 40.0, 0.0]] * 3)
    assert_close(edge(xp.asarray(image), "sobel"), expected)
    assert_close(edge(xp.asarray(image), "scharr"), expected * 4)
    assert_close(edge(xp.asarray(np.full((5, 5), 7, np.int16))), np.zeros((5, 5)))


# --- errors -------------------------------------------------------------------


IMAGE = np.zeros((4, 5), np.uint8)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: gaussian(IMAGE, -1.0), "sigma: must be finite and >= 0, got -1.0"),
        (lambda: gaussian(IMAGE, float("nan")), "sigma: must be finite and >= 0, got nan"),
        (lambda: gaussian(IMAGE, (1.0, float("inf"))),
         "sigma: must be finite and >= 0, got inf on axis 1"),
        (lambda: gaussian(IMAGE, (1.0, 2.0, 3.0)), "sigma: must be a number or a sequence of 2"),
        (lambda: gaussian(IMAGE, "1"), "sigma: must be a number or a sequence of 2"),
        (lambda: gaussian(IMAGE, 1.0, units="mm"),
         "sigma: given in mm but the image has no voxel spacing"),
        (lambda: gaussian(IMAGE, 1.0, units="cm"), "units: must be 'voxel' or 'mm'"),
        (lambda: gaussian(IMAGE, 1.0, spacing=(1.0,)), "spacing: must be a number or a sequence"),
        (lambda: gaussian(IMAGE, 1.0, spacing=(1.0, 0.0)), "spacing: must be finite and > 0"),
        (lambda: gaussian(IMAGE, 1.0, mode="edge"), "mode: must be one of 'reflect'"),
        (lambda: gaussian(IMAGE, 1.0, truncate=0.0), "truncate: must be finite and > 0"),
        (lambda: gaussian(IMAGE, 1.0, cval=float("nan")), "cval: must be a finite number"),
        (lambda: gaussian(IMAGE, 1.0, dtype=np.int16), "dtype: must be float32 or float64"),
        (lambda: gaussian(IMAGE, 1.0, dtype="nonsense"), "dtype: must be float32 or float64"),
        (lambda: gaussian(IMAGE.astype(np.int64), 1.0), "image: dtype must be one of uint8"),
        (lambda: gaussian(IMAGE.astype(bool), 1.0), "image: dtype must be one of uint8"),
        (lambda: gaussian(np.float32(1.0), 1.0), "image: must have at least 1 dimension"),
        (lambda: gaussian(np.zeros((0, 3), np.uint8), 1.0), "image: must not be empty"),
        (lambda: gaussian([[1, 2]], 1.0), "image: must be an array, got list"),
        (lambda: mean(IMAGE, 0), "size: must be a whole number of voxels >= 1, got 0.0"),
        (lambda: mean(IMAGE, 2.5), "size: must be a whole number of voxels >= 1, got 2.5"),
        (lambda: median(IMAGE, (3, -1)), "size: must be a whole number of voxels >= 1"),
        (lambda: median(IMAGE, 2.0, units="mm"),
         "size: given in mm but the image has no voxel spacing"),
        (lambda: mean(IMAGE, -2.0, units="mm", spacing=(1, 1)), "size: must be finite and > 0"),
        (lambda: mean(IMAGE, 3, mode="grid-wrap"), "mode: must be one of"),
        (lambda: laplacian(IMAGE, -0.5), "sigma: must be finite and >= 0, got -0.5"),
        (lambda: laplacian(IMAGE, 1.0, units="mm"), "sigma: given in mm"),
        (lambda: gradient(IMAGE, 2), "axis: must be in [-2, 1] for a 2-d image, got 2"),
        (lambda: gradient(IMAGE, -3), "axis: must be in [-2, 1]"),
        (lambda: gradient(IMAGE, 0.0), "axis: must be an integer"),
        (lambda: gradient(IMAGE, 0, order=3), "order: must be 1 or 2, got 3"),
        (lambda: gradient(IMAGE, 0, order=0), "order: must be 1 or 2, got 0"),
        (lambda: gradient(IMAGE, 0, per_mm=True),
         "per_mm: given but the image has no voxel spacing"),
        (lambda: gradient(IMAGE, 0, per_mm="yes"), "per_mm: must be True or False"),
        (lambda: gradient(IMAGE, 0, mode="bad"), "mode: must be one of"),
        (lambda: edge(IMAGE, "canny"), "operator: must be one of 'sobel', 'prewitt', 'scharr'"),
        (lambda: edge(IMAGE, axes=(0, 0)), "axes: must not repeat an axis"),
        (lambda: edge(IMAGE, axes=()), "axes: must name at least one axis"),
        (lambda: edge(IMAGE, axes=(2,)), "axes: must be in [-2, 1]"),
        (lambda: edge(IMAGE, mode="wrap ", cval=0.0), "mode: must be one of"),
    ],
)
def test_errors_name_the_parameter(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(message)

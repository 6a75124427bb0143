import numpy as np
import pytest
import scipy.ndimage as ndi

from medcompute.kernels import (
    bandpass,
    edge,
    footprint_radius,
    gaussian,
    gaussian_radius,
    gradient,
    laplacian,
    mean,
    median,
    window_radius,
)


@pytest.mark.parametrize("sigma", [0.0, 0.1, 0.5, 1.0, 1.37, 2.5, 6.0])
@pytest.mark.parametrize("truncate", [1.0, 3.0, 4.0])
def test_gaussian_radius_is_the_support_scipy_uses(sigma, truncate):
    radius = gaussian_radius(sigma, truncate)
    assert radius == int(truncate * sigma + 0.5)
    if sigma > 0:
        delta = np.zeros(2 * radius + 41)
        delta[radius + 20] = 1.0
        support = np.flatnonzero(ndi.gaussian_filter1d(delta, sigma, truncate=truncate,
                                                       mode="constant"))
        assert support.max() - support.min() == 2 * radius


def test_window_radius():
    assert [window_radius(n) for n in (1, 2, 3, 4, 5)] == [0, 1, 1, 2, 2]


def test_footprint_radius_per_op():
    assert footprint_radius("gaussian", sigma=(2.0, 0.0, 1.0)) == (8, 0, 4)
    assert footprint_radius("gaussian", sigma=1.0, truncate=2.0, ndim=2) == (2, 2)
    assert footprint_radius("mean", size=(3, 4)) == (1, 2)
    assert footprint_radius("median", size=5, ndim=3) == (2, 2, 2)
    assert footprint_radius("laplacian", ndim=2) == (1, 1)
    assert footprint_radius("laplacian", sigma=(0.0, 1.5)) == (1, 6)
    assert footprint_radius("gradient", axis=0, ndim=3) == (1, 0, 0)
    assert footprint_radius("edge", ndim=2) == (1, 1)
    assert footprint_radius("bandpass", low_cutoff=3.0, high_cutoff=(20.0, 10.0)) == (15, 7)
    assert footprint_radius("bandpass", high_cutoff=10.0, ndim=1) == (7,)


HALO_CASES = [
    ("gaussian", lambda im, m: gaussian(im, (1.5, 0.7, 1.0), mode=m),
     {"sigma": (1.5, 0.7, 1.0)}),
    ("mean", lambda im, m: mean(im, (4, 3, 1), mode=m), {"size": (4, 3, 1)}),
    ("median", lambda im, m: median(im, (3, 5, 3), mode=m), {"size": (3, 5, 3)}),
    ("laplacian", lambda im, m: laplacian(im, (1.0, 0.0, 0.5), mode=m),
     {"sigma": (1.0, 0.0, 0.5)}),
    ("gradient", lambda im, m: gradient(im, 0, order=2, mode=m), {"axis": 0, "ndim": 3}),
    ("edge", lambda im, m: edge(im, "scharr", mode=m), {"ndim": 3}),
    ("bandpass", lambda im, m: bandpass(im, 2.0, 8.0, mode=m),
     {"low_cutoff": 2.0, "high_cutoff": 8.0, "ndim": 3}),
]


@pytest.mark.parametrize(("op", "run", "params"), HALO_CASES, ids=[c[0] for c in HALO_CASES])
@pytest.mark.parametrize("mode", ["nearest", "reflect", "constant"])
def test_slabs_with_this_halo_equal_the_whole_volume(xp, host, make_image, op, run, params,
                                                     mode):
    volume = make_image((30, 9, 8), np.int16, seed=7)
    whole = host(run(xp.asarray(volume), mode))
    halo = footprint_radius(op, **params)[0]
    pieces = []
    for start in range(0, 30, 10):
        lo, hi = max(0, start - halo), min(30, start + 10 + halo)
        part = host(run(xp.asarray(volume[lo:hi]), mode))
        pieces.append(part[start - lo:start - lo + 10])
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: footprint_radius("sobel", ndim=2), "op: must be one of 'gaussian'"),
        (lambda: footprint_radius("gaussian", ndim=2), "sigma: required for 'gaussian'"),
        (lambda: footprint_radius("gaussian", sigma=1.0), "ndim: required when sigma"),
        (lambda: footprint_radius("gaussian", sigma=-1.0, ndim=2), "sigma: must be finite"),
        (lambda: footprint_radius("gaussian", sigma=1.0, ndim=0), "ndim: must be an integer >= 1"),
        (lambda: footprint_radius("gaussian", sigma=(1.0,), size=3), "size: not a parameter"),
        (lambda: footprint_radius("mean", ndim=2), "size: required for 'mean'"),
        (lambda: footprint_radius("mean", size=2.5, ndim=2), "size: must be a whole number"),
        (lambda: footprint_radius("gradient", ndim=2), "axis: required for 'gradient'"),
        (lambda: footprint_radius("gradient", axis=2, ndim=2), "axis: must be in [-2, 1]"),
        (lambda: footprint_radius("edge"), "ndim: required"),
        (lambda: footprint_radius("bandpass", ndim=2), "low_cutoff: at least one"),
        (lambda: footprint_radius("bandpass", low_cutoff=2.0, method="butterworth", ndim=2),
         "method: 'butterworth' reads the whole image"),
        (lambda: footprint_radius("bandpass", low_cutoff=2.0, method="x", ndim=2),
         "method: must be 'dog' or 'butterworth'"),
        (lambda: footprint_radius("bandpass", low_cutoff=0.0, ndim=2),
         "low_cutoff: must be finite and > 0"),
        (lambda: gaussian_radius(1.0, 0.0), "truncate: must be finite and > 0"),
        (lambda: window_radius(0), "size: must be a whole number of voxels >= 1"),
    ],
)
def test_errors_name_the_parameter(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(message)

import numpy as np
import pytest

from medcompute.kernels import _params as P


def test_per_axis_normalises_to_float_tuples():
    assert P.per_axis(2, 3, "sigma") == (2.0, 2.0, 2.0)
    assert P.per_axis(np.float32(1.5), 2, "sigma") == (1.5, 1.5)
    assert P.per_axis([1, 2.5], 2, "sigma") == (1.0, 2.5)
    assert P.per_axis(np.array([1, 2]), 2, "sigma") == (1.0, 2.0)
    assert all(type(v) is float for v in P.per_axis((np.int16(3), 4), 2, "x"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1.0, 2.0), "sigma: must be a number or a sequence of 3 numbers (one per axis), got 2"),
        ("1", "sigma: must be a number or a sequence of 3 numbers, got '1'"),
        (True, "sigma: must be a number or a sequence of 3 numbers, got True"),
        (None, "sigma: must be a number or a sequence of 3 numbers, got None"),
        ((1.0, "a", 2.0), "sigma: must be a real number, got 'a'"),
        (np.zeros((3, 1)), "sigma: must be a number or a sequence of 3 numbers, got an array"),
        (np.array(1.0), "sigma: must be a number or a sequence of 3 numbers, got an array"),
    ],
)
def test_per_axis_errors(value, message):
    with pytest.raises(ValueError) as info:
        P.per_axis(value, 3, "sigma")
    assert str(info.value).startswith(message)


def test_range_checks():
    assert P.nonnegative((0.0, 1.0), "sigma") == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"^sigma: must be finite and >= 0, got -1.0$"):
        P.nonnegative((-1.0,), "sigma")
    with pytest.raises(ValueError, match=r"^sigma: must be finite and >= 0, got nan on axis 1$"):
        P.nonnegative((1.0, float("nan")), "sigma")
    with pytest.raises(ValueError, match=r"^size: must be finite and > 0, got 0.0$"):
        P.positive((0.0,), "size")
    with pytest.raises(ValueError, match=r"^cval: must be a finite number, got inf$"):
        P.finite(float("inf"), "cval")


def test_lengths_convert_mm_with_spacing():
    assert P.lengths(2.0, "sigma", ndim=2, units="voxel", spacing=None, allow_zero=True) == (
        2.0, 2.0)
    assert P.lengths(2.0, "sigma", ndim=3, units="mm", spacing=(2.0, 0.5, 4.0),
                     allow_zero=True) == (1.0, 4.0, 0.5)
    assert P.lengths((0.0, 3.0), "sigma", ndim=2, units="mm", spacing=1.5,
                     allow_zero=True) == (0.0, 2.0)
    with pytest.raises(ValueError, match="^sigma: given in mm but the image has no voxel spacing$"):
        P.lengths(1.0, "sigma", ndim=2, units="mm", spacing=None, allow_zero=True)
    with pytest.raises(ValueError, match="^low_cutoff: must be finite and > 0"):
        P.lengths(0.0, "low_cutoff", ndim=2, units="mm", spacing=(1, 1), allow_zero=False)


@pytest.mark.parametrize(
    ("x", "odd"),
    [(0.2, 1), (1.0, 1), (1.9, 1), (2.0, 3), (2.9, 3), (3.0, 3), (3.99, 3), (4.0, 5), (6.5, 7)],
)
def test_nearest_odd(x, odd):
    assert P.nearest_odd(x) == odd


def test_window_sizes():
    assert P.window_sizes(3, "size", ndim=2, units="voxel", spacing=None) == (3, 3)
    assert P.window_sizes((2.0, 5), "size", ndim=2, units="voxel", spacing=None) == (2, 5)
    assert P.window_sizes(3.0, "size", ndim=2, units="mm", spacing=(0.5, 3.0)) == (7, 1)


def test_simple_checks():
    assert P.mode_of("wrap") == "wrap"
    assert P.units_of("mm") == "mm"
    assert P.truncate_of(4) == 4.0
    assert P.compute_dtype("float64") == np.float64
    assert P.axis_of(-1, 3) == 2
    assert P.axis_of(np.int64(1), 3) == 1
    assert P.spacing_of(None, 2) is None
    assert P.spacing_of([1, 2], 2) == (1.0, 2.0)
    assert P.image_ndim(np.zeros((2, 3, 4), ">u2")) == 3  # byte order does not matter
    with pytest.raises(ValueError, match="^mode: must be one of 'reflect', 'constant', "
                                         "'nearest', 'mirror', 'wrap', got 'grid-wrap'$"):
        P.mode_of("grid-wrap")
    with pytest.raises(ValueError, match="^mode: must be one of"):
        P.mode_of(["wrap"])
    with pytest.raises(ValueError, match="^axis: must be an integer, got True"):
        P.axis_of(True, 2)
    with pytest.raises(ValueError, match=r"^axis: must be in \[-1, 0\] for a 1-d image, got 1$"):
        P.axis_of(1, 1)


def test_as_weights_is_a_float64_array(xp):
    weights = P.as_weights(xp, (1, 2, 1))
    assert weights.dtype == np.float64 and weights.shape == (3,)
    assert type(weights) is type(xp.zeros(1))

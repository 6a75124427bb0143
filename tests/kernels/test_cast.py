import math
import warnings

import numpy as np
import pytest

from medcompute.kernels import saturating_cast

ALL = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64]
INTEGERS = ALL[:6]


def _reference(values, target):
    """Exact reference on Python numbers: NaN -> 0, round half to even, clip."""
    info = np.iinfo(target)
    out = []
    for v in np.asarray(values, dtype=np.float64).ravel().tolist():
        if math.isnan(v):
            v = 0.0
        v = min(max(v, float(info.min)), float(info.max))
        out.append(round(v))
    return np.array(out, dtype=target).reshape(np.shape(values))


def _source_values(source):
    if np.dtype(source).kind == "f":
        big = float(np.finfo(source).max)
        return np.array([-big, -3e9, -70000.5, -129.5, -1.5, -0.5, 0.5, 1.5, 2.5, 254.5,
                         255.5, 32767.5, 65535.4, 2**31 - 0.5, 2**31, 5e9, big,
                         np.inf, -np.inf, np.nan], dtype=source)
    info = np.iinfo(source)
    candidates = [info.min, info.min + 1, -40000, -129, -128, -1, 0, 1, 127, 128, 255, 256,
                  32767, 32768, 65535, 65536, 2**31 - 1, 2**31, info.max]
    return np.array(sorted({v for v in candidates if info.min <= v <= info.max}), dtype=source)


@pytest.mark.parametrize("target", INTEGERS)
@pytest.mark.parametrize("source", ALL)
def test_integer_targets_saturate(xp, host, source, target):
    values = _source_values(source)
    out = host(saturating_cast(xp.asarray(values), target))
    assert out.dtype == np.dtype(target)
    np.testing.assert_array_equal(out, _reference(values, target))


def test_golden_round_half_to_even_and_nan(xp, host):
    values = np.array([-0.5, 0.5, 1.5, 2.5, -2.5, np.nan, 300.0, -1.0], np.float32)
    out = host(saturating_cast(xp.asarray(values), np.uint8))
    np.testing.assert_array_equal(out, np.array([0, 0, 2, 2, 0, 0, 255, 0], np.uint8))
    out = host(saturating_cast(xp.asarray(values), np.int8))
    np.testing.assert_array_equal(out, np.array([0, 0, 2, 2, -2, 0, 127, -1], np.int8))


def test_float32_saturates_exactly_at_the_int32_range(xp, host):
    values = np.array([2.0**31, -(2.0**31), 2.0**32], np.float32)
    out = host(saturating_cast(xp.asarray(values), np.int32))
    np.testing.assert_array_equal(out, [2**31 - 1, -(2**31), 2**31 - 1])
    out = host(saturating_cast(xp.asarray(values), np.uint32))
    np.testing.assert_array_equal(out, [2**31, 0, 2**32 - 1])


@pytest.mark.parametrize("target", [np.float32, np.float64])
@pytest.mark.parametrize("source", ALL)
def test_float_targets_pass_values_through(xp, host, source, target):
    values = _source_values(source)
    out = host(saturating_cast(xp.asarray(values), target))
    assert out.dtype == np.dtype(target)
    with np.errstate(over="ignore"):
        expected = values.astype(target)
    np.testing.assert_array_equal(out, expected)


def test_float64_overflow_to_float32_is_inf_without_warning(xp, host):
    values = np.array([1e300, -1e300, np.nan, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = host(saturating_cast(xp.asarray(values), np.float32))
    np.testing.assert_array_equal(out, np.array([np.inf, -np.inf, np.nan, 1.0], np.float32))


def test_same_dtype_returns_the_input(xp):
    values = xp.asarray(np.arange(4, dtype=np.uint16))
    assert saturating_cast(values, np.uint16) is values
    assert saturating_cast(values, "uint16") is values


def test_shape_is_kept(xp, host, make_image):
    image = make_image((3, 4, 5), np.float32)
    out = host(saturating_cast(xp.asarray(image), np.int16))
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, _reference(image, np.int16))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: saturating_cast(np.zeros(3), np.int64), "dtype: must be one of uint8, int8"),
        (lambda: saturating_cast(np.zeros(3), bool), "dtype: must be one of"),
        (lambda: saturating_cast(np.zeros(3), "nonsense"), "dtype: must be one of"),
        (lambda: saturating_cast(np.zeros(3, np.complex64), np.uint8),
         "array: dtype must be one of"),
        (lambda: saturating_cast([1, 2], np.uint8), "array: must be an array, got list"),
    ],
)
def test_errors_name_the_parameter(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(message)

"""Host-side checks and normalisation of kernel parameters.

Everything here works on plain Python values and array metadata (shape,
dtype), never on array contents, so it costs no device synchronisation.
Every error is a ``ValueError`` whose message starts with the parameter's
name, then says what is accepted and what was given.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

MODES = ("reflect", "constant", "nearest", "mirror", "wrap")
UNITS = ("voxel", "mm")
IMAGE_DTYPES = (
    np.uint8,
    np.int8,
    np.uint16,
    np.int16,
    np.uint32,
    np.int32,
    np.float32,
    np.float64,
)
COMPUTE_DTYPES = (np.float32, np.float64)

_IMAGE_DTYPE_NAMES = ", ".join(np.dtype(t).name for t in IMAGE_DTYPES)


# Parameters arrive from requests: a value of the wrong type is bad input like
# any other, so it raises ValueError (INVALID_ARGUMENT), not TypeError.


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    """A real Python or NumPy scalar that is not a bool (0-d arrays are not)."""
    return isinstance(value, numbers.Real) and not _is_bool(value)


def _is_integral(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def real(value: Any, name: str) -> float:
    """Return ``value`` as a float; it must be a real Python or NumPy scalar."""
    if not _is_real(value):
        raise ValueError(f"{name}: must be a real number, got {value!r}")
    return float(value)


def integer(value: Any, name: str) -> int:
    """Return ``value`` as an int; it must be an integral Python or NumPy scalar."""
    if not _is_integral(value):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    return int(value)


def flag(value: Any, name: str) -> bool:
    """Return a bool flag; it must be True or False."""
    if not _is_bool(value):
        raise ValueError(f"{name}: must be True or False, got {value!r}")
    return bool(value)


def per_axis(value: Any, ndim: int, name: str) -> tuple[float, ...]:
    """Normalise a scalar or a sequence of ``ndim`` scalars to a tuple of floats."""
    if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes)):
        if isinstance(value, np.ndarray) and value.ndim != 1:
            raise ValueError(
                f"{name}: must be a number or a sequence of {ndim} numbers, "
                f"got an array of shape {value.shape}"
            )
        items = list(value)
        if len(items) != ndim:
            raise ValueError(
                f"{name}: must be a number or a sequence of {ndim} numbers "
                f"(one per axis), got {len(items)} values"
            )
        return tuple(real(v, name) for v in items)
    if not _is_real(value):
        raise ValueError(
            f"{name}: must be a number or a sequence of {ndim} numbers, got {value!r}"
        )
    return (float(value),) * ndim


def _where(values: tuple[float, ...], i: int) -> str:
    return f" on axis {i}" if len(values) > 1 else ""


def nonnegative(values: tuple[float, ...], name: str) -> tuple[float, ...]:
    """Check that every value is finite and >= 0."""
    for i, v in enumerate(values):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name}: must be finite and >= 0, got {v!r}{_where(values, i)}")
    return values


def positive(values: tuple[float, ...], name: str) -> tuple[float, ...]:
    """Check that every value is finite and > 0."""
    for i, v in enumerate(values):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name}: must be finite and > 0, got {v!r}{_where(values, i)}")
    return values


def finite(value: Any, name: str) -> float:
    """Return a finite float."""
    v = real(value, name)
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be a finite number, got {v!r}")
    return v


def units_of(units: Any) -> str:
    """Check the ``units`` keyword."""
    if units not in UNITS:
        raise ValueError(f"units: must be 'voxel' or 'mm', got {units!r}")
    return units


def mode_of(mode: Any) -> str:
    """Check a boundary mode against scipy.ndimage's names."""
    if not isinstance(mode, str) or mode not in MODES:
        accepted = ", ".join(repr(m) for m in MODES)
        raise ValueError(f"mode: must be one of {accepted}, got {mode!r}")
    return mode


def truncate_of(truncate: Any) -> float:
    """Check ``truncate`` (Gaussian radius in standard deviations)."""
    return positive((real(truncate, "truncate"),), "truncate")[0]


def compute_dtype(dtype: Any) -> np.dtype:
    """Check the compute dtype: float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype: must be float32 or float64, got {dtype!r}") from None
    if dt.type not in COMPUTE_DTYPES:
        raise ValueError(f"dtype: must be float32 or float64, got {dt.name}")
    return dt


def image_ndim(image: Any, name: str = "image") -> int:
    """Check an input array's metadata and return its number of dimensions."""
    dtype = getattr(image, "dtype", None)
    shape = getattr(image, "shape", None)
    if dtype is None or shape is None:
        raise ValueError(f"{name}: must be an array, got {type(image).__name__}")
    if np.dtype(dtype).type not in IMAGE_DTYPES:
        raise ValueError(f"{name}: dtype must be one of {_IMAGE_DTYPE_NAMES}, got {dtype}")
    if len(shape) < 1:
        raise ValueError(f"{name}: must have at least 1 dimension, got a 0-d array")
    if any(n == 0 for n in shape):
        raise ValueError(f"{name}: must not be empty, got shape {tuple(shape)}")
    return len(shape)


def axis_of(axis: Any, ndim: int, name: str = "axis") -> int:
    """Check an axis index (negative counts from the end) and return it >= 0."""
    a = integer(axis, name)
    if not -ndim <= a < ndim:
        raise ValueError(
            f"{name}: must be in [{-ndim}, {ndim - 1}] for a {ndim}-d image, got {a}"
        )
    return a % ndim


def spacing_of(spacing: Any, ndim: int) -> tuple[float, ...] | None:
    """Check the voxel spacing (mm per axis) when given."""
    if spacing is None:
        return None
    return positive(per_axis(spacing, ndim, "spacing"), "spacing")


def no_spacing_error(name: str) -> ValueError:
    return ValueError(f"{name}: given in mm but the image has no voxel spacing")


def lengths(
    value: Any,
    name: str,
    *,
    ndim: int,
    units: Any,
    spacing: Any,
    allow_zero: bool,
) -> tuple[float, ...]:
    """Normalise a per-axis length, check it, and convert it to voxels.

    The range check is made in the caller's units, so the message shows the
    value the caller gave.
    """
    units = units_of(units)
    spacing = spacing_of(spacing, ndim)
    values = per_axis(value, ndim, name)
    values = nonnegative(values, name) if allow_zero else positive(values, name)
    if units == "voxel":
        return values
    if spacing is None:
        raise no_spacing_error(name)
    return tuple(v / s for v, s in zip(values, spacing))


def nearest_odd(x: float) -> int:
    """Nearest odd integer >= 1 to ``x``; a tie goes to the larger one."""
    return max(1, 2 * math.floor((x - 1.0) / 2.0 + 0.5) + 1)


def window_sizes(
    value: Any, name: str, *, ndim: int, units: Any, spacing: Any
) -> tuple[int, ...]:
    """Window sizes in voxels: whole numbers >= 1, or mm to the nearest odd count."""
    units = units_of(units)
    spacing = spacing_of(spacing, ndim)
    values = per_axis(value, ndim, name)
    if units == "mm":
        positive(values, name)
        if spacing is None:
            raise no_spacing_error(name)
        return tuple(nearest_odd(v / s) for v, s in zip(values, spacing))
    for i, v in enumerate(values):
        if not (math.isfinite(v) and v >= 1 and v.is_integer()):
            raise ValueError(
                f"{name}: must be a whole number of voxels >= 1, got {v!r}{_where(values, i)}"
            )
    return tuple(int(v) for v in values)


def as_weights(xp: Any, weights: Sequence[float]) -> Any:
    """A 1-D float64 weights array on the backend (ndimage on CuPy needs one)."""
    return xp.asarray(np.asarray(weights, dtype=np.float64))

"""Saturating conversion to the output dtype a caller asked for."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _params as P
from .backend import backend_for

__all__ = ["saturating_cast"]

_DTYPE_NAMES = ", ".join(np.dtype(t).name for t in P.IMAGE_DTYPES)


def saturating_cast(array: Any, dtype: Any) -> Any:
    """Convert ``array`` to ``dtype``, clipping to its range instead of wrapping.

    Parameters
    ----------
    array : ndarray
        Array of a supported dtype (uint8, int8, uint16, int16, uint32, int32,
        float32, float64).
    dtype : numpy dtype
        One of the same eight dtypes.

    Returns
    -------
    ndarray
        On the array's backend. To a float dtype: a plain conversion (float64
        values beyond float32's range become +-inf, NaN stays NaN). To an
        integer dtype: NaN becomes 0, values are rounded half to even, then
        clipped to the dtype's range (+-inf to its ends). The input itself
        is returned when it already has ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> saturating_cast(np.array([-3.0, 0.5, 1.5, 300.0, np.nan]), np.uint8).tolist()
    [0, 0, 2, 255, 0]
    >>> saturating_cast(np.array([-40000, 70000], np.int32), np.int16).tolist()
    [-32768, 32767]
    """
    backend = backend_for(array)
    P.image_ndim(array, "array")
    try:
        target = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype: must be one of {_DTYPE_NAMES}, got {dtype!r}") from None
    if target.type not in P.IMAGE_DTYPES:
        raise ValueError(f"dtype: must be one of {_DTYPE_NAMES}, got {target.name}")
    source = np.dtype(array.dtype)
    xp = backend.xp

    if target.kind == "f":
        # float64 -> float32 overflow gives inf, as IEEE says; no warning for it.
        with np.errstate(over="ignore"):
            return array.astype(target, copy=False)

    info = np.iinfo(target)
    if source.kind in "iu":
        src = np.iinfo(source)
        lo, hi = max(info.min, src.min), min(info.max, src.max)
        if (lo, hi) != (src.min, src.max):
            # Bounds lie inside the source range, so they are exact in its dtype.
            array = xp.clip(array, lo, hi)
        return array.astype(target, copy=False)

    # Floats: 32-bit integer bounds are not exact in float32, so work in float64.
    work = np.float64 if target.itemsize >= 4 else source
    values = xp.rint(array.astype(work, copy=False))
    values = xp.where(xp.isnan(values), 0, values)
    values = xp.clip(values, float(info.min), float(info.max))
    return values.astype(target)

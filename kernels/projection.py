"""Intensity projections along one axis: MIP, MinIP, mean, sum; whole or in slabs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _params as P
from .backend import backend_for

__all__ = ["project", "project_memory", "projected_spacing", "slab_count"]

KINDS = ("max", "min", "mean", "sum")


def _slab_length(value: Any, name: str, *, units: str, spacing_axis: float | None) -> int:
    if units == "mm":
        v = P.positive((P.real(value, name),), name)[0]
        if spacing_axis is None:
            raise P.no_spacing_error(name)
        return max(1, round(v / spacing_axis))
    v = P.real(value, name)
    if not (v >= 1 and float(v).is_integer()):
        raise ValueError(f"{name}: must be a whole number of voxels >= 1, got {value!r}")
    return int(v)


def slab_count(length: int, thickness: int, step: int) -> int:
    """Number of slabs ``[s, s + thickness)`` with ``s = 0, step, 2 step, ...`` in ``length``.

    Parameters
    ----------
    length : int
        Number of voxels along the projected axis.
    thickness, step : int
        Slab thickness and distance between slab starts, in voxels (>= 1).

    Returns
    -------
    int
        ``(length - thickness) // step + 1``, or 0 when ``thickness > length``.

    Examples
    --------
    >>> slab_count(10, 4, 3)
    3
    """
    if thickness > length:
        return 0
    return (length - thickness) // step + 1


def projected_spacing(
    spacing: Any, axis: int, thickness: int | None = None, step: int | None = None
) -> tuple[float, ...] | None:
    """Voxel spacing of the output of :func:`project`.

    Parameters
    ----------
    spacing : sequence of float or None
        Input spacing in mm per axis.
    axis : int
        Projected axis; negative counts from the end.
    thickness : int or None, optional
        Slab thickness in voxels; None for a projection of the whole axis.
    step : int or None, optional
        Distance between slab starts in voxels; default ``thickness``.

    Returns
    -------
    tuple of float or None
        Without slabs, ``spacing`` without ``axis``; with slabs, ``spacing``
        with ``spacing[axis] * step`` along ``axis``. None when ``spacing`` is
        None. (Slab ``i`` covers input voxels ``[i step, i step + thickness)``,
        so its centre lies ``(thickness - 1) / 2`` input voxels after its
        start.)

    Examples
    --------
    >>> projected_spacing((2.0, 0.5, 0.5), 0)
    (0.5, 0.5)
    >>> projected_spacing((2.0, 0.5, 0.5), 0, thickness=5, step=2)
    (4.0, 0.5, 0.5)
    """
    if spacing is None:
        return None
    if isinstance(spacing, (str, bytes)) or not hasattr(spacing, "__len__"):
        raise ValueError(f"spacing: must be a sequence of mm per axis, got {spacing!r}")
    values = P.spacing_of(spacing, len(spacing))
    axis = P.axis_of(axis, len(values))
    if thickness is None:
        if step is not None:
            raise ValueError("step: only meaningful with a slab thickness, but thickness is None")
        return values[:axis] + values[axis + 1:]
    t = _slab_length(thickness, "thickness", units="voxel", spacing_axis=None)
    s = t if step is None else _slab_length(step, "step", units="voxel", spacing_axis=None)
    return values[:axis] + (values[axis] * s,) + values[axis + 1:]


def project_memory(shape: Any, *_: Any, dtype: Any = np.float32, **__: Any) -> int:
    """Peak bytes :func:`project` allocates for an image of ``shape``: the image cast to
    ``dtype`` and a result no larger than it.

    Examples
    --------
    >>> project_memory((10, 100, 100))
    800000
    """
    return 2 * math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize


def project(
    image: Any,
    kind: str = "max",
    *,
    axis: int = 0,
    thickness: Any = None,
    step: Any = None,
    spacing: Any = None,
    units: str = "voxel",
    dtype: Any = np.float32,
) -> Any:
    """Project an image along one axis, whole or in sliding slabs.

    Parameters
    ----------
    image : ndarray
        Input image of a supported dtype, any number of dimensions >= 1.
    kind : {"max", "min", "mean", "sum"}, optional
        Maximum (MIP), minimum (MinIP), mean or sum intensity projection.
    axis : int, optional
        Axis projected along; negative counts from the end.
    thickness : float or None, optional
        None: reduce the whole axis (the output has one dimension fewer).
        Otherwise the slab thickness: a whole number of voxels >= 1, or mm
        (``units="mm"``) converted with ``spacing[axis]`` and rounded to the
        nearest integer >= 1 (half to even). At most the axis length.
    step : float or None, optional
        Distance between slab starts, in the units of ``thickness`` and
        converted like it; default ``thickness`` (adjacent slabs). Only with
        ``thickness``.
    spacing : sequence of float, optional
        Voxel spacing in mm per axis; needed when ``units="mm"``.
    units : {"voxel", "mm"}, optional
        Units of ``thickness`` and ``step``.
    dtype : {numpy.float32, numpy.float64}, optional
        Compute and output dtype.

    Returns
    -------
    ndarray
        Of ``dtype``. With slabs, ``axis`` is kept with
        ``(n - thickness) // step + 1`` entries: slab ``i`` reduces input
        entries ``[i * step, i * step + thickness)``. See
        :func:`projected_spacing` for the output's spacing.

    Examples
    --------
    >>> import numpy as np
    >>> vol = np.arange(24, dtype=np.uint8).reshape(4, 3, 2)
    >>> project(vol).shape
    (3, 2)
    >>> project(vol, "sum", thickness=2)[:, 0, 0].tolist()
    [6.0, 30.0]
    """
    backend = backend_for(image)
    ndim = P.image_ndim(image)
    if not isinstance(kind, str) or kind not in KINDS:
        accepted = ", ".join(repr(k) for k in KINDS)
        raise ValueError(f"kind: must be one of {accepted}, got {kind!r}")
    axis = P.axis_of(axis, ndim)
    units = P.units_of(units)
    spacing = P.spacing_of(spacing, ndim)
    dt = P.compute_dtype(dtype)
    xp = backend.xp
    if thickness is None:
        if step is not None:
            raise ValueError("step: only meaningful with a slab thickness, but thickness is None")
        if kind in ("max", "min"):
            # Casting is monotonic, so reduce first and cast the (smaller) result.
            reduce = xp.max if kind == "max" else xp.min
            result = reduce(image, axis=axis).astype(dt)
        else:
            reduce = xp.sum if kind == "sum" else xp.mean
            result = reduce(image, axis=axis, dtype=dt)
        # NumPy gives a scalar for a 1-d image; keep returning an array.
        return xp.asarray(result)

    spacing_axis = None if spacing is None else spacing[axis]
    t = _slab_length(thickness, "thickness", units=units, spacing_axis=spacing_axis)
    s = t if step is None else _slab_length(step, "step", units=units, spacing_axis=spacing_axis)
    n = image.shape[axis]
    if t > n:
        raise ValueError(
            f"thickness: must be at most the length of axis {axis} ({n} voxels), got {t} voxels"
        )
    count = slab_count(n, t, s)

    def offset(j: int) -> Any:
        index = [slice(None)] * ndim
        index[axis] = slice(j, j + (count - 1) * s + 1, s)
        return image[tuple(index)]

    if kind in ("max", "min"):
        combine = xp.maximum if kind == "max" else xp.minimum
        acc = offset(0).copy()
        for j in range(1, t):
            combine(acc, offset(j), out=acc)
        return acc.astype(dt)
    acc = offset(0).astype(dt)
    for j in range(1, t):
        xp.add(acc, offset(j), out=acc, dtype=dt)
    if kind == "mean":
        acc /= t
    return acc

"""Neighbourhood filters: smoothing, Laplacian, gradient and edge magnitude.

Each filter casts the image to the compute ``dtype`` (float32 by default) and
returns a new array of that dtype on the image's backend. Lengths (``sigma``,
``size``) are per axis, in voxels (``units="voxel"``) or millimetres
(``units="mm"``, converted with ``spacing``). Boundary modes are
scipy.ndimage's: ``"reflect"``, ``"constant"``, ``"nearest"``, ``"mirror"``,
``"wrap"``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _params as P
from ._separable import correlate_terms, gaussian_weights
from .backend import backend_for

__all__ = [
    "derivative_kernel",
    "edge",
    "edge_kernels",
    "gaussian",
    "gradient",
    "laplacian",
    "mean",
    "median",
    "median_memory",
    "separable_memory",
]

_EDGE_SMOOTHING = {
    "sobel": (1.0, 2.0, 1.0),
    "prewitt": (1.0, 1.0, 1.0),
    "scharr": (3.0, 10.0, 3.0),
}
_EDGE_DERIVATIVE = (-1.0, 0.0, 1.0)
#: scipy.ndimage.gaussian_filter smooths only along axes whose sigma exceeds this.
_SIGMA_EPS = 1e-15


def gaussian(
    image: Any,
    sigma: Any,
    *,
    spacing: Any = None,
    units: str = "voxel",
    truncate: float = 4.0,
    mode: str = "nearest",
    cval: float = 0.0,
    dtype: Any = np.float32,
) -> Any:
    """Gaussian smoothing.

    Parameters
    ----------
    image : ndarray
        Input image (uint8, int8, uint16, int16, uint32, int32, float32 or
        float64), any number of dimensions >= 1.
    sigma : float or sequence of float
        Standard deviation of the Gaussian, one value for all axes or one per
        axis; finite and >= 0 (0 leaves that axis alone).
    spacing : sequence of float, optional
        Voxel spacing in mm per axis; needed when ``units="mm"``.
    units : {"voxel", "mm"}, optional
        Units of ``sigma``.
    truncate : float, optional
        The kernel stops at ``truncate`` standard deviations (radius
        ``int(truncate * sigma + 0.5)`` voxels).
    mode : {"reflect", "constant", "nearest", "mirror", "wrap"}, optional
        How the image is extended beyond its border.
    cval : float, optional
        Value beyond the border when ``mode="constant"``.
    dtype : {numpy.float32, numpy.float64}, optional
        Compute and output dtype.

    Returns
    -------
    ndarray
        The smoothed image, of ``dtype``, on the image's backend. Equal to
        ``scipy.ndimage.gaussian_filter`` with the same settings.

    Examples
    --------
    >>> import numpy as np
    >>> gaussian(np.ones((4, 4), np.uint8), 1.0).dtype
    dtype('float32')
    >>> gaussian(np.zeros((8, 8)), (3.0, 1.5), spacing=(1.5, 0.5), units="mm").shape
    (8, 8)
    """
    ndim = P.image_ndim(image)
    sigma_vox = P.lengths(
        sigma, "sigma", ndim=ndim, units=units, spacing=spacing, allow_zero=True
    )
    truncate = P.truncate_of(truncate)
    weights = tuple(_smoothing(s, truncate) for s in sigma_vox)
    return correlate_terms(image, [(1.0, weights)], mode=P.mode_of(mode),
                           cval=P.finite(cval, "cval"), dtype=P.compute_dtype(dtype))


def _smoothing(sigma: float, truncate: float) -> tuple[float, ...] | None:
    """Gaussian weights along one axis; None where scipy leaves the axis alone."""
    return gaussian_weights(sigma, truncate=truncate) if sigma > _SIGMA_EPS else None


def mean(
    image: Any,
    size: Any,
    *,
    spacing: Any = None,
    units: str = "voxel",
    mode: str = "nearest",
    cval: float = 0.0,
    dtype: Any = np.float32,
) -> Any:
    """Mean (box, uniform) filter.

    Parameters
    ----------
    image : ndarray
        Input image of a supported dtype, any number of dimensions >= 1.
    size : int, float or sequence
        Window size per axis. In voxels: whole numbers >= 1 (an even size is
        placed as scipy places it, one voxel more before the centre). In mm:
        finite and > 0, converted to the nearest odd voxel count >= 1 (a tie
        goes to the larger count).
    spacing : sequence of float, optional
        Voxel spacing in mm per axis; needed when ``units="mm"``.
    units : {"voxel", "mm"}, optional
        Units of ``size``.
    mode : {"reflect", "constant", "nearest", "mirror", "wrap"}, optional
        How the image is extended beyond its border.
    cval : float, optional
        Value beyond the border when ``mode="constant"``.
    dtype : {numpy.float32, numpy.float64}, optional
        Compute and output dtype.

    Returns
    -------
    ndarray
        Equal to ``scipy.ndimage.uniform_filter`` with the voxel sizes.

    Examples
    --------
    >>> import numpy as np
    >>> [round(v, 6) for v in mean(np.arange(5, dtype=np.uint8), 3).tolist()]
    [0.333333, 1.0, 2.0, 3.0, 3.666667]
    """
    ndim = P.image_ndim(image)
    sizes = P.window_sizes(size, "size", ndim=ndim, units=units, spacing=spacing)
    weights = tuple((1.0 / n,) * n if n > 1 else None for n in sizes)
    return correlate_terms(image, [(1.0, weights)], mode=P.mode_of(mode),
                           cval=P.finite(cval, "cval"), dtype=P.compute_dtype(dtype))


def median(
    image: Any,
    size: Any,
    *,
    spacing: Any = None,
    units: str = "voxel",
    mode: str = "nearest",
    cval: float = 0.0,
    dtype: Any = np.float32,
) -> Any:
    """Median filter over a box window.

    Parameters
    ----------
    image : ndarray
        Input image of a supported dtype, any number of dimensions >= 1.
    size : int, float or sequence
        Window size per axis, as for :func:`mean`.
    spacing : sequence of float, optional
        Voxel spacing in mm per axis; needed when ``units="mm"``.
    units : {"voxel", "mm"}, optional
        Units of ``size``.
    mode : {"reflect", "constant", "nearest", "mirror", "wrap"}, optional
        How the image is extended beyond its border.
    cval : float, optional
        Value beyond the border when ``mode="constant"``.
    dtype : {numpy.float32, numpy.float64}, optional
        Compute and output dtype.

    Returns
    -------
    ndarray
        Equal to ``scipy.ndimage.median_filter`` with the voxel sizes.

    Examples
    --------
    >>> import numpy as np
    >>> median(np.array([0, 9, 0, 1, 2], np.int16), 3).tolist()
    [0.0, 0.0, 1.0, 1.0, 2.0]
    """
    backend = backend_for(image)
    ndim = P.image_ndim(image)
    sizes = P.window_sizes(size, "size", ndim=ndim, units=units, spacing=spacing)
    mode = P.mode_of(mode)
    cval = P.finite(cval, "cval")
    img = image.astype(P.compute_dtype(dtype), copy=False)
    return backend.ndimage.median_filter(img, size=sizes, mode=mode, cval=cval)


def median_memory(shape: Any, size: Any, *, dtype: Any = np.float32, **_: Any) -> int:
    """Peak bytes :func:`median` allocates for an image of ``shape`` (CPU).

    The image cast to ``dtype`` and the result, and scipy's table of window offsets:
    one entry (8 bytes) per window voxel for each distinct way the window meets the
    border, ``prod(min(shape, size))`` of them, which is the window times the image
    when the window is as large as the image.

    Parameters
    ----------
    shape : sequence of int
        The image's shape.
    size : int or sequence of int
        Window size in voxels per axis, as :func:`median` takes it.
    dtype : {numpy.float32, numpy.float64}, optional
        Compute dtype.

    Returns
    -------
    int
        Bytes.

    Examples
    --------
    >>> median_memory((128, 128), 301) // 2**30
    11
    >>> median_memory((512, 512), 3)
    2097872
    """
    shape = tuple(int(n) for n in shape)
    sizes = [int(v) for v in P.per_axis(size, len(shape), "size")]
    window = math.prod(sizes)
    borders = math.prod(min(n, w) for n, w in zip(shape, sizes))
    return 2 * math.prod(shape) * np.dtype(dtype).itemsize + 8 * window * (borders + 1)


def separable_memory(shape: Any, *_: Any, dtype: Any = np.float32, **__: Any) -> int:
    """Peak bytes of a separable filter (:func:`gaussian`, :func:`mean`,
    :func:`laplacian`, :func:`gradient`, :func:`edge`) for an image of ``shape``: the
    image cast to ``dtype``, the result and one intermediate of the image's size (the
    weights and per-plane scratch are small beside them).

    Examples
    --------
    >>> separable_memory((100, 100), 2.0)
    120000
    """
    return 3 * math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize


def laplacian(
    image: Any,
    sigma: Any = 0.0,
    *,
    spacing: Any = None,
    units: str = "voxel",
    truncate: float = 4.0,
    mode: str = "nearest",
    cval: float = 0.0,
    dtype: Any = np.float32,
) -> Any:
    """Laplacian, optionally of a Gaussian-smoothed image (LoG).

    The sum over axes of the second derivative along that axis, in voxel
    units (per voxel squared, whatever ``units`` is). Along an axis whose
    sigma is 0 the second derivative is the difference ``[1, -2, 1]`` and no
    smoothing is done; along an axis whose sigma is > 0 it is the second
    derivative of the Gaussian.

    Parameters
    ----------
    image : ndarray
        Input image of a supported dtype, any number of dimensions >= 1.
    sigma : float or sequence of float, optional
        Gaussian standard deviation per axis, finite and >= 0. 0 everywhere
        (the default) gives ``scipy.ndimage.laplace``; > 0 everywhere gives
        ``scipy.ndimage.gaussian_laplace``.
    spacing : sequence of float, optional
        Voxel spacing in mm per axis; needed when ``units="mm"``.
    units : {"voxel", "mm"}, optional
        Units of ``sigma``.
    truncate : float, optional
        The Gaussian stops at ``truncate`` standard deviations.
    mode : {"reflect", "constant", "nearest", "mirror", "wrap"}, optional
        How the image is extended beyond its border.
    cval : float, optional
        Value beyond the border when ``mode="constant"``.
    dtype : {numpy.float32, numpy.float64}, optional
        Compute and output dtype.

    Returns
    -------
    ndarray
        The Laplacian, of ``dtype``, on the image's backend.

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[:5, :5]
    >>> float(laplacian((x**2 + y**2).astype(np.int16))[2, 2])
    4.0
    """
    ndim = P.image_ndim(image)
    sigma_vox = P.lengths(
        sigma, "sigma", ndim=ndim, units=units, spacing=spacing, allow_zero=True
    )
    truncate = P.truncate_of(truncate)
    smoothing = [_smoothing(s, truncate) for s in sigma_vox]
    # One term per axis, summed in axis order as scipy.ndimage.generic_laplace
    # does: the second derivative along the axis (of the Gaussian where its sigma
    # is > 0, else [1, -2, 1]) and the Gaussian along every other axis.
    terms = []
    for axis in range(ndim):
        weights = list(smoothing)
        weights[axis] = (gaussian_weights(sigma_vox[axis], 2, truncate=truncate)
                         if smoothing[axis] is not None else derivative_kernel(2))
        terms.append((1.0, tuple(weights)))
    return correlate_terms(image, terms, mode=P.mode_of(mode),
                           cval=P.finite(cval, "cval"), dtype=P.compute_dtype(dtype))


def derivative_kernel(order: int) -> tuple[float, ...]:
    """1-D central-difference weights for :func:`gradient` (correlation order).

    Parameters
    ----------
    order : {1, 2}
        Order of the derivative.

    Returns
    -------
    tuple of float
        ``(-0.5, 0.0, 0.5)`` for order 1 (``numpy.gradient`` in the interior),
        ``(1.0, -2.0, 1.0)`` for order 2.

    Examples
    --------
    >>> derivative_kernel(1)
    (-0.5, 0.0, 0.5)
    """
    order = P.integer(order, "order")
    if order == 1:
        return (-0.5, 0.0, 0.5)
    if order == 2:
        return (1.0, -2.0, 1.0)
    raise ValueError(f"order: must be 1 or 2, got {order}")


def gradient(
    image: Any,
    axis: int,
    *,
    order: int = 1,
    spacing: Any = None,
    per_mm: bool = False,
    mode: str = "nearest",
    cval: float = 0.0,
    dtype: Any = np.float32,
) -> Any:
    """First or second derivative along one axis by central differences.

    Parameters
    ----------
    image : ndarray
        Input image of a supported dtype, any number of dimensions >= 1.
    axis : int
        Axis to differentiate along; negative counts from the end.
    order : {1, 2}, optional
        1: weights ``[-0.5, 0, 0.5]`` (``numpy.gradient`` in the interior);
        2: weights ``[1, -2, 1]``.
    spacing : sequence of float, optional
        Voxel spacing in mm per axis; needed when ``per_mm=True``.
    per_mm : bool, optional
        Divide by ``spacing[axis] ** order``: the derivative per mm (per mm
        squared) instead of per voxel.
    mode : {"reflect", "constant", "nearest", "mirror", "wrap"}, optional
        How the image is extended beyond its border.
    cval : float, optional
        Value beyond the border when ``mode="constant"``.
    dtype : {numpy.float32, numpy.float64}, optional
        Compute and output dtype.

    Returns
    -------
    ndarray
        The derivative, of ``dtype``, same shape as ``image``.

    Examples
    --------
    >>> import numpy as np
    >>> gradient(np.array([0, 2, 4, 6], np.uint8), 0).tolist()
    [1.0, 2.0, 2.0, 1.0]
    >>> gradient(np.array([0, 2, 4, 6], np.uint8), 0, spacing=(0.5,), per_mm=True).tolist()
    [2.0, 4.0, 4.0, 2.0]
    """
    ndim = P.image_ndim(image)
    axis = P.axis_of(axis, ndim)
    weights = derivative_kernel(order)
    order = P.integer(order, "order")
    spacing = P.spacing_of(spacing, ndim)
    if P.flag(per_mm, "per_mm"):
        if spacing is None:
            raise ValueError("per_mm: given but the image has no voxel spacing")
        scale = 1.0 / spacing[axis] ** order
        weights = tuple(w * scale for w in weights)
    along = [None] * ndim
    along[axis] = weights
    return correlate_terms(image, [(1.0, tuple(along))], mode=P.mode_of(mode),
                           cval=P.finite(cval, "cval"), dtype=P.compute_dtype(dtype))


def edge_kernels(operator: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """1-D derivative and smoothing weights of an edge operator.

    Parameters
    ----------
    operator : {"sobel", "prewitt", "scharr"}
        The operator.

    Returns
    -------
    derivative : tuple of float
        ``(-1.0, 0.0, 1.0)`` for every operator (unnormalised, as scipy).
    smoothing : tuple of float
        ``(1, 2, 1)`` for sobel, ``(1, 1, 1)`` for prewitt, ``(3, 10, 3)`` for
        scharr.

    Examples
    --------
    >>> edge_kernels("sobel")
    ((-1.0, 0.0, 1.0), (1.0, 2.0, 1.0))
    """
    if not isinstance(operator, str) or operator not in _EDGE_SMOOTHING:
        accepted = ", ".join(repr(k) for k in _EDGE_SMOOTHING)
        raise ValueError(f"operator: must be one of {accepted}, got {operator!r}")
    return _EDGE_DERIVATIVE, _EDGE_SMOOTHING[operator]


def edge(
    image: Any,
    operator: str = "sobel",
    *,
    axes: Any = None,
    mode: str = "nearest",
    cval: float = 0.0,
    dtype: Any = np.float32,
) -> Any:
    """Gradient magnitude by the Sobel, Prewitt or Scharr operator.

    For every axis in ``axes`` the derivative ``[-1, 0, 1]`` is taken along it
    and the operator's smoothing along every other axis of the image; the
    result is the square root of the sum of their squares. The weights are
    unnormalised, as in ``scipy.ndimage.sobel`` / ``prewitt``.

    Parameters
    ----------
    image : ndarray
        Input image of a supported dtype, any number of dimensions >= 1.
    operator : {"sobel", "prewitt", "scharr"}, optional
        The operator.
    axes : int or sequence of int, optional
        Axes whose derivatives enter the magnitude; default all.
    mode : {"reflect", "constant", "nearest", "mirror", "wrap"}, optional
        How the image is extended beyond its border.
    cval : float, optional
        Value beyond the border when ``mode="constant"``.
    dtype : {numpy.float32, numpy.float64}, optional
        Compute and output dtype.

    Returns
    -------
    ndarray
        The gradient magnitude, of ``dtype``, same shape as ``image``. For
        sobel, ``hypot`` of ``scipy.ndimage.sobel`` along each axis.

    Examples
    --------
    >>> import numpy as np
    >>> edge(np.array([[0, 0, 1, 1]] * 3, np.uint8))[1].tolist()
    [0.0, 4.0, 4.0, 0.0]
    """
    ndim = P.image_ndim(image)
    derivative, smoothing = edge_kernels(operator)
    axes = _axes_of(axes, ndim)
    terms = []
    for axis in axes:
        weights = [smoothing] * ndim
        weights[axis] = derivative
        terms.append((1.0, tuple(weights), axis))  # the derivative first, as scipy
    return correlate_terms(image, terms, combine="hypot", mode=P.mode_of(mode),
                           cval=P.finite(cval, "cval"), dtype=P.compute_dtype(dtype))


def _axes_of(axes: Any, ndim: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, (str, bytes)) or not hasattr(axes, "__iter__"):
        axes = (axes,)
    resolved = tuple(P.axis_of(a, ndim, "axes") for a in axes)
    if not resolved:
        raise ValueError("axes: must name at least one axis, got an empty sequence")
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"axes: must not repeat an axis, got {tuple(axes)}")
    return resolved

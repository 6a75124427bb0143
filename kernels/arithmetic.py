"""Weighted subtraction and addition of images, with DSA mask subtraction.

``other`` must have the image's shape, or the shape of one frame of it
(``image.shape[1:]``): then the same frame is combined with every frame of the
stack along axis 0, as a mask is subtracted from every frame of a digital
subtraction angiography (DSA) run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _params as P
from .backend import backend_for

__all__ = ["add", "arithmetic_memory", "subtract"]


def _other_of(backend: Any, image: Any, other: Any) -> None:
    P.image_ndim(other, "other")
    other_backend = backend_for(other)
    if other_backend.name != backend.name or other_backend.index != backend.index:
        raise ValueError(
            f"other: must be on the image's backend ({backend.name}, {backend.device}), "
            f"got {other_backend.name} ({other_backend.device}); move it with Backend.asarray"
        )
    shape, frame = tuple(image.shape), tuple(image.shape[1:])
    other_shape = tuple(other.shape)
    if other_shape == shape or (len(frame) >= 1 and other_shape == frame):
        return
    accepted = f"the image's shape {shape}"
    if len(frame) >= 1:
        accepted += f" or its frame shape {frame}"
    raise ValueError(f"other: shape {other_shape} must equal {accepted}")


def _frame_of(mask_frame: Any, image: Any) -> int:
    k = P.integer(mask_frame, "mask_frame")
    if image.ndim < 2:
        raise ValueError(
            "mask_frame: needs an image of at least 2 dimensions (frames along axis 0), "
            f"got {image.ndim}"
        )
    n = image.shape[0]
    if not -n <= k < n:
        raise ValueError(f"mask_frame: must be in [{-n}, {n - 1}] for {n} frames, got {k}")
    return k % n


def arithmetic_memory(shape: Any, *_: Any, dtype: Any = np.float32,
                      logarithmic: bool = False, **__: Any) -> int:
    """Peak bytes :func:`add` or :func:`subtract` allocates for an image of ``shape``: the
    image and the operand cast to ``dtype`` and the result (and the logarithms of both
    for a logarithmic subtraction).

    Examples
    --------
    >>> arithmetic_memory((100, 100))
    120000
    """
    copies = 5 if logarithmic else 3
    return copies * math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize


def subtract(
    image: Any,
    other: Any = None,
    *,
    weight: float = 1.0,
    mask_frame: int | None = None,
    logarithmic: bool = False,
    log_floor: float = 1e-6,
    dtype: Any = np.float32,
) -> Any:
    """``image - weight * other``, or with ``log`` of both (DSA).

    Parameters
    ----------
    image : ndarray
        Input image of a supported dtype, any number of dimensions >= 1.
    other : ndarray, optional
        The image subtracted, on the same backend: of ``image.shape``, or of
        ``image.shape[1:]`` (subtracted from every frame along axis 0).
        Exactly one of ``other`` and ``mask_frame`` is given.
    weight : float, optional
        Finite factor applied to ``other`` (or its logarithm).
    mask_frame : int, optional
        Use frame ``mask_frame`` of ``image`` itself (along axis 0; negative
        counts from the end) as ``other``.
    logarithmic : bool, optional
        ``log(max(image, log_floor)) - weight * log(max(other, log_floor))``:
        logarithmic subtraction, which cancels multiplicative attenuation
        (X-ray DSA).
    log_floor : float, optional
        Finite value > 0 that values are clipped up to before the logarithm.
    dtype : {numpy.float32, numpy.float64}, optional
        Compute and output dtype; both inputs are cast to it first.

    Returns
    -------
    ndarray
        Of ``dtype`` and ``image.shape``, on the image's backend.

    Examples
    --------
    >>> import numpy as np
    >>> run = np.array([[5, 5], [7, 9], [6, 5]], np.uint16)
    >>> subtract(run, mask_frame=0).tolist()
    [[0.0, 0.0], [2.0, 4.0], [1.0, 0.0]]
    >>> subtract(run, np.array([1, 2], np.uint8), weight=2.0)[0].tolist()
    [3.0, 1.0]
    """
    backend = backend_for(image)
    P.image_ndim(image)
    if other is None and mask_frame is None:
        raise ValueError("other: required unless mask_frame is given")
    if other is not None and mask_frame is not None:
        raise ValueError("mask_frame: must be None when other is given (use one of the two)")
    if other is not None:
        _other_of(backend, image, other)
    else:
        mask_frame = _frame_of(mask_frame, image)
    weight = P.finite(weight, "weight")
    logarithmic = P.flag(logarithmic, "logarithmic")
    floor = P.positive((P.real(log_floor, "log_floor"),), "log_floor")[0]
    dt = P.compute_dtype(dtype)
    xp = backend.xp

    img = image.astype(dt, copy=False)
    oth = img[mask_frame] if other is None else other.astype(dt, copy=False)
    if logarithmic:
        img = xp.log(xp.maximum(img, floor))
        oth = xp.log(xp.maximum(oth, floor))
    if weight != 1.0:
        oth = oth * weight
    return img - oth


def add(
    image: Any,
    other: Any,
    *,
    weight: float = 1.0,
    dtype: Any = np.float32,
) -> Any:
    """``image + weight * other``.

    Parameters
    ----------
    image : ndarray
        Input image of a supported dtype, any number of dimensions >= 1.
    other : ndarray
        Of ``image.shape`` or ``image.shape[1:]`` (added to every frame along
        axis 0), on the same backend.
    weight : float, optional
        Finite factor applied to ``other``.
    dtype : {numpy.float32, numpy.float64}, optional
        Compute and output dtype; both inputs are cast to it first.

    Returns
    -------
    ndarray
        Of ``dtype`` and ``image.shape``, on the image's backend.

    Examples
    --------
    >>> import numpy as np
    >>> add(np.array([1, 2], np.int8), np.array([10, 20], np.int16), weight=0.5).tolist()
    [6.0, 12.0]
    """
    backend = backend_for(image)
    P.image_ndim(image)
    if other is None:
        raise ValueError("other: required, got None")
    _other_of(backend, image, other)
    weight = P.finite(weight, "weight")
    dt = P.compute_dtype(dtype)
    img = image.astype(dt, copy=False)
    oth = other.astype(dt, copy=False)
    if weight != 1.0:
        oth = oth * weight
    return img + oth

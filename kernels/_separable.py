"""Separable correlation: 1-D kernels along axes, one or several terms combined.

Every linear filter here (Gaussian, mean, Laplacian, gradient, edge
operators, difference of Gaussians) is a *term*, a 1-D correlation along each
axis, or a few terms combined: summed (Laplacian, DoG) or as the square root of
the sum of their squares (edge magnitude). :func:`correlate_terms` evaluates
them on the image's backend:

- On CuPy (and any backend other than NumPy) it chains
  ``backend.ndimage.correlate1d``, sharing the passes that terms have in
  common along the leading axes.
- On NumPy it uses OpenCV's SIMD filters, planes spread over threads
  (``_opencv.py``). Where OpenCV cannot match scipy.ndimage
  (``mode="wrap"``, ``mode="constant"`` with ``cval != 0``) it falls back to
  the chained ``correlate1d``.

Weights are given in correlation order (as ``scipy.ndimage.correlate1d``
takes them) and as tuples of floats, built by the pure functions here and in
``filters``; :func:`gaussian_weights` builds exactly the weights that
``scipy.ndimage.gaussian_filter1d`` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _params as P
from ._opencv import opencv_terms
from .backend import backend_for

__all__ = ["Term", "correlate_terms", "gaussian_weights"]

#: One term: a coefficient, per axis 1-D weights or None (that axis untouched), and
#: optionally the axis correlated first (it matters only at a constant border
#: other than 0, where scipy.ndimage's edge filters start with the derivative).
Term = tuple  # (coef, weights) or (coef, weights, first_axis)

COMBINE = ("sum", "hypot")


# --- weights ---------------------------------------------------------------------


def gaussian_weights(sigma: float, order: int = 0, *, truncate: float = 4.0) -> tuple[float, ...]:
    """1-D weights of a sampled Gaussian or its derivative, in correlation order.

    The same numbers as ``scipy.ndimage.gaussian_filter1d`` correlates with:
    radius ``int(truncate * sigma + 0.5)``, the Gaussian normalised to sum 1,
    derivatives as the polynomial times the Gaussian, reversed for correlation.

    Parameters
    ----------
    sigma : float
        Standard deviation in voxels, finite and > 0.
    order : int, optional
        Derivative order, >= 0.
    truncate : float, optional
        Radius in standard deviations, finite and > 0.

    Returns
    -------
    tuple of float
        ``2 * radius + 1`` weights.

    Examples
    --------
    >>> w = gaussian_weights(1.0)
    >>> len(w), round(sum(w), 12)
    (9, 1.0)
    >>> gaussian_weights(1.0, 1)[0] < 0   # correlation order, like (-0.5, 0, 0.5)
    True
    """
    s = P.positive((P.real(sigma, "sigma"),), "sigma")[0]
    n = P.integer(order, "order")
    if n < 0:
        raise ValueError(f"order: must be an integer >= 0, got {n}")
    radius = int(P.truncate_of(truncate) * s + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    sigma2 = s * s
    phi = np.exp(-0.5 / sigma2 * x**2)
    phi /= phi.sum()
    if n > 0:
        # q(x) * phi(x) is the n-th derivative: q' = D q + P q, with D the
        # derivative of the polynomial and P its product with phi'/phi = -x/s^2.
        exponents = np.arange(n + 1)
        q = np.zeros(n + 1)
        q[0] = 1.0
        step = np.diag(exponents[1:], 1) + np.diag(np.ones(n) / -sigma2, -1)
        for _ in range(n):
            q = step.dot(q)
        phi = (x[:, None] ** exponents).dot(q) * phi
    return tuple(float(v) for v in phi[::-1])


# --- the filter ------------------------------------------------------------------


def _terms_of(terms: Sequence[Any], ndim: int) -> list[tuple]:
    """Terms as ``(coef, weights, first)`` with weights as tuples of floats."""
    out = []
    for term in terms:
        coef, weights, first = (tuple(term) + (None,))[:3]
        weights = tuple(weights)
        if len(weights) != ndim:
            raise ValueError(f"terms: need one weights entry per axis ({ndim}), "
                             f"got {len(weights)}")
        if first is not None:
            first = P.axis_of(first, ndim, "first")
        weights = tuple(None if w is None else tuple(float(v) for v in w) for w in weights)
        out.append((float(coef), weights, first))
    if not out:
        raise ValueError("terms: need at least one term")
    return out


def correlate_terms(
    image: Any,
    terms: Sequence[Term],
    *,
    combine: str = "sum",
    mode: str = "nearest",
    cval: float = 0.0,
    dtype: Any = np.float32,
) -> Any:
    """Correlate ``image`` with one or more separable kernels and combine them.

    Parameters
    ----------
    image : ndarray
        Input image of a supported dtype, on any backend; cast to ``dtype``.
    terms : sequence of (coef, weights) or (coef, weights, first)
        ``weights`` has one entry per axis: 1-D weights in correlation order
        (as ``scipy.ndimage.correlate1d``) or None to leave that axis alone.
        A term is ``coef`` times the image correlated along each axis in
        turn, in axis order, or starting with axis ``first``.
    combine : {"sum", "hypot"}, optional
        ``"sum"``: the sum of the terms. ``"hypot"``: the square root of the
        sum of their squares (``coef`` is applied before squaring).
    mode : {"reflect", "constant", "nearest", "mirror", "wrap"}, optional
        scipy.ndimage's boundary mode, applied at every 1-D pass.
    cval : float, optional
        Value beyond the border when ``mode="constant"``.
    dtype : {numpy.float32, numpy.float64}, optional
        Compute and output dtype.

    Returns
    -------
    ndarray
        A new array of ``dtype`` and the image's shape, on its backend. Equal,
        to float rounding, to chaining ``scipy.ndimage.correlate1d`` per axis.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(12, dtype=np.int16).reshape(3, 4)
    >>> d = (-0.5, 0.0, 0.5)
    >>> correlate_terms(image, [(1.0, (None, d))])[1].tolist()
    [0.5, 1.0, 1.0, 0.5]
    >>> correlate_terms(image, [(1.0, (d, None)), (1.0, (None, d))], combine="hypot").shape
    (3, 4)
    """
    backend = backend_for(image)
    ndim = P.image_ndim(image)
    terms = _terms_of(terms, ndim)
    if combine not in COMBINE:
        raise ValueError(f"combine: must be 'sum' or 'hypot', got {combine!r}")
    mode = P.mode_of(mode)
    cval = P.finite(cval, "cval")
    dt = P.compute_dtype(dtype)
    # CPU backend: OpenCV's SIMD separable filters where their borders equal scipy's.
    if backend.name == "numpy" and mode != "wrap" and (mode != "constant" or cval == 0.0):
        return opencv_terms(np.asarray(image), terms, combine, mode, dt)
    return _ndimage_terms(backend, image, terms, combine, mode, cval, dt)


def _ndimage_terms(backend, image, terms, combine, mode, cval, dt):
    xp, nd = backend.xp, backend.ndimage
    img = image.astype(dt, copy=False)
    # The passes of each term in order. Filtering along different axes commutes
    # except at a constant border other than 0; there the term's first axis goes
    # first, as the scipy.ndimage filter it stands for does it.
    ordered = mode == "constant" and cval != 0.0
    plans = []
    for _, weights, first in terms:
        axes = list(range(len(weights)))
        if ordered and first is not None:
            axes.remove(first)
            axes.insert(0, first)
        plans.append(tuple((a, weights[a]) for a in axes if weights[a] is not None))
    # Intermediate results that a later term starts from are kept, the rest dropped.
    cache = {(): img}
    result = None
    for t, ((coef, _, _), plan) in enumerate(zip(terms, plans)):
        done = max(k for k in range(len(plan) + 1) if plan[:k] in cache)
        array = cache[plan[:done]]
        for k in range(done, len(plan)):
            axis, w = plan[k]
            array = nd.correlate1d(array, _device_weights(backend, w), axis,
                                   mode=mode, cval=cval)
            cache[plan[:k + 1]] = array
        later = {p[:k] for p in plans[t + 1:] for k in range(len(p) + 1)}
        cache = {key: a for key, a in cache.items() if key in later or key == ()}
        term = array
        if any(term is a for a in cache.values()):
            term = term.copy()  # still needed as it is; combined in place below
        if coef != 1.0:
            term *= coef
        if combine == "hypot":
            term *= term
        if result is None:
            result = term
        else:
            result += term
    if combine == "hypot":
        xp.sqrt(result, out=result)
    return result


def _device_weights(backend, weights: tuple[float, ...]) -> Any:
    if backend.index is None:
        return np.asarray(weights, dtype=np.float64)
    return _cached_device_weights(backend.xp, backend.index, weights)


_DEVICE_WEIGHTS: dict[tuple[int, tuple[float, ...]], Any] = {}


def _cached_device_weights(xp, index: int, weights: tuple[float, ...]) -> Any:
    # CuPy backend: weights live on the device, copied there once per device and
    # kernel, not on every call (each copy would queue a transfer).
    key = (index, weights)
    found = _DEVICE_WEIGHTS.get(key)
    if found is None:
        if len(_DEVICE_WEIGHTS) > 256:
            _DEVICE_WEIGHTS.clear()
        with xp.cuda.Device(index):
            found = xp.asarray(np.asarray(weights, dtype=np.float64))
        _DEVICE_WEIGHTS[key] = found
    return found

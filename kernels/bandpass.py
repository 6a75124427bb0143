"""Band-pass filtering by wavelength: difference of Gaussians or Butterworth.

Cutoffs are wavelengths (structure sizes, in voxels or mm): detail finer than
``low_cutoff`` is removed, structures coarser than ``high_cutoff`` are
removed. A cutoff is the wavelength at which the filter's amplitude gain is
1/2.

Why ``sigma = sqrt(ln 2 / 2) * wavelength / pi``: a Gaussian of standard
deviation ``sigma`` (voxels) has the transfer function
``H(f) = exp(-2 pi^2 sigma^2 f^2)`` at ``f`` cycles per voxel. Asking for
``H(1 / wavelength) = 1/2`` gives ``2 pi^2 sigma^2 / wavelength^2 = ln 2``, so
``sigma = wavelength * sqrt(ln 2 / 2) / pi`` (about 0.187 wavelengths).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _params as P
from ._separable import correlate_terms, gaussian_weights
from .backend import backend_for

__all__ = ["bandpass", "bandpass_memory", "butterworth_mask", "gaussian_sigma_for_cutoff"]

METHODS = ("dog", "butterworth")
SIGMA_PER_WAVELENGTH = math.sqrt(math.log(2.0) / 2.0) / math.pi

# numpy.pad's name for each scipy.ndimage boundary mode.
_PAD_MODES = {
    "reflect": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "constant": "constant",
}


def gaussian_sigma_for_cutoff(wavelength: Any) -> Any:
    """Gaussian standard deviation whose gain is 1/2 at ``wavelength``.

    Parameters
    ----------
    wavelength : float or sequence of float
        Cutoff wavelength(s), finite and > 0, in any length unit.

    Returns
    -------
    float or tuple of float
        ``sqrt(ln 2 / 2) * wavelength / pi``, in the unit of ``wavelength``;
        a tuple when a sequence was given.

    Examples
    --------
    >>> round(gaussian_sigma_for_cutoff(10.0), 4)
    1.8739
    """
    if isinstance(wavelength, (list, tuple, np.ndarray)):
        values = P.positive(P.per_axis(wavelength, len(wavelength), "wavelength"), "wavelength")
        return tuple(SIGMA_PER_WAVELENGTH * w for w in values)
    w = P.positive((P.real(wavelength, "wavelength"),), "wavelength")[0]
    return SIGMA_PER_WAVELENGTH * w


def _order_of(order: Any) -> int:
    n = P.integer(order, "order")
    if n < 1:
        raise ValueError(f"order: must be an integer >= 1, got {n}")
    return n


def _cutoffs(
    low: Any, high: Any, ndim: int, *, units: Any = "voxel", spacing: Any = None
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    if low is None and high is None:
        raise ValueError(
            "low_cutoff: at least one of low_cutoff and high_cutoff must be given"
        )
    lo = hi = None
    if low is not None:
        lo_given = P.positive(P.per_axis(low, ndim, "low_cutoff"), "low_cutoff")
    if high is not None:
        hi_given = P.positive(P.per_axis(high, ndim, "high_cutoff"), "high_cutoff")
    if low is not None and high is not None:
        for i, (a, b) in enumerate(zip(lo_given, hi_given)):
            if not a < b:
                where = f" on axis {i}" if ndim > 1 else ""
                raise ValueError(
                    f"low_cutoff: must be < high_cutoff, got {a!r} >= {b!r}{where}"
                )
    if low is not None:
        lo = P.lengths(lo_given, "low_cutoff", ndim=ndim, units=units, spacing=spacing,
                       allow_zero=False)
    if high is not None:
        hi = P.lengths(hi_given, "high_cutoff", ndim=ndim, units=units, spacing=spacing,
                       allow_zero=False)
    return lo, hi


def butterworth_mask(
    shape: Any,
    low_cutoff: Any,
    high_cutoff: Any,
    order: int,
    sample_spacing: Any = 1.0,
    xp: Any = np,
    *,
    real: bool = True,
    dtype: Any = np.float64,
) -> Any:
    """Butterworth band-pass gain on the FFT frequency grid of ``shape``.

    ``lowpass(r) = 1 / (1 + r ** (2 * order))`` with ``r`` the radial
    frequency in units of the cutoff frequency ``1 / cutoff``; the mask is
    ``lowpass(r_low) * (1 - lowpass(r_high))``, so the gain is 1/2 at
    either cutoff wavelength when the other is None. Per-axis cutoffs give an
    elliptical mask: ``r^2 = sum_i (f_i * cutoff_i) ** 2``.

    Parameters
    ----------
    shape : sequence of int
        Shape of the (real) array to be filtered.
    low_cutoff, high_cutoff : float, sequence of float or None
        Cutoff wavelengths, in the unit of ``sample_spacing``; at most one
        None.
    order : int
        Butterworth order, >= 1; higher is steeper.
    sample_spacing : float or sequence of float, optional
        Distance between samples along each axis (1 for voxels, the spacing
        for mm).
    xp : module, optional
        Array namespace to build the mask with (``numpy`` or ``cupy``).
    real : bool, optional
        True: the layout of ``rfftn`` (last axis ``n // 2 + 1`` long);
        False: the layout of ``fftn``.
    dtype : numpy dtype, optional
        Dtype of the mask.

    Returns
    -------
    ndarray
        Gains in [0, 1], broadcastable against the FFT of an array of
        ``shape``.

    Examples
    --------
    >>> m = butterworth_mask((8,), None, 4.0, 2)
    >>> [round(float(g), 3) for g in m]
    [0.0, 0.059, 0.5, 0.835, 0.941]
    """
    shape = tuple(P.integer(n, "shape") for n in shape)
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"shape: must be a non-empty sequence of sizes >= 1, got {shape}")
    ndim = len(shape)
    lo, hi = _cutoffs(low_cutoff, high_cutoff, ndim)
    order = _order_of(order)
    step = P.positive(P.per_axis(sample_spacing, ndim, "sample_spacing"), "sample_spacing")
    # Clamp r^2 so that r^(2 order) stays finite in float32 (gain ~1e-30 there).
    cap = 1e30 ** (1.0 / order)

    def frequencies(axis: int) -> Any:
        if real and axis == ndim - 1:
            f = xp.fft.rfftfreq(shape[axis], d=step[axis])
        else:
            f = xp.fft.fftfreq(shape[axis], d=step[axis])
        view = [1] * ndim
        view[axis] = -1
        return f.reshape(view)

    def lowpass(cutoff: tuple[float, ...]) -> Any:
        r2 = None
        for axis in range(ndim):
            term = (frequencies(axis) * cutoff[axis]) ** 2
            r2 = term if r2 is None else r2 + term
        r2 = xp.minimum(r2.astype(dtype, copy=False), cap)
        return 1.0 / (1.0 + r2**order)

    mask = None
    if lo is not None:
        mask = lowpass(lo)
    if hi is not None:
        high = 1.0 - lowpass(hi)
        mask = high if mask is None else mask * high
    return mask.astype(dtype, copy=False)


def bandpass(
    image: Any,
    low_cutoff: Any = None,
    high_cutoff: Any = None,
    *,
    method: str = "dog",
    order: int = 2,
    spacing: Any = None,
    units: str = "voxel",
    truncate: float = 4.0,
    mode: str = "nearest",
    cval: float = 0.0,
    dtype: Any = np.float32,
) -> Any:
    """Keep structures between two sizes.

    Parameters
    ----------
    image : ndarray
        Input image of a supported dtype, any number of dimensions >= 1.
    low_cutoff : float, sequence of float or None, optional
        Wavelength below which detail is removed (gain 1/2 at it); None:
        no low-pass (a pure high-pass).
    high_cutoff : float, sequence of float or None, optional
        Wavelength above which structures are removed (gain 1/2 at it);
        None: no high-pass (a pure low-pass). At least one cutoff must be
        given, and ``low_cutoff < high_cutoff`` when both are.
    method : {"dog", "butterworth"}, optional
        ``"dog"``: ``gaussian(sigma_low) - gaussian(sigma_high)`` with
        ``sigma = sqrt(ln 2 / 2) * cutoff / pi`` (no low-pass: the image
        itself; no high-pass: nothing subtracted). ``"butterworth"``: the FFT
        multiplied by :func:`butterworth_mask`; the image is first padded on
        each side of every axis by the larger cutoff (in voxels, rounded up,
        at most half the axis) as ``mode`` says, and cropped back after;
        ``mode="wrap"`` pads nothing (the FFT is periodic).
    order : int, optional
        Butterworth order, an integer >= 1 (checked for both methods).
    spacing : sequence of float, optional
        Voxel spacing in mm per axis; needed when ``units="mm"``.
    units : {"voxel", "mm"}, optional
        Units of the cutoffs.
    truncate : float, optional
        The Gaussians stop at ``truncate`` standard deviations (``"dog"``).
    mode : {"reflect", "constant", "nearest", "mirror", "wrap"}, optional
        How the image is extended beyond its border.
    cval : float, optional
        Value beyond the border when ``mode="constant"``.
    dtype : {numpy.float32, numpy.float64}, optional
        Compute and output dtype.

    Returns
    -------
    ndarray
        The filtered image, of ``dtype``, same shape, on the image's backend.
        The mean (DC) is removed whenever ``high_cutoff`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.cos(2 * np.pi * np.arange(64) / 16)
    >>> out = bandpass(x, 16.0, method="butterworth", mode="wrap", dtype=np.float64)
    >>> round(float(out[0]), 6)
    0.5
    """
    backend = backend_for(image)
    ndim = P.image_ndim(image)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method: must be 'dog' or 'butterworth', got {method!r}")
    order = _order_of(order)
    lo, hi = _cutoffs(low_cutoff, high_cutoff, ndim, units=units, spacing=spacing)
    truncate = P.truncate_of(truncate)
    mode = P.mode_of(mode)
    cval = P.finite(cval, "cval")
    dt = P.compute_dtype(dtype)
    if method == "dog":
        return _dog(image, lo, hi, truncate=truncate, mode=mode, cval=cval, dtype=dt)
    img = image.astype(dt, copy=False)
    return _butterworth(backend, img, lo, hi, order, mode=mode, cval=cval)


def bandpass_memory(shape: Any, low_cutoff: Any = None, high_cutoff: Any = None, *,
                    method: str = "dog", mode: str = "nearest", dtype: Any = np.float32,
                    **_: Any) -> int:
    """Peak bytes :func:`bandpass` allocates for an image of ``shape`` (cutoffs in voxels).

    A difference of Gaussians: the cast image, the result and an intermediate. A
    Butterworth filter: the image padded by the longest cutoff (at most half the axis on
    each side), its spectrum, the mask and the inverse transform, each of the padded size.

    Examples
    --------
    >>> bandpass_memory((64, 64), None, 8.0)
    49152
    >>> bandpass_memory((64, 64), None, 8.0, method="butterworth")
    135168
    """
    shape = tuple(int(n) for n in shape)
    c = np.dtype(dtype).itemsize
    voxels = math.prod(shape)
    if method != "butterworth":
        return 3 * voxels * c
    padded = voxels
    if mode != "wrap":
        cutoffs = [P.per_axis(v, len(shape), "cutoff") for v in (low_cutoff, high_cutoff)
                   if v is not None]
        padded = math.prod(n + 2 * min(math.ceil(max((v[axis] for v in cutoffs), default=0)),
                                       n // 2) for axis, n in enumerate(shape))
    return 4 * padded * c + 2 * voxels * c


def _dog(image, lo, hi, *, truncate, mode, cval, dtype):
    # gaussian(low) - gaussian(high) as two separable terms, combined plane by plane.
    ndim = image.ndim
    terms = []
    if lo is None:
        terms.append((1.0, (None,) * ndim))
    else:
        sigma = gaussian_sigma_for_cutoff(lo)
        terms.append((1.0, tuple(_smoothing(s, truncate) for s in sigma)))
    if hi is not None:
        sigma = gaussian_sigma_for_cutoff(hi)
        terms.append((-1.0, tuple(_smoothing(s, truncate) for s in sigma)))
    return correlate_terms(image, terms, mode=mode, cval=cval, dtype=dtype)


def _smoothing(sigma: float, truncate: float):
    # Below this sigma scipy's gaussian_filter leaves an axis alone (and 1/sigma**2 overflows).
    return gaussian_weights(sigma, truncate=truncate) if sigma > 1e-15 else None


def _butterworth(backend, img, lo, hi, order, *, mode, cval):
    xp, fft = backend.xp, backend.fft
    ndim = img.ndim
    pads = [0] * ndim
    if mode != "wrap":
        for axis, n in enumerate(img.shape):
            longest = max(c[axis] for c in (lo, hi) if c is not None)
            pads[axis] = min(math.ceil(longest), n // 2)
    padded = img
    if any(pads):
        widths = [(p, p) for p in pads]
        if mode == "constant":
            padded = xp.pad(img, widths, mode="constant", constant_values=cval)
        else:
            padded = xp.pad(img, widths, mode=_PAD_MODES[mode])
    axes = tuple(range(ndim))
    spectrum = fft.rfftn(padded, axes=axes)
    spectrum *= butterworth_mask(padded.shape, lo, hi, order, 1.0, xp, dtype=img.dtype)
    out = fft.irfftn(spectrum, s=padded.shape, axes=axes)
    if any(pads):
        out = out[tuple(slice(p, p + n) for p, n in zip(pads, img.shape))]
    return xp.ascontiguousarray(out.astype(img.dtype, copy=False))

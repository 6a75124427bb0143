"""How far each neighbourhood kernel reaches, per axis, in voxels.

A volume split into slabs gives the same result as the whole volume when
every slab carries, on each side, a halo at least this wide (and the halo is
cropped afterwards). All parameters here are already in voxels: convert mm
first, as the kernels do.
"""

from __future__ import annotations

from typing import Any

from . import _params as P
from .bandpass import gaussian_sigma_for_cutoff

__all__ = ["FOOTPRINT_OPS", "footprint_radius", "gaussian_radius", "window_radius"]

FOOTPRINT_OPS = ("gaussian", "mean", "median", "laplacian", "gradient", "edge", "bandpass")


def gaussian_radius(sigma: float, truncate: float = 4.0) -> int:
    """Radius of scipy's sampled Gaussian kernel: ``int(truncate * sigma + 0.5)``.

    Parameters
    ----------
    sigma : float
        Standard deviation in voxels, finite and >= 0.
    truncate : float, optional
        Truncation in standard deviations, finite and > 0.

    Returns
    -------
    int
        Voxels reached on each side (0 for ``sigma=0``).

    Examples
    --------
    >>> gaussian_radius(1.0), gaussian_radius(2.5, 3.0)
    (4, 8)
    """
    s = P.nonnegative((P.real(sigma, "sigma"),), "sigma")[0]
    t = P.truncate_of(truncate)
    return int(t * s + 0.5)


def window_radius(size: int) -> int:
    """Voxels reached on either side by a box window of ``size`` voxels.

    Parameters
    ----------
    size : int
        Window size in voxels, >= 1. scipy centres an even window one voxel
        before the middle, so it reaches ``size // 2`` on one side and one
        less on the other; this returns the larger.

    Returns
    -------
    int
        ``size // 2``.

    Examples
    --------
    >>> window_radius(5), window_radius(4)
    (2, 2)
    """
    n = P.integer(size, "size")
    if n < 1:
        raise ValueError(f"size: must be a whole number of voxels >= 1, got {n}")
    return n // 2


def _ndim_of(params: dict[str, Any], *keys: str) -> int:
    """ndim from the first per-axis sequence among ``keys``, else from ``ndim=``."""
    for key in keys:
        value = params.get(key)
        if isinstance(value, (list, tuple)):
            return len(value)
    ndim = params.get("ndim")
    if ndim is None:
        given = " or ".join(keys) if keys else "no per-axis parameter"
        raise ValueError(f"ndim: required when {given} is not a per-axis sequence")
    ndim = P.integer(ndim, "ndim")
    if ndim < 1:
        raise ValueError(f"ndim: must be an integer >= 1, got {ndim}")
    return ndim


def footprint_radius(op: str, **params: Any) -> tuple[int, ...]:
    """Per-axis radius, in voxels, of the neighbourhood a kernel reads.

    Parameters
    ----------
    op : str
        One of ``FOOTPRINT_OPS``. Its parameters, in voxels:

        - ``"gaussian"``: ``sigma``, ``truncate=4.0``
        - ``"mean"``, ``"median"``: ``size`` (whole voxels)
        - ``"laplacian"``: ``sigma=0.0``, ``truncate=4.0`` (1 on an axis
          whose sigma is 0)
        - ``"gradient"``: ``axis`` (1 along it, 0 elsewhere)
        - ``"edge"``: no parameter (1 on every axis)
        - ``"bandpass"``: ``low_cutoff=None``, ``high_cutoff=None``,
          ``method="dog"``, ``truncate=4.0`` (the Gaussian of the larger
          cutoff); ``"butterworth"`` reads the whole image and raises.

        A scalar parameter needs ``ndim=``; a per-axis sequence gives it.
    **params
        The parameters above.

    Returns
    -------
    tuple of int
        Radius per axis.

    Examples
    --------
    >>> footprint_radius("gaussian", sigma=(2.0, 0.5))
    (8, 2)
    >>> footprint_radius("mean", size=3, ndim=3)
    (1, 1, 1)
    >>> footprint_radius("gradient", axis=-1, ndim=2)
    (0, 1)
    """
    if op not in FOOTPRINT_OPS:
        accepted = ", ".join(repr(o) for o in FOOTPRINT_OPS)
        raise ValueError(f"op: must be one of {accepted}, got {op!r}")
    allowed = {
        "gaussian": {"sigma", "truncate"},
        "mean": {"size"},
        "median": {"size"},
        "laplacian": {"sigma", "truncate"},
        "gradient": {"axis"},
        "edge": set(),
        "bandpass": {"low_cutoff", "high_cutoff", "method", "truncate"},
    }[op] | {"ndim"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"{unknown[0]}: not a parameter of {op!r} (accepted: {sorted(allowed)})")
    truncate = params.get("truncate", 4.0)

    if op == "gaussian":
        if "sigma" not in params:
            raise ValueError("sigma: required for 'gaussian'")
        ndim = _ndim_of(params, "sigma")
        sigma = P.per_axis(params["sigma"], ndim, "sigma")
        return tuple(gaussian_radius(s, truncate) for s in sigma)
    if op in ("mean", "median"):
        if "size" not in params:
            raise ValueError(f"size: required for {op!r}")
        ndim = _ndim_of(params, "size")
        sizes = P.window_sizes(params["size"], "size", ndim=ndim, units="voxel", spacing=None)
        return tuple(window_radius(n) for n in sizes)
    if op == "laplacian":
        params.setdefault("sigma", 0.0)
        ndim = _ndim_of(params, "sigma")
        sigma = P.per_axis(params["sigma"], ndim, "sigma")
        return tuple(gaussian_radius(s, truncate) if s > 0 else 1 for s in sigma)
    if op == "gradient":
        ndim = _ndim_of(params, "axis")
        if "axis" not in params:
            raise ValueError("axis: required for 'gradient'")
        axis = P.axis_of(params["axis"], ndim)
        return tuple(1 if a == axis else 0 for a in range(ndim))
    if op == "edge":
        return (1,) * _ndim_of(params)

    method = params.get("method", "dog")
    if method == "butterworth":
        raise ValueError(
            "method: 'butterworth' reads the whole image (FFT), so it has no finite footprint"
        )
    if method != "dog":
        raise ValueError(f"method: must be 'dog' or 'butterworth', got {method!r}")
    cutoffs = [params.get(k) for k in ("low_cutoff", "high_cutoff")]
    given = [c for c in cutoffs if c is not None]
    if not given:
        raise ValueError("low_cutoff: at least one of low_cutoff and high_cutoff must be given")
    ndim = _ndim_of(params, "low_cutoff", "high_cutoff")
    radius = [0] * ndim
    for name, c in zip(("low_cutoff", "high_cutoff"), cutoffs):
        if c is None:
            continue
        wavelengths = P.positive(P.per_axis(c, ndim, name), name)
        sigma = gaussian_sigma_for_cutoff(wavelengths)
        radius = [max(r, gaussian_radius(s, truncate)) for r, s in zip(radius, sigma)]
    return tuple(radius)

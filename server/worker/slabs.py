"""Splitting a volume into slabs with a halo, so that slab-wise processing equals
whole-volume processing. Pure functions of the resolved pipeline and the shape.

A pipeline can be split along an input axis when no operation reduces along it
(a projection), refers to a frame along it (``mask_frame``), wraps around it
(``mode="wrap"``) or reads the whole image (Butterworth, an FFT). The halo is
the sum of every neighbourhood operation's reach along that axis, so that after
all operations the core of each slab is exact; the halo is cropped afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medcompute.kernels import footprint_radius

__all__ = ["Region", "SplitPlan", "plan_split"]


@dataclass(frozen=True)
class Region:
    """One slab: the core rows ``[start, stop)`` it produces, the rows ``[lo, hi)``
    it reads (core plus halo), along ``axis`` of the input and ``out_axis`` of the result."""

    axis: int
    start: int
    stop: int
    lo: int
    hi: int
    out_axis: int


@dataclass(frozen=True)
class SplitPlan:
    axis: int
    out_axis: int
    halo: int
    regions: tuple[Region, ...]


def _reach(op, ndim: int) -> tuple[int, ...] | None:
    """Per-axis reach of one resolved operation; None when it reads the whole image."""
    kw = op.kwargs
    if kw.get("mode") == "wrap" or op.kernel == "package":
        return None          # a package's operation may read the whole image
    if op.kernel in ("gaussian", "laplacian"):
        return footprint_radius(op.kernel, sigma=op.args[0], truncate=kw.get("truncate", 4.0))
    if op.kernel in ("mean", "median"):
        return footprint_radius(op.kernel, size=op.args[0])
    if op.kernel == "gradient":
        return footprint_radius("gradient", axis=op.args[0], ndim=ndim)
    if op.kernel == "edge":
        return footprint_radius("edge", ndim=ndim)
    if op.kernel == "bandpass":
        if kw.get("method") == "butterworth":
            return None
        low, high = op.args
        return footprint_radius("bandpass", low_cutoff=low, high_cutoff=high, method="dog",
                                truncate=kw.get("truncate", 4.0))
    return (0,) * ndim  # pointwise: subtract, add (projection handled by the caller)


def _axes(ops: Sequence, ndim: int):
    """Follow every input axis through the pipeline.

    Returns (allowed input axes, halo per input axis, final position per input axis),
    or None when the pipeline cannot be split at all.
    """
    position: list[int | None] = list(range(ndim))    # input axis -> current axis
    allowed = set(range(ndim))
    halo = [0] * ndim
    current = ndim
    for op in ops:
        if op.kernel == "project":
            axis = op.kwargs["axis"]
            for a, p in enumerate(position):
                if p == axis:
                    allowed.discard(a)
            if op.kwargs.get("thickness") is None:
                position = [None if p == axis else (p - 1 if p is not None and p > axis else p)
                            for p in position]
                current -= 1
            continue
        if op.kernel == "subtract" and op.kwargs.get("mask_frame") is not None:
            allowed -= {a for a, p in enumerate(position) if p == 0}
        reach = _reach(op, current)
        if reach is None:
            return None
        for a, p in enumerate(position):
            if p is not None:
                halo[a] += reach[p]
    return allowed, halo, position


def plan_split(ops: Sequence, shape: Sequence[int], slabs: int) -> SplitPlan | None:
    """A plan to process ``shape`` in ``slabs`` slabs, or None when it cannot or need not be
    split (fewer than 2 slabs fit, or the pipeline reads across the whole image)."""
    if slabs < 2 or len(shape) < 2:
        return None
    followed = _axes(ops, len(shape))
    if followed is None:
        return None
    allowed, halo, position = followed
    candidates = [a for a in sorted(allowed) if position[a] is not None]
    if not candidates:
        return None
    # Axis 0 is contiguous in memory and on disk; otherwise the longest allowed axis.
    axis = 0 if 0 in candidates else max(candidates, key=lambda a: shape[a])
    length, h = shape[axis], halo[axis]
    # A slab thinner than its halo does more work than it saves.
    slabs = min(slabs, length // max(1, 2 * h, 1))
    if slabs < 2:
        return None
    edges = [round(i * length / slabs) for i in range(slabs + 1)]
    regions = tuple(
        Region(axis=axis, start=s, stop=e, lo=max(0, s - h), hi=min(length, e + h),
               out_axis=position[axis])
        for s, e in zip(edges[:-1], edges[1:]) if e > s
    )
    return SplitPlan(axis=axis, out_axis=position[axis], halo=h, regions=regions)

"""The CPU path of the separable filters: OpenCV's SIMD filters on 2-D planes.

Given terms (a coefficient and 1-D weights per axis, see ``_separable``), each
output plane is produced on its own: the slice axis (third from last) as a
weighted sum of the input planes it reaches, or, for a long kernel, as a column
filter over the ``(slices, rows * cols)`` view first; the last two axes by one
OpenCV call per term; the terms combined while the plane is still in cache.
Axes before the last three are column-filtered whole first. Planes and column
blocks are spread over threads (OpenCV and NumPy release the GIL).

scipy.ndimage's boundary modes map exactly onto OpenCV's borders (``nearest``
= REPLICATE, ``reflect`` = REFLECT, ``mirror`` = REFLECT_101, ``constant`` with
0 = CONSTANT), also for kernels longer than the axis; ``wrap`` and another
constant have no OpenCV equivalent and never come here.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import _params as P

__all__ = ["cpu_threads", "groups", "opencv_terms", "set_cpu_threads"]


def groups(terms: list, lead: int) -> dict[tuple, list]:
    """Terms grouped by their weights on the first ``lead`` axes (passes done once)."""
    out: dict[tuple, list] = {}
    for term in terms:
        out.setdefault(term[1][:lead], []).append(term)
    return out


_threads_override: int | None = None
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] | None = None  # (pid, threads) the pool was made for


def set_cpu_threads(threads: int | None) -> None:
    """Set how many threads the CPU path of the separable filters uses.

    Parameters
    ----------
    threads : int or None
        An integer >= 1, or None for the default: ``OMP_NUM_THREADS`` when it
        is set (Dask sets it to 1 in its worker processes, which already run
        one per core), else every core this process may run on.

    Returns
    -------
    None

    Examples
    --------
    >>> set_cpu_threads(1); cpu_threads()
    1
    >>> set_cpu_threads(None)
    """
    global _threads_override
    if threads is None:
        _threads_override = None
        return
    n = P.integer(threads, "threads")
    if n < 1:
        raise ValueError(f"threads: must be an integer >= 1 or None, got {n}")
    _threads_override = n


def cpu_threads() -> int:
    """Threads the CPU path uses now (see :func:`set_cpu_threads`).

    Returns
    -------
    int
        >= 1.

    Examples
    --------
    >>> cpu_threads() >= 1
    True
    """
    if _threads_override is not None:
        return _threads_override
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _run_parallel(fn, items: Sequence[Any], threads: int) -> None:
    """Call ``fn(item)`` for every item, on up to ``threads`` threads."""
    global _pool, _pool_key
    if threads <= 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    key = (os.getpid(), threads)
    with _pool_lock:
        if _pool is None or _pool_key != key:
            # A new pool after a fork (the parent's threads do not exist here)
            # or when the thread count changed.
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="medcompute-cpu")
            _pool_key = key
        pool = _pool
    for future in [pool.submit(fn, item) for item in items]:
        future.result()


def _chunks(n: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges that split ``range(n)`` into about ``parts`` pieces."""
    parts = max(1, min(n, parts))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


# scipy.ndimage's mode -> OpenCV's border (checked equal for every length,
# including kernels longer than the axis, in tests/kernels/test_separable.py).
_BORDERS = {"nearest": "BORDER_REPLICATE", "reflect": "BORDER_REFLECT",
            "mirror": "BORDER_REFLECT_101", "constant": "BORDER_CONSTANT"}
# Source dtypes sepFilter2D reads directly for each compute dtype.
_CV_SOURCES = {
    np.dtype(np.float32): (np.uint8, np.uint16, np.int16, np.float32),
    np.dtype(np.float64): (np.uint8, np.uint16, np.int16, np.float32, np.float64),
}
#: Width of the column blocks of a leading-axis pass (the filter's row ring buffer
#: of ``kernel length * width`` values then stays in a core's cache).
_COLUMN_BLOCK = 8192
_ONE = (1.0,)
#: filter2D correlates directly below this kernel area (above, it may use a DFT).
_DIRECT_TAPS = 50
#: Longest kernel along the slice axis that is summed plane by plane (measured:
#: up to 5 taps the plane sums beat a column pass; beyond, the column pass wins).
_STREAM_TAPS = 5


class _Plane:
    """Correlation of a 2-D plane with ``wy`` along its rows axis and ``wx`` along its
    columns (either None), as the fastest OpenCV call that computes it exactly."""

    def __init__(self, wx, wy, dt):
        if wx is not None and wy is not None:
            self.kx = np.asarray(wx, dtype=dt)
            self.ky = np.asarray(wy, dtype=dt)
            self.kernel = None
        else:
            # One axis only: filter2D with a 1-D kernel makes one pass where
            # sepFilter2D makes two (measured ~1.5x faster). Only for kernels without
            # negative weights: sepFilter2D pairs the taps of (anti)symmetric kernels,
            # which keeps derivatives of flat regions at 0 where plain float32 sums
            # leave rounding noise; and below 50 taps, where filter2D correlates
            # directly (larger kernels may go through a DFT).
            w = np.asarray(wx if wx is not None else wy, dtype=dt)
            shape = (1, -1) if wx is not None else (-1, 1)
            direct = w.size < _DIRECT_TAPS and bool(np.all(w >= 0))
            self.kernel = w.reshape(shape) if direct else None
            self.kx = w if wx is not None else np.asarray(_ONE, dtype=dt)
            self.ky = w if wy is not None else np.asarray(_ONE, dtype=dt)

    def apply(self, cv2, src, dst, ddepth, border) -> None:
        # filter2D has no float32 -> float64 variant; sepFilter2D has.
        if self.kernel is not None and (ddepth != cv2.CV_64F or src.dtype != np.float32):
            cv2.filter2D(src, ddepth, self.kernel, dst=dst, borderType=border)
        else:
            cv2.sepFilter2D(src, ddepth, self.kx, self.ky, dst=dst, borderType=border)


def opencv_terms(image: np.ndarray, terms, combine, mode, dt):
    """Terms on the CPU with OpenCV, streamed plane by plane (see the module's text).

    ``terms`` as ``_separable._terms_of`` normalises them; ``dt`` float32 or
    float64. Returns a new array of ``dt`` and the image's shape.
    """
    import cv2

    border = getattr(cv2, _BORDERS[mode])
    ddepth = cv2.CV_32F if dt == np.float32 else cv2.CV_64F
    threads = cpu_threads()
    shape = image.shape
    ndim = len(shape)
    src = image
    if src.dtype.type not in _CV_SOURCES[dt] or not src.flags.c_contiguous:
        src = np.ascontiguousarray(src, dtype=dt)

    outer = max(0, ndim - 3)
    owned: list[np.ndarray] = []  # arrays made here (a new array of dt each)
    bases = []
    for outer_weights, members in groups(terms, outer).items():
        base = src
        for axis, w in enumerate(outer_weights):
            if w is not None:
                base = _column_pass(cv2, base, w, axis, ddepth, dt, border, threads,
                                    inplace=base is not src)
        if base is not src:
            owned.append(base)
        slices = groups([(c, w[outer:], None) for c, w, _ in members],
                         1 if ndim >= 3 else 0)
        bases.append((base, slices))

    # Every array as (outer planes, slices, rows, cols); a 1-d image is one row.
    if ndim >= 4:
        full = (math.prod(shape[:outer]),) + shape[outer:]
    else:
        full = (1,) * (4 - ndim) + shape
    count, depth = full[0], full[1]
    plane = full[2:]

    def plane_kernels(weights):
        wx = weights[-1]
        wy = weights[-2] if ndim >= 2 else None
        if wx is None and wy is None:
            return None
        return _Plane(wx, wy, dt)

    # (array, slice taps or None, [(coef, plane kernels)]) in the order combined.
    # A short kernel along the slice axis is summed per output plane from the
    # input planes (no intermediate volume); a long one is a column pass first,
    # which OpenCV does faster than the plane sums once there are many taps.
    single = len(terms) == 1 and terms[0][0] == 1.0 and combine == "sum"
    after = None  # a long slice kernel of a single term: a column pass after the planes
    stages = []
    for base, slices in bases:
        for slice_weights, members in slices.items():
            wz = slice_weights[0] if slice_weights and ndim >= 3 else None
            array, taps = base, None
            if (single and wz is not None and len(wz) > _STREAM_TAPS
                    and plane_kernels(members[0][1]) is not None):
                # Measured: planes first (reading the input type), then the column
                # pass in place, is faster than the other way round.
                after = wz
            elif wz is not None and len(wz) > _STREAM_TAPS:
                array = _column_pass(cv2, base, wz, outer, ddepth, dt, border, threads,
                                     inplace=False)
                owned.append(array)
            elif wz is not None:
                taps = _slice_taps(wz, depth, mode)
            stages.append((array, taps, [(c, plane_kernels(w)) for c, w, _ in members]))
    if single and stages[0][1] is None and stages[0][2][0][1] is None:
        # Nothing left to correlate (column passes only, or none at all).
        array = stages[0][0]
        return (array if array is not src else src.astype(dt, copy=True)).reshape(shape)
    # The result may overwrite an array made here that is read only at the plane
    # being written: plane p is written after every term has read plane p.
    reusable = [a for a in owned
                if all(taps is None for array, taps, _ in stages if array is a)]
    out = reusable[0].reshape(full) if reusable else np.empty(full, dt)
    stages = [(array.reshape(full), taps, members) for array, taps, members in stages]

    streamed = any(taps is not None for _, taps, _ in stages)

    def run(bounds):
        zbuf, pair = _scratch(plane, dt, 0, 2) if streamed else (None, None)
        acc, scratch = _scratch(plane, dt, 2, 2) if not single else (None, None)
        for index in range(*bounds):
            q, s = divmod(index, depth)
            target = out[q, s]
            jobs = 0
            for view, taps, members in stages:
                if taps is None:
                    zp = view[q, s]
                else:
                    dst = target if single and members[0][1] is None else zbuf
                    zp = _weighted_sum(cv2, view[q], taps[s], dst, pair, dt)
                for coef, kernels in members:
                    last = jobs == len(terms) - 1
                    dst = target if single else acc if jobs == 0 else scratch
                    if kernels is not None:
                        kernels.apply(cv2, zp, dst, ddepth, border)
                    elif zp is not dst:
                        np.copyto(dst, zp, casting="unsafe")
                    if not single:
                        if coef != 1.0:
                            np.multiply(dst, coef, out=dst)
                        if combine == "hypot":
                            np.multiply(dst, dst, out=dst)
                        if jobs:
                            np.add(acc, scratch, out=acc if not last or combine == "hypot"
                                   else target)
                        elif last and combine == "sum":
                            np.copyto(target, acc)
                        if last and combine == "hypot":
                            np.sqrt(acc, out=target)
                    jobs += 1

    _run_parallel(run, _chunks(count * depth, 4 * threads), threads)
    if after is not None:
        _column_pass(cv2, out, after, 1, ddepth, dt, border, threads, inplace=True)
    return out.reshape(shape)


_local = threading.local()
_SCRATCH_KEEP = 8 << 20


def _scratch(shape: tuple[int, ...], dt, first: int, count: int) -> list[np.ndarray]:
    """Scratch planes ``first .. first + count - 1`` of this thread, kept between calls.

    Fresh memory would cost a page fault per page on every call, as much as
    filtering a small plane. Planes larger than ``_SCRATCH_KEEP`` bytes are not
    kept.
    """
    if math.prod(shape) * np.dtype(dt).itemsize > _SCRATCH_KEEP:
        return [np.empty(shape, dt) for _ in range(count)]
    key = (shape, np.dtype(dt).str)
    if getattr(_local, "key", None) != key:
        _local.key = key
        _local.planes = []
    planes = _local.planes
    while len(planes) < first + count:
        planes.append(np.empty(shape, dt))
    return planes[first:first + count]


def _slice_taps(weights, depth: int, mode: str) -> list[list[tuple[int, float]]]:
    """For each output slice, the input slices it reads and their summed weights."""
    n = len(weights)
    taps = []
    for s in range(depth):
        merged: dict[int, float] = {}
        for j, w in enumerate(weights):
            i = _border_index(s + j - n // 2, depth, mode)
            if i is not None:
                merged[i] = merged.get(i, 0.0) + w
        taps.append([(i, w) for i, w in sorted(merged.items()) if w != 0.0])
    return taps


def _border_index(i: int, n: int, mode: str) -> int | None:
    """The index scipy.ndimage reads for position ``i`` of an axis of length ``n``."""
    if 0 <= i < n:
        return i
    if mode == "constant":
        return None
    if mode == "nearest":
        return 0 if i < 0 else n - 1
    if mode == "reflect":  # d c b a | a b c d | d c b a
        i %= 2 * n
        return i if i < n else 2 * n - 1 - i
    # mirror: d c b | a b c d | c b a
    if n == 1:
        return 0
    i %= 2 * n - 2
    return i if i < n else 2 * n - 2 - i


def _weighted_sum(cv2, planes: np.ndarray, taps, dst: np.ndarray, pair: np.ndarray, dt):
    """``sum(w * planes[i] for i, w in taps)`` into ``dst`` (float), pairing equal weights."""
    if not taps:
        dst.fill(0.0)
        return dst
    ddepth = cv2.CV_32F if dt == np.float32 else cv2.CV_64F
    pending = list(taps)
    first = True
    while pending:
        i, w = pending.pop(0)
        # A later slice with the same weight (symmetric kernels) or the opposite one
        # (antisymmetric) is added or subtracted first: one product for two slices.
        match = next((k for k, (_, v) in enumerate(pending) if v == w or v == -w), None)
        if match is not None:
            j, v = pending.pop(match)
            op = cv2.add if v == w else cv2.subtract
            if first and w == 1.0:
                op(planes[i], planes[j], dst=dst, dtype=ddepth)
            else:
                op(planes[i], planes[j], dst=pair, dtype=ddepth)
                _accumulate(cv2, dst, pair, w, first)
        elif first:
            np.multiply(planes[i], w, out=dst, dtype=dt, casting="unsafe")
        elif planes.dtype == dt:
            cv2.scaleAdd(planes[i], w, dst, dst=dst)
        else:
            np.multiply(planes[i], w, out=pair, dtype=dt, casting="unsafe")
            np.add(dst, pair, out=dst)
        first = False
    return dst


def _accumulate(cv2, dst: np.ndarray, term: np.ndarray, w: float, first: bool) -> None:
    """``dst = w * term`` when first, else ``dst += w * term``."""
    if first:
        np.multiply(term, w, out=dst)
    elif w == 1.0:
        np.add(dst, term, out=dst)
    elif w == -1.0:
        np.subtract(dst, term, out=dst)
    else:
        cv2.scaleAdd(term, w, dst, dst=dst)


def _column_pass(cv2, array: np.ndarray, weights, axis: int, ddepth: int, dt, border: int,
                 threads: int, *, inplace: bool) -> np.ndarray:
    """Correlate along ``axis`` as a column filter of the ``(length, rest)`` planes."""
    shape = array.shape
    outer = math.prod(shape[:axis])
    length = shape[axis]
    inner = math.prod(shape[axis + 1:])
    src = array.reshape(outer, length, inner)
    out = src if inplace else np.empty((outer, length, inner), dt)
    column = _Plane(None, weights, dt)
    blocks = [(o, a, b) for o in range(outer)
              for a, b in _chunks(inner, max(1, -(-inner // _COLUMN_BLOCK)))]

    def run(block):
        o, a, b = block
        column.apply(cv2, src[o, :, a:b], out[o, :, a:b], ddepth, border)

    _run_parallel(run, blocks, threads)
    return out.reshape(shape)

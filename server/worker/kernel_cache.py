"""Compiled GPU kernels: compiled before they are timed, and the common ones at start.

CuPy builds one CUDA kernel per filter configuration (mode, weights' length, offsets,
``cval``, dtypes) the first time it is used in a process, and keeps it in memory and
on disk (``CUPY_CACHE_DIR``: the cluster sets it under the data directory, so a
restarted worker reads its kernels back instead of compiling them). A compile takes
seconds; it must not be billed as the job's GPU time. So, on a GPU:

- :func:`prepare` runs a job's pipeline once on a small corner of its inputs before
  the timed run, the first time that pipeline is seen in this process: its kernels
  compile there, and the seconds are reported apart (``compile_seconds``);
- :func:`warm_up` compiles the common settings (:data:`COMMON`) when the worker starts,
  in a thread of its own, so that the first jobs find them; :func:`state` says how far
  it got and what failed (a GPU without NVRTC cannot compile at all: health says so).

What a caller can make the GPU compile is bounded by the request's validation: radii
up to ``MAX_REACH`` voxels and ``cval`` a whole number in the voxel types' range.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from medcompute.server.errors import InvalidArgument

__all__ = ["CACHE_ENV", "COMMON", "PROBE_EDGE", "prepare", "state", "warm_up", "warming"]

log = logging.getLogger(__name__)

#: The environment variable CuPy reads for its on-disk kernel cache.
CACHE_ENV = "CUPY_CACHE_DIR"
#: Voxels per axis of the corner a pipeline is first run on (enough for every window
#: to be built; the kernels' source does not depend on the image's size).
PROBE_EDGE = 8

#: Settings compiled at a GPU worker's start: (kernel, args, kwargs) as the resolver
#: gives them. Gaussians of every radius up to 12 voxels at the default edge mode
#: (radius = int(4 sigma + 0.5)), the common box and median windows, the derivatives.
COMMON: tuple = (
    *(("gaussian", ((r / 4.0,) * 3,), {"truncate": 4.0, "mode": "nearest", "cval": 0.0})
      for r in range(1, 13)),
    *(("mean", ((s,) * 3,), {"mode": "nearest", "cval": 0.0}) for s in (3, 5, 7)),
    ("median", ((3, 3, 3),), {"mode": "nearest", "cval": 0.0}),
    ("edge", (), {}),
    ("laplacian", ((0.0, 0.0, 0.0),), {"truncate": 4.0, "mode": "nearest", "cval": 0.0}),
    ("gradient", (), {"axis": 0}),
)

_seen: set = set()
_lock = threading.Lock()
_thread = threading.local()


def warming() -> bool:
    """Whether this thread is compiling the common settings (the warm-up)."""
    return getattr(_thread, "warming", False)
_state: dict = {"state": "not started", "compiled": 0, "seconds": 0.0, "error": ""}


def _key(spec, backend, host) -> tuple:
    ops = tuple((op.kernel, repr(op.args), repr(sorted(op.kwargs.items())), op.operand)
                for op in spec.ops)
    return (backend.device, ops, tuple((a.ndim, a.dtype.str) for a in host),
            spec.compute_dtype, spec.output_dtype)


def _corner(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array[tuple(slice(0, PROBE_EDGE) for _ in array.shape)])


def prepare(spec, backend, host: list[np.ndarray], run_pipeline) -> float | None:
    """Compile ``spec``'s kernels on ``backend`` (``run_pipeline``, tasks.py's, on a
    corner of the inputs) unless this process already ran that pipeline. Returns the seconds it took
    (0.0 when already compiled), or None when the corner cannot stand in for the image
    (a projection thicker than it, a mask frame beyond it): the kernels then compile
    inside the job's run."""
    from medcompute import kernels

    key = _key(spec, backend, host)
    with _lock:
        if key in _seen:
            return 0.0
    t0 = time.perf_counter()
    try:
        probe = [backend.asarray(_corner(a)) for a in host]
        result = run_pipeline(probe[0], probe[1:], spec.ops, compute_dtype=spec.compute_dtype)
        kernels.saturating_cast(result, np.dtype(spec.output_dtype))
        backend.synchronize()
    except (ValueError, InvalidArgument):
        return None
    seconds = time.perf_counter() - t0
    with _lock:
        _seen.add(key)
    return seconds


def _warm(backend) -> None:
    from medcompute import kernels

    _thread.warming = True
    _state.update(state="running")
    t0 = time.perf_counter()
    try:
        for dtype in ("<i2", "<f4"):
            image = backend.asarray(np.zeros((PROBE_EDGE,) * 3, np.dtype(dtype)))
            for kernel, args, kwargs in COMMON:
                getattr(kernels, kernel)(image, *args, dtype=np.float32, **kwargs)
                _state["compiled"] += 1
        backend.synchronize()
    except Exception as exc:  # reported by health: no NVRTC, a broken device
        _state.update(state="failed", error=f"{type(exc).__name__}: {exc}",
                      seconds=time.perf_counter() - t0)
        log.error("compiling the common GPU kernels failed on %s: %s: %s", backend.device,
                  type(exc).__name__, exc)
        return
    _state.update(state="done", seconds=time.perf_counter() - t0)
    log.info("compiled %d common GPU kernel settings on %s in %.1f s", _state["compiled"],
             backend.device, _state["seconds"])


def warm_up(backend, *, wait: bool = False) -> dict:
    """Start compiling :data:`COMMON` on ``backend`` (once per process); ``wait``: return
    only when done. Returns :func:`state`."""
    with _lock:
        start = _state["state"] == "not started"
        if start:
            _state["state"] = "starting"
            thread = threading.Thread(target=_warm, args=(backend,), daemon=True,
                                      name="medcompute-kernel-warm-up")
            _state["thread"] = thread
            thread.start()
    if wait:
        _state["thread"].join()
    return state()


def state() -> dict:
    """How far the warm-up got: ``state`` (not started, starting, running, done, failed),
    kernel settings ``compiled``, ``seconds``, and the ``error`` that stopped it."""
    return {k: v for k, v in _state.items() if k != "thread"}

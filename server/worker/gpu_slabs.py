"""A GPU job's slabs in one task on its GPU worker, double-buffered.

A volume too large for one pass on a GPU is cut into slabs (dispatch/placement.py). One
task per slab would upload, compute and download each slab one after the other, with
the GPU idle during every copy. Here a GPU worker takes a run of consecutive slabs in
one task and sends them through :func:`medcompute.kernels.streams.run_slabs`: while
slab *k* computes, slab *k+1* uploads and slab *k-1* downloads (two CUDA streams,
pinned host buffers), and the host reads the next slab from its file meanwhile. Each
slab's result is the same, bit for bit, as when it runs alone.

Metering per slab from device events on its stream: ``gpu_seconds`` its kernels,
``transfer_seconds`` its upload and download; the kernels the pipeline needs are
compiled before the first slab (``compile_seconds``, on the first slab's result); the
task's energy is reported on its first slab's result.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from medcompute.server.worker import cancel, kernel_cache, tasks
from medcompute.server.worker.devices import device_backend, gpu_failure, meter, worker_address
from medcompute.server.worker.slabs import Region
from medcompute.server.worker.specs import TaskResult, TaskSpec

__all__ = ["run_slabs", "slab_groups"]


def slab_groups(regions: tuple[Region, ...], workers: int) -> list[tuple[Region, ...]]:
    """``regions`` in at most ``workers`` runs of consecutive slabs, as even as can be
    (one task per GPU worker).

    >>> slab_groups(tuple(range(5)), 2)
    [(0, 1), (2, 3, 4)]
    """
    count = max(1, min(workers, len(regions)))
    bounds = [len(regions) * i // count for i in range(count + 1)]
    return [tuple(regions[bounds[i]:bounds[i + 1]]) for i in range(count)]


@tasks._reported
def run_slabs(spec: TaskSpec, regions: tuple[Region, ...], *, overlap: bool = True
              ) -> list[TaskResult]:
    """Run the slabs ``regions`` of one job on this GPU worker and write each one's core
    into the job's raw result; one :class:`TaskResult` per slab, in order. ``overlap``
    False: one slab at a time (the sequential path, for comparison)."""
    tasks._running.job = spec.job_id
    try:
        with cancel.running(spec.job_id):
            return _run(spec, regions, overlap)
    finally:
        tasks._running.job = None


def _run(spec: TaskSpec, regions: tuple[Region, ...], overlap: bool) -> list[TaskResult]:
    from medcompute import kernels
    from medcompute.kernels.streams import run_slabs as pipelined

    worker = worker_address()
    tasks._announce(spec.job_id, worker=worker, slab=regions[0].start)
    backend = device_backend(spec.device)
    ndim = len(spec.inputs[0].shape)
    results: list[TaskResult] = []
    compiled: list = []
    target: list = []
    energy = meter(backend)

    def load(k: int) -> list[np.ndarray]:
        if tasks._cancelled():
            raise tasks.TaskCancelled(f"cancelled before slab {k}")
        host = [tasks._load_region(s, regions[k], ndim) for s in spec.inputs]
        if k == 0 and backend.name != "numpy":
            compiled.append(kernel_cache.prepare(spec, backend, host, tasks.run_pipeline))
        return host

    def compute(device: list):
        result = tasks.run_pipeline(device[0], device[1:], spec.ops,
                                    compute_dtype=spec.compute_dtype)
        return kernels.saturating_cast(result, np.dtype(spec.output_dtype))

    def store(k: int, out: np.ndarray, times) -> None:
        r = regions[k]
        if not target:
            target.append(np.memmap(spec.out_path, dtype=out.dtype, mode="r+",
                                    shape=spec.out_shape))
        core = tasks._take(out, r.out_axis, r.start - r.lo, r.stop - r.lo)
        tasks._take(target[0], r.out_axis, r.start, r.stop)[...] = core
        results.append(TaskResult(
            out_path=spec.out_path, shape=tuple(core.shape), dtype=core.dtype.str,
            file_sizes=(), nbytes=core.nbytes, started_at=started_at,
            finished_at=time.time(), compute_seconds=times.upload + times.kernel,
            backend=backend.name, device=backend.device, worker=worker, crc32=0,
            versions=tasks.versions(), gpu_seconds=times.kernel,
            transfer_seconds=times.upload + times.download,
            compile_seconds=compiled[0] if k == 0 and compiled else None))

    started_at = time.time()
    try:
        pipelined(backend, len(regions), load, compute, store, overlap=overlap)
        if target:
            target[0].flush()
        from medcompute.server.worker.gpu_meter import free_memory

        device_free = free_memory()
    except Exception as exc:
        failure = gpu_failure(exc, backend)
        if failure is not None:
            raise failure from None
        raise
    finally:
        target.clear()
    if results:
        results[0] = replace(results[0], energy_joules=energy.joules(),
                             energy_absent=energy.absent)
        results[-1] = replace(results[-1], device_free=device_free)
    return results

"""Placement decisions, apart from the Dask calls that carry them out: which kind of
worker a job runs on, how many slabs a large volume is cut into, and whether a job goes
in a batch, as a task of its own, or in slabs. Pure functions of the cluster's view and
the job's size, unit-tested without a cluster."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from medcompute.server.errors import FailedPrecondition

__all__ = ["BYTES_PER_VOXEL", "GPU_HOST_BYTES_PER_VOXEL", "MEDIAN_GPU_WINDOW", "WorkerView",
           "device_need", "gpu_unsuited", "job_need", "place", "require_gpu", "route", "slab_count"]

#: Bytes of working memory per voxel a job needs on a device (input, result, temporaries).
BYTES_PER_VOXEL = 16
#: Bytes of host memory per voxel a GPU worker holds during a job: the loaded input (up
#: to 4 bytes a voxel), CuPy's pinned staging copy of it (kept by the pinned pool) and
#: the float32 result copied back.
GPU_HOST_BYTES_PER_VOXEL = 12


#: The largest median window (voxels) placed on a GPU. cupyx's median sorts every window
#: on its own: larger windows take its slow path (minutes for a volume, with the GPU held
#: and cancellation unable to stop a running kernel), and the largest the API allows do
#: not launch at all. They run on CPU workers, in slabs, cancellable between slabs.
MEDIAN_GPU_WINDOW = 125


def device_need(ops, shape, *, input_itemsize: int = 4, compute_dtype: str = "float32",
                operands: int = 0) -> int:
    """Bytes a job needs on a GPU: its inputs there (the image and ``operands`` of its
    shape) and the largest working memory of its operations, each from the kernel's own
    estimate (kernels.working_memory, checked against what the kernel allocates in
    tests/kernels/test_memory.py), on the input's shape (a projection's smaller result
    taken at the input's size: an over-estimate). BYTES_PER_VOXEL where an estimate is
    missing."""
    from medcompute import kernels

    voxels = math.prod(shape)
    peak = 0
    for op in ops:
        try:
            need = kernels.working_memory(op.kernel, shape, *op.args, dtype=compute_dtype,
                                          **op.kwargs)
        except (ValueError, TypeError):
            need = voxels * BYTES_PER_VOXEL
        peak = max(peak, need)
    return voxels * input_itemsize * (1 + operands) + peak


def job_need(spec) -> int | None:
    """:func:`device_need` of a TaskSpec, or of one image of a StackSpec (the device
    holds one at a time); None where the input's shape is not known (a DICOM input:
    placement then counts BYTES_PER_VOXEL a voxel)."""
    import numpy as np

    stack = getattr(spec, "stack", None)
    if stack is not None:
        image, shape, operands = stack, tuple(stack.shape[1:]), len(spec.operands)
    else:
        image = spec.inputs[0] if spec.inputs else None
        shape, operands = (tuple(image.shape) if image else ()), len(spec.inputs) - 1
    if image is None or not shape or image.encoding != "raw":
        return None
    return device_need(spec.ops, shape, input_itemsize=np.dtype(image.dtype).itemsize,
                       compute_dtype=spec.compute_dtype, operands=operands)


def gpu_unsuited(ops) -> str:
    """Why these resolved operations should not run on a GPU ("" when they may)."""
    for i, op in enumerate(ops):
        if op.kernel == "median" and op.args:
            window = math.prod(op.args[0])
            if window > MEDIAN_GPU_WINDOW:
                return (f"pipeline[{i}] is a median of {window} voxels, more than the "
                        f"{MEDIAN_GPU_WINDOW} a GPU worker takes: placed on CPU")
    return ""


@dataclass(frozen=True)
class WorkerView:
    """The cluster's workers by kind, as the scheduler reports them."""

    cpu: tuple[str, ...] = ()
    gpu: tuple[str, ...] = ()
    memory_limit: dict = field(default_factory=dict)
    gpu_memory: dict = field(default_factory=dict)


def require_gpu(view: WorkerView, *, allow_fallback: bool) -> None:
    """FAILED_PRECONDITION when a GPU is required and the cluster has none."""
    if not allow_fallback and not view.gpu:
        raise FailedPrecondition(
            "device=gpu was asked for but this cluster has no GPU worker; use device=auto "
            "or device=cpu, or allow fallback to CPU", "header.device")


def place(view: WorkerView, device: str, *, allow_fallback: bool,
          voxels: int, unsuited: str = "", need: int | None = None) -> tuple[str, str]:
    """(kind, fallback reason) for a job asking for ``device`` (auto, gpu or cpu).

    ``auto`` takes a GPU worker when one exists and the job's working memory fits the
    largest GPU's free memory (``need`` bytes, from :func:`device_need`; else
    BYTES_PER_VOXEL a voxel); ``gpu`` on a cluster without one runs on CPU with the
    reason when the caller allowed fallback, and is refused otherwise. A job whose
    operations do not suit a GPU (``unsuited``, from :func:`gpu_unsuited`) is placed on
    CPU: a placement, not a fallback (the caller reports ``unsuited`` as it)."""
    if device == "cpu":
        return "cpu", ""
    if not view.gpu:
        if device == "gpu":
            require_gpu(view, allow_fallback=allow_fallback)
            return "cpu", "no GPU worker in the cluster"
        return "cpu", ""
    if unsuited:
        return "cpu", ""
    if device == "auto":
        need = voxels * BYTES_PER_VOXEL if need is None else need
        if need > max(view.gpu_memory.values(), default=0):
            return "cpu", ""
    return "gpu", ""


def slab_count(view: WorkerView, voxels: int, *, split_bytes: int, kind: str = "cpu",
               need: int | None = None) -> int:
    """Slabs for a volume of ``voxels``: at least one per CPU worker (else per GPU
    worker), enough that each slab's working memory is under half the smallest CPU
    worker's memory limit, and enough that none holds more than ``split_bytes`` of
    float32. On the GPU (``kind="gpu"``): enough that each slab's working memory is
    under half the smallest GPU's free memory, and its host memory (input, pinned
    staging copy, result) under half the smallest GPU worker's memory limit (``need``:
    the whole job's device bytes, from :func:`device_need`)."""
    if kind == "gpu":
        need = voxels * BYTES_PER_VOXEL if need is None else need
        free = [m for a, m in view.gpu_memory.items() if a in view.gpu and m]
        hosts = [m for a, m in view.memory_limit.items() if a in view.gpu and m]
        by_device = math.ceil(need / (0.5 * min(free))) if free else 1
        by_host = math.ceil(voxels * GPU_HOST_BYTES_PER_VOXEL / (0.5 * min(hosts))) \
            if hosts else 1
        return max(1, by_device, by_host)
    need = voxels * BYTES_PER_VOXEL
    workers = max(1, len(view.cpu) or len(view.gpu))
    limits = [m for a, m in view.memory_limit.items() if a in view.cpu and m]
    by_memory = math.ceil(need / (0.5 * min(limits))) if limits else 1
    by_size = math.ceil(voxels * 4 / split_bytes)
    return max(workers, by_memory, by_size)


def route(kind: str, voxels: int, *, splittable: bool, split_bytes: int,
          batch_bytes: int, device_bytes: int | None = None,
          host_bytes: int | None = None, need: int | None = None) -> str:
    """How a job of ``voxels`` (float32 work) goes to its workers: "split" (CPU jobs over
    ``split_bytes``; GPU jobs whose working memory is over half the GPU's free memory
    ``device_bytes``, or whose host memory is over half the GPU worker's memory limit
    ``host_bytes``; when their output shape is known; the slab planner may still
    decline), "batch" (up to ``batch_bytes``: coalesced with other small jobs), or
    "task" (a task of its own)."""
    nbytes = voxels * 4
    if kind == "cpu" and splittable and nbytes > split_bytes:
        return "split"
    need = voxels * BYTES_PER_VOXEL if need is None else need
    if kind == "gpu" and splittable and (
            (device_bytes and need > 0.5 * device_bytes)
            or (host_bytes and voxels * GPU_HOST_BYTES_PER_VOXEL > 0.5 * host_bytes)):
        return "split"
    return "batch" if nbytes <= batch_bytes else "task"

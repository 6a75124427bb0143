"""A large job split into slabs with a halo (worker/slabs.py): its inputs decoded where
the slabs cannot read them in parts, one task per slab (on a GPU, a run of slabs per
GPU worker, double-buffered), the slabs' results joined into one, a DICOM result written
in parts (encoding.py)."""

from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass, replace

from medcompute.proto import wire
from medcompute.server.dispatch.encoding import encode_parts, join
from medcompute.server.dispatch.placement import WorkerView, job_need, slab_count
from medcompute.server.worker.gpu_slabs import run_slabs, slab_groups
from medcompute.server.worker.slabs import plan_split
from medcompute.server.worker.tasks import TaskResult, TaskSpec, materialize, run_task

__all__ = ["Execution", "run_split", "job_key"]


@dataclass
class Execution:
    """How a job ran: its (merged) result, and where and how it was placed."""

    result: TaskResult
    fallback_reason: str = ""
    slabs: int = 1
    workers: tuple[str, ...] = ()
    #: Why it was placed on CPU although a GPU was asked for or possible ("" otherwise).
    placement: str = ""


def job_key(spec: TaskSpec, part: str = "") -> str:
    """The Dask key of a job's task (``part``: of one of its tasks): a GPU attempt's keys
    differ from those of its CPU re-run, which may follow while the GPU attempt's
    cancelled tasks are still being released."""
    return f"job-{spec.job_id}{'-gpu' if spec.device == 'gpu' else ''}{part}"


async def run_split(d, spec: TaskSpec, voxels, out_shape, out_dtype) -> Execution | None:
    """Run ``spec`` on dispatcher ``d`` split in slabs (slabs.py) when it is large enough;
    None when it is not (it then runs whole)."""
    shape = spec.inputs[0].shape
    plan = plan_split(spec.ops, shape, slab_count(d._view or WorkerView(), voxels,
                                                  split_bytes=d.config.split_bytes,
                                                  kind=spec.device,
                                                  need=job_need(spec)))
    if plan is None:
        return None
    inputs = list(spec.inputs)
    image_ndim = len(shape)
    # Slabs read a stored image's voxel blob in parts when the split is along its first
    # axis (worker/tasks.py _load_region); others are decoded into a raw file first.
    decode = [i for i, s in enumerate(inputs) if s.encoding != "raw" and not (
        s.voxels and all(r.axis - (image_ndim - len(s.shape)) <= 0
                         for r in plan.regions))]
    if decode:
        futures = [d.submit(materialize, inputs[i], f"{spec.out_path}.in{i}.raw",
                               kind="cpu", key=job_key(spec, f"-decode{i}"))
                   for i in decode]
        for i, decoded in zip(decode, await d._await(futures)):
            inputs[i] = decoded
    dicom_out = spec.output_format != "raw"
    raw_path = spec.out_path + ".raw" if dicom_out else spec.out_path
    itemsize = wire.DTYPES[wire.dtype_to_proto(out_dtype)].itemsize
    with open(raw_path, "wb") as f:
        f.truncate(math.prod(out_shape) * itemsize)
    slab_spec = replace(spec, inputs=tuple(inputs), out_path=raw_path, output_format="raw",
                        out_shape=tuple(out_shape))
    if spec.device == "gpu":    # a run of slabs per GPU worker, double-buffered
        futures = [d.submit(run_slabs, slab_spec, group, kind="gpu",
                               key=job_key(spec, f"-slabs{k}")) for k, group in
                   enumerate(slab_groups(plan.regions,
                                         len((d._view or WorkerView()).gpu)))]
    else:
        futures = [d.submit(run_task, replace(slab_spec, region=r), kind=spec.device,
                               key=job_key(spec, f"-slab{k}"))
                   for k, r in enumerate(plan.regions)]
    try:
        parts = await d._gather(futures, spec.device,
                                   d.progress_hooks.get(spec.job_id))
        if spec.device == "gpu":
            parts = [part for group in parts for part in group]
        d._learn_free_memory(parts)
    finally:
        for i in decode:
            if os.path.exists(inputs[i].path):
                os.unlink(inputs[i].path)
    if dicom_out:
        merged = await encode_parts(d, spec, tuple(out_shape), parts[0].dtype)
    else:
        crc = await asyncio.to_thread(join, [raw_path])
        merged = replace(parts[0], out_path=raw_path, shape=tuple(out_shape),
                         nbytes=math.prod(out_shape) * itemsize, crc32=crc,
                         file_sizes=())
    def total(name):
        values = [getattr(p, name) for p in parts if getattr(p, name) is not None]
        return sum(values) if values else None

    merged = replace(
        merged, started_at=min(p.started_at for p in parts),
        finished_at=max(p.finished_at for p in parts),
        compute_seconds=sum(p.compute_seconds for p in parts),
        backend=parts[0].backend, device=parts[0].device, worker=parts[0].worker,
        gpu_seconds=total("gpu_seconds"), transfer_seconds=total("transfer_seconds"),
        compile_seconds=total("compile_seconds"))
    workers = tuple(dict.fromkeys(p.worker for p in parts))
    return Execution(merged, slabs=len(parts), workers=workers)

"""Stacked execution: images of one shape, dtype and pipeline computed as one array.

A batch's images (batch.py), or concurrent single-image calls (batcher.py), that share
their geometry and their pipeline become one array with a new leading axis, sent to one
worker in one call (:func:`~medcompute.server.worker.tasks.run_stack`). The worker
runs the pipeline image by image over that axis, with the very calls an image alone
gets, so each result equals the one-by-one result bit for bit; the result comes back as
one array per image. On the server the work per image is copying its bytes into the
stack. A batch whose images are all in a client's shared-memory region (a batch over
shared memory) sends no bytes: the worker reads each image from the region and writes
each result into it.

Each image keeps its own job, result, applied-operations record and usage line. For a
batch the ends of a stack's jobs are recorded in one transaction
(:meth:`~medcompute.server.jobs.pipeline.Pipeline.finish_many`). An image whose
computation fails fails alone; the others of its stack still succeed.

Only images that travel in memory are stacked: RAW inline images whose result is RAW and
not kept in the store, with no operands but stored ones (shared by every image).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from medcompute.server.errors import FailedPrecondition
from medcompute.server.jobs import derived, regions
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.metering import usage_record
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.jobs.results import JobResult
from medcompute.server.worker.tasks import StackSpec, TaskResult

__all__ = ["Member", "stack_key", "work_bytes", "compute", "run"]


@dataclass
class Member:
    """One image of a stack: its job (in the catalog), its request and its bytes (None:
    they are in the request's input region)."""

    job: jobs.Job
    request: ProcessRequest
    data: bytes | bytearray | memoryview | None
    bytes_in: int = 0


def work_bytes(request: ProcessRequest) -> int:
    """An image's working size in a stack (its voxels at the compute dtype, at least
    float32, as the dispatcher counts a job)."""
    e = request.expected[0]
    width = max(4, np.dtype(request.compute_dtype).itemsize, e.dtype.itemsize)
    return math.prod(e.shape) * width


def stack_key(service, request: ProcessRequest) -> tuple | None:
    """What requests must share for their images to be stacked together (None: this one
    is computed alone). ``service``: the :class:`~medcompute.server.jobs.pipeline.Pipeline`."""
    config = service.config
    if config.stack_bytes <= 0 or not config.memory_inputs:
        return None
    e = request.expected[0]
    if e.stored is not None or e.encoding != "raw" or e.dtype is None:
        return None
    if request.store_result or request.output_format != "raw":
        return None
    if any(o.stored is None for o in request.expected[1:]):
        return None                 # an inline operand belongs to its own request
    if work_bytes(request) > min(config.batch_bytes, config.split_bytes, config.stack_bytes):
        return None                 # a job that the dispatcher would not keep small
    return (tuple(e.shape), e.dtype.str, e.spacing,
            tuple(op.SerializeToString(deterministic=True) for op in request.pipeline),
            tuple(derived.input_ref(o) for o in request.expected[1:]),
            request.device, request.allow_fallback, request.compute_dtype,
            request.output_dtype)


async def compute(service, members: list[Member]) -> list[JobResult | BaseException]:
    """Run the members' pipeline on their stack in one worker call; per member its
    result (not recorded yet) or the error it failed with. Raises what fails the whole
    stack (its pipeline does not fit the geometry, the cluster went away)."""
    first = members[0].request
    n_images = len(first.expected)
    others = [None] * (n_images - 1)
    staged = await service.stage(first, [None, *others], [members[0].data, *others])
    e = first.expected[0]
    shape = tuple(e.shape)
    base = dataclasses.replace(staged.inputs[0], path="", shm="", offset=0, data=None)
    if all(m.data is None for m in members):
        # Every image is in a client's shared-memory region (a batch over shared memory):
        # the worker reads each there; nothing is copied here.
        stacked = dataclasses.replace(base, shape=(len(members), *shape))
        images = tuple(dataclasses.replace(base, shm=m.request.input_region.name,
                                           offset=m.request.input_region.offset)
                       for m in members)
    else:
        stack = np.empty((len(members), *shape), e.dtype)
        for k, member in enumerate(members):      # the per-image work: copying its bytes
            if member.data is None:               # from the client's shared-memory region
                regions.read_into(member.request.input_region, stack[k])
            else:
                stack[k] = np.frombuffer(member.data, e.dtype, math.prod(shape)).reshape(shape)
        stacked = dataclasses.replace(base, shape=stack.shape,
                                      data=stack.reshape(-1).view(np.uint8))
        images = ()
    outs = tuple(None if m.request.output_region is None else
                 (m.request.output_region.name, m.request.output_region.offset)
                 for m in members)
    spec = StackSpec(
        job_ids=tuple(m.job.id for m in members), stack=stacked,
        operands=staged.inputs[1:], ops=tuple(staged.ops),
        compute_dtype=first.compute_dtype, output_dtype=first.output_dtype,
        images=images, out_regions=outs if any(outs) else ())
    received = time.time()
    started = [jobs.apply(m.job, jobs.InputsReceived(received)) for m in members]
    result, reason = await service.dispatcher.run_stack(
        spec, device=first.device, allow_fallback=first.allow_fallback,
        voxels=math.prod(stacked.shape))
    voxels = sum(math.prod(g.shape) for g in staged.geoms)
    energy = (result.energy_joules / len(members) if result.energy_joules is not None
              else None)
    outcomes: list[JobResult | BaseException] = []
    for k, (member, job) in enumerate(zip(members, started)):
        if result.errors[k] is not None:
            outcomes.append(result.errors[k])
            continue
        data = result.out[k]                # None: written into the member's region
        out_shape, dtype = tuple(result.shapes[k]), np.dtype(result.dtype)
        task = TaskResult(
            out_path="", shape=out_shape, dtype=dtype.str, file_sizes=(),
            nbytes=math.prod(out_shape) * dtype.itemsize, started_at=result.started_at,
            finished_at=result.finished_at,
            compute_seconds=result.seconds[k], backend=result.backend, device=result.device,
            worker=result.worker, crc32=result.crc32[k], versions=result.versions,
            gpu_seconds=result.kernel_seconds[k] if result.gpu else None, energy_joules=energy,
            transfer_seconds=result.transfer_seconds[k] if result.gpu else None,
            # The compile ran before the first image: reported with it, not shared out.
            compile_seconds=(result.compile_seconds if k == 0 else 0.0) if result.gpu
            and result.compile_seconds is not None else None,
            energy_absent=result.energy_absent, data=data)
        job = jobs.apply(job, jobs.Started(result.started_at, result.worker))
        job = jobs.apply(job, jobs.Succeeded(time.time()))
        usage = usage_record(job, task, images=n_images, voxels=voxels,
                             bytes_in=member.bytes_in, bytes_out=task.nbytes,
                             fallback_reason=reason, ops=staged.ops)
        outcomes.append(JobResult(job, staged.ops, task, staged.out_geom.spacing, "raw", usage,
                                  fallback_reason=reason, workers=(result.worker,),
                                  placement=result.placement))
    return outcomes


async def run(service, members: list[Member]) -> list[JobResult | BaseException]:
    """:func:`compute`, then record every member's end: the successes in one
    transaction, each failure as its own job's failure. Per member its recorded result
    or its error; an error of the whole stack is recorded for every member and raised."""
    try:
        outcomes = await compute(service, members)
    except BaseException as exc:
        await asyncio.shield(_fail(service, [(m, exc) for m in members]))
        raise
    ok = [(k, o) for k, o in enumerate(outcomes) if isinstance(o, JobResult)]
    failed = [(members[k], o) for k, o in enumerate(outcomes) if not isinstance(o, JobResult)]
    try:
        done = await asyncio.shield(service.finish_many([(o.job, o.usage) for _, o in ok]))
    except BaseException as exc:
        await asyncio.shield(_fail(service, [*((members[k], exc) for k, _ in ok), *failed]))
        raise
    for (k, o), recorded in zip(ok, done):
        if not recorded:
            outcomes[k] = FailedPrecondition(f"job {o.job.id} ended elsewhere while it ran "
                                             "(cancelled)")
    if failed:
        await asyncio.shield(_fail(service, failed))
    return outcomes


async def _fail(service, failures: list[tuple[Member, BaseException]]) -> None:
    for member, exc in failures:
        await service.fail(member.job, exc, bytes_in=member.bytes_in,
                           n_images=len(member.request.expected))

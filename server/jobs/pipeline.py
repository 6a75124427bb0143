"""A job's phases, written once: admit -> inputs -> run -> record the end (or the failure).

Every way a job is made goes through these: a synchronous Process call, each image of a
batch, an asynchronous Submit (and a routing rule's job, which is one), and a request
the store had answered already (derived.py's reuse). What differs is where the inputs
go, an :class:`InputPlace`:

- :class:`InMemory`: small inline images of a synchronous call travel to the worker
  with the task, and the result comes back the same way;
- :class:`Spooled`: transient files in the spool, removed when the call ends;
- :class:`JobFolder`: ``<data_dir>/jobs/<id>/``, fsynced, kept until the job has run
  (an asynchronous job must survive its server).

The images arrive as (image, payload) pairs: the API layer turns its stream into them;
this module writes each payload with an :class:`~medcompute.server.storage.spool.ImageWriter`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcompute.server.config import ServerConfig
from medcompute.server.dispatch.dispatcher import Dispatcher
from medcompute.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    Unavailable,
)
from medcompute.server.jobs import catalog as job_table
from medcompute.server.jobs import derived, validate
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.metering import Usage, usage_record
from medcompute.server.jobs.operations import Geometry, ResolvedOp, resolve_pipeline
from medcompute.server.jobs.regions import RegionRegistry
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.jobs.results import JobResult
from medcompute.server.storage import software as software_table
from medcompute.server.storage import usage as usage_table
from medcompute.server.storage.blobs import fsync_dir
from medcompute.server.storage.space import FreeSpaceReserve, storage_fault
from medcompute.server.storage.spool import ExpectedImage, ImageWriter, Spool
from medcompute.server.worker.tasks import InputSpec, TaskSpec, request_field

__all__ = ["Pipeline", "Staged", "InputPlace", "InMemory", "Spooled", "JobFolder",
           "receive"]

log = logging.getLogger(__name__)

#: The images of a request as they arrive: (image, payload); image 0 is the input,
#: ``k + 1`` is ``operands[k]``.
Payloads = AsyncIterator[tuple[int, bytes]]
#: ``started(job)``: a run's step before its worker (see :meth:`Pipeline.run`).
OnStart = Callable[[jobs.Job], Awaitable[jobs.Job | None]]
#: ``failed(job, exc, *, bytes_in, n_images)``: records a run's failure.
OnFailure = Callable[..., Awaitable[None]]


async def receive(payloads: Payloads, writers: list[ImageWriter]) -> int:
    """Write each payload with its image's writer; the bytes received on the wire.
    InvalidArgument when an image got too many or too few bytes, or its CRC differs."""
    wire_bytes = 0
    try:
        async for i, payload in payloads:
            wire_bytes += len(payload)
            writers[i].write(payload)
    finally:
        for w in writers:
            w.close()
    for w in writers:
        w.finish()
    return wire_bytes


# -- where the inputs go ------------------------------------------------------------
class InputPlace:
    """Where one job's images are written, and its result (None: in memory)."""

    def paths(self, job_id: str, n: int) -> list[Path | None]:
        raise NotImplementedError

    def out_path(self, job_id: str) -> Path | None:
        raise NotImplementedError

    async def received(self, paths) -> None:
        """The images have all arrived (a durable place makes them durable)."""

    def release(self, paths) -> None:
        """The job no longer needs its inputs."""


class InMemory(InputPlace):
    def paths(self, job_id, n):
        return [None] * n

    def out_path(self, job_id):
        return None


@dataclass
class Spooled(InputPlace):
    spool: Spool

    def paths(self, job_id, n):
        return [self.spool.path(job_id, f"in{i}") for i in range(n)]

    def out_path(self, job_id):
        return self.spool.path(job_id, "out")

    def release(self, paths):
        self.spool.remove(*paths)


@dataclass
class JobFolder(InputPlace):
    """``directory`` (one job's): the inputs fsynced there, kept for the job's run."""

    directory: Path

    def paths(self, job_id, n):
        self.directory.mkdir(parents=True, exist_ok=True)
        return [self.directory / f"in{i}" for i in range(n)]

    def out_path(self, job_id):
        return self.directory / "out"

    async def received(self, paths) -> None:
        await asyncio.to_thread(_fsync_files, paths, self.directory)


def _fsync_files(paths, directory: Path) -> None:
    """Make the received input files, and their names in ``directory``, durable."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_dir(directory)


def _copy_into_region(path: str, region) -> None:
    from medcompute.server.worker import shm

    shm.write(region.name, region.offset, np.fromfile(path, dtype=np.uint8))


@dataclass
class Staged:
    """The inputs (on disk or in memory), their geometry and the resolved pipeline."""

    inputs: tuple[InputSpec, ...]
    geoms: list[Geometry]
    ops: list[ResolvedOp]
    out_geom: Geometry


#: The share of a worker's memory limit one task may plan to use: Dask pauses a worker
#: at 80% of its limit and kills it at 95%, and the worker itself takes some.
TASK_MEMORY_SHARE = 0.8


class Pipeline:
    """The phases of a job (see the module's docstring)."""

    def __init__(self, config: ServerConfig, catalog: Catalog, dispatcher: Dispatcher,
                 spool: Spool, store=None, metrics=None, space: FreeSpaceReserve | None = None,
                 job_audit: Callable | None = None):
        self.metrics = metrics            # Prometheus counters, fed as usage is recorded
        #: The free-space reserve every write checks first (space.py).
        self.space = space if space is not None else FreeSpaceReserve.from_config(config)
        #: Ends of jobs that could not be recorded (a full or failing disk), by job id:
        #: recorded by :meth:`record_unrecorded` once the catalog can be written again.
        self.unrecorded: dict[str, tuple[jobs.Job, Usage]] = {}
        self.config = config
        self.catalog = catalog
        self.dispatcher = dispatcher
        self.spool = spool
        self.store = store                # the ImageStore: inputs by id, kept results
        #: ``job_audit(job)``: the audit entry of the call that runs ``job``, written in
        #: the transaction that records its end (or None); the API layer's guard.
        self.job_audit = job_audit or (lambda job: None)
        #: The shared-memory regions of same-host clients (regions.py).
        self.regions = RegionRegistry()

    # -- admit -------------------------------------------------------------------
    async def prepare(self, request: ProcessRequest, *, subscriber: str) -> ProcessRequest:
        """The request with its stored images looked up (NotFound for ids the subscriber
        does not own), checked by the domain's validator before any pixel is read."""
        expected = await derived.resolve(self.store, request.expected, owner=subscriber)
        request = request.with_images(expected)
        validate.check_request(request)
        if request.device == "gpu":
            # Refuse before the upload when there is no GPU and no fallback was allowed.
            await self.dispatcher.check_gpu(allow_fallback=request.allow_fallback)
        return request

    def check_space(self, request: ProcessRequest, *locations: str) -> None:
        """RESOURCE_EXHAUSTED before anything is written when the data directory is below
        its free-space reserve (counting the inline images about to arrive)."""
        incoming = sum(e.size for e in request.expected if e.stored is None)
        where = [*locations, "catalog"]
        if request.store_result:
            where.append("blobs")
        self.space.check(*where, incoming=incoming)

    def new_job(self, request: ProcessRequest, *, subscriber: str,
                destination: str = "") -> jobs.Job:
        return jobs.new_job(subscriber=subscriber, operations=request.names,
                            device=request.device, destination=destination or None,
                            inputs=[derived.input_ref(e) for e in request.expected],
                            created_at=time.time())

    def precheck(self, request: ProcessRequest) -> None:
        """Fail fast: RAW images are checked against the limits and the pipeline before
        their pixels are read."""
        validate.check_inline(request, max_voxels=self.config.max_voxels)

    def place(self, request: ProcessRequest) -> InputPlace:
        """Where a synchronous job's inputs go: in memory for small inline images (together
        at most the batching size), not kept in the store; else the spool. Such a job is
        not durable anyway: its caller holds the call open and gets an error if the
        server stops."""
        return InMemory() if self.in_memory(request) else Spooled(self.spool)

    def in_memory(self, request: ProcessRequest) -> bool:
        if not self.config.memory_inputs or request.store_result:
            return False
        if any(e.stored is not None for e in request.expected):
            return False
        # Float32 working size, as the dispatcher counts it (a DICOM file's voxels are
        # bounded by its bytes); never a job that would be split into slabs.
        work = sum(4 * (math.prod(e.shape) if e.encoding == "raw" else e.size)
                   for e in request.expected)
        return work <= min(self.config.batch_bytes, self.config.split_bytes)

    # -- inputs ------------------------------------------------------------------
    @staticmethod
    def writers(request: ProcessRequest, paths) -> list[ImageWriter]:
        return [ImageWriter(e, p) for e, p in zip(request.expected, paths)]

    async def receive(self, request: ProcessRequest, payloads: Payloads, paths,
                      place: InputPlace) -> tuple[int, list[bytes | None]]:
        """Receive the images into ``paths`` (None: memory); (wire bytes, each image's
        bytes when kept in memory)."""
        writers = self.writers(request, paths)
        bytes_in = await receive(payloads, writers)
        await place.received(paths)
        return bytes_in, [w.data for w in writers]

    async def _geometry(self, e: ExpectedImage, path,
                        data: bytes | None = None) -> tuple[Geometry, InputSpec]:
        if e.stored is not None:
            return derived.geometry(self.store, e)
        where = "" if data is not None else str(path)
        if data is not None:
            # An array, not bytes: Dask pickles its buffer out of band (no copy into the
            # message) on the way to the worker.
            data = np.frombuffer(data, np.uint8)
        if e.encoding == "raw":
            return (Geometry(e.shape, e.spacing),
                    InputSpec(where, "raw", e.shape, e.dtype.str, field=e.field, data=data))
        from medcompute.server.dicom import read as dicom

        def info():
            if data is not None:
                blob = memoryview(data)
            else:
                with open(path, "rb") as f:
                    blob = memoryview(f.read())
            parts, at = [], 0
            for n in e.file_sizes:
                parts.append(blob[at:at + n])
                at += n
            # The module refuses absurd headers itself; this server's own limit is checked
            # afterwards, as RESOURCE_EXHAUSTED.
            return dicom.read_info(parts)

        try:
            meta = await asyncio.to_thread(info)
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, request_field(exc.field, e.field)) from None
        spacing = e.spacing if e.spacing is not None else meta.spacing
        if spacing is not None and len(spacing) != len(meta.shape):
            raise InvalidArgument(
                f"expected {len(meta.shape)} values (one per axis), got {len(spacing)}",
                f"{e.field}.spacing_mm")
        return (Geometry(tuple(meta.shape), spacing),
                InputSpec(where, "dicom", tuple(meta.shape), np.dtype(meta.dtype).str,
                          file_sizes=e.file_sizes, field=e.field, data=data))

    async def stage(self, request: ProcessRequest, paths, datas=None) -> Staged:
        """The inputs' geometry (DICOM headers read), limits, and the resolved pipeline
        (``datas``: the images' bytes, for images kept in memory)."""
        datas = datas or [None] * len(request.expected)
        pairs = [await self._geometry(e, p, d)
                 for e, p, d in zip(request.expected, paths, datas)]
        geoms = [g for g, _ in pairs]
        region = request.input_region
        if region is not None and datas[0] is None:   # the worker reads the region
            pairs[0] = (pairs[0][0], dataclasses.replace(
                pairs[0][1], path="", data=None, shm=region.name, offset=region.offset))
        for e, g in zip(request.expected, geoms):
            validate.check_size(g.shape, e.field, max_voxels=self.config.max_voxels)
        ops, out_geom = resolve_pipeline(request.pipeline, geoms[0], geoms[1:],
                                         field="pipeline")
        validate.check_output_geometry(request, out_geom)
        validate.check_memory(ops, geoms[0], compute_dtype=request.compute_dtype,
                              budget=await self.memory_budget())
        return Staged(tuple(s for _, s in pairs), geoms, ops, out_geom)

    async def memory_budget(self) -> int:
        """What one task may use of a worker's memory, in bytes: :data:`TASK_MEMORY_SHARE`
        of the smallest limit of a CPU worker as Dask reports it (``--worker-memory``),
        else of the configured one, else of the host's memory."""
        limits = []
        if self.dispatcher is not None:         # None: no cluster (a job that cannot run)
            try:
                view = await self.dispatcher.view()
                limits = [m for a, m in view.memory_limit.items() if a in view.cpu and m]
            except Unavailable:
                pass
        if limits:
            limit = min(limits)
        elif self.config.worker_memory not in ("auto", 0, None):
            from dask.utils import parse_bytes

            limit = parse_bytes(self.config.worker_memory)
        else:
            import psutil

            limit = psutil.virtual_memory().total
        return int(limit * TASK_MEMORY_SHARE)

    # -- run ---------------------------------------------------------------------
    async def execute(self, job: jobs.Job, request: ProcessRequest, staged: Staged, out_path,
                      *, bytes_in: int, finish_extra=None) -> JobResult:
        """Run a QUEUED (or RUNNING) job on a worker; record its end and its usage.

        ``out_path`` None: the result comes back in memory (TaskResult.data).
        ``finish_extra(db, result)`` runs inside the transaction that records the end.
        Raises what the run raised; the caller records a failure with :meth:`fail`.
        """
        voxels = sum(math.prod(g.shape) for g in staged.geoms)
        spec = TaskSpec(
            job_id=job.id, inputs=staged.inputs, ops=tuple(staged.ops),
            out_path=str(out_path or ""), result_in_memory=out_path is None,
            compute_dtype=request.compute_dtype,
            output_dtype=request.output_dtype, output_format=request.output_format,
            output_spacing=staged.out_geom.spacing,
            description="; ".join(op.summary for op in staged.ops),
            out_region=(None if request.output_region is None else
                        (request.output_region.name, request.output_region.offset)),
        )
        execution = await self.dispatcher.run(
            spec, device=request.device, allow_fallback=request.allow_fallback,
            voxels=voxels, out_shape=staged.out_geom.shape, out_dtype=request.output_dtype)
        result = execution.result
        if request.output_region is not None and execution.slabs > 1:
            # Slabs wrote a spool file (they share it): copied into the region here.
            await asyncio.to_thread(_copy_into_region, result.out_path,
                                    request.output_region)
        kept = (await derived.keep(self, request, job, spec, result, staged.ops,
                                   staged.out_geom)
                if request.store_result else "")
        if job.state == jobs.State.QUEUED:
            job = jobs.apply(job, jobs.Started(result.started_at, result.worker))
        else:
            job = dataclasses.replace(job, started_at=result.started_at, worker=result.worker)
        job = jobs.apply(job, jobs.Succeeded(time.time()))
        usage = usage_record(job, result, images=len(request.expected), voxels=voxels,
                             bytes_in=bytes_in, bytes_out=result.nbytes,
                             fallback_reason=execution.fallback_reason, ops=staged.ops)
        ended = JobResult(job, staged.ops, result, staged.out_geom.spacing,
                          request.output_format, usage,
                          fallback_reason=execution.fallback_reason, slabs=execution.slabs,
                          workers=execution.workers, placement=execution.placement,
                          stored_image_id=kept)
        return await self.complete(ended, finish_extra)

    async def run(self, job: jobs.Job, request: ProcessRequest, place: InputPlace, *,
                  payloads: Payloads | None = None, paths=None, datas=None,
                  bytes_in: int = 0, error: BaseException | None = None,
                  before_run=None, started: OnStart | None = None,
                  failed: OnFailure | None = None, finish_extra=None) -> JobResult | None:
        """The phases after admission, for a job in the catalog: receive its inputs from
        ``payloads`` (or take those already at ``paths`` / in ``datas``, or in ``place``),
        stage them, run the job and record its end; on any error record the failure and
        raise it. ``error``: the job's inputs failed already (a batch image's upload). The
        inputs are released at the end either way.

        The caller's state machine steps (the asynchronous runner's, which persists them):
        ``started(job)`` just before the job goes to a worker, the job to run or None when
        it ended elsewhere (then nothing runs and None is returned); ``failed(job, exc,
        bytes_in=, n_images=)`` records a failure instead of :meth:`fail` (the partial
        result is then its to remove). ``finish_extra(db, result)`` runs inside the
        transaction that records the end (:meth:`execute`)."""
        paths = paths if paths is not None else place.paths(job.id, len(request.expected))
        out_path = place.out_path(job.id)
        try:
            if error is not None:
                raise error
            if payloads is not None:
                self.precheck(request)
                bytes_in, datas = await self.receive(request, payloads, paths, place)
            elif request.input_region is not None:
                self.precheck(request)       # the input is in a client's region
            staged = await self.stage(request, paths, datas)
            if job.state is jobs.State.RECEIVING:
                job = jobs.apply(job, jobs.InputsReceived(time.time()))
            if before_run is not None:
                await before_run()
            if started is not None:
                job = await started(job)
                if job is None:
                    return None
            return await self.execute(job, request, staged, out_path, bytes_in=bytes_in,
                                      finish_extra=finish_extra)
        except BaseException as exc:
            n_images = len(request.expected)
            if failed is not None:
                await asyncio.shield(failed(job, exc, bytes_in=bytes_in, n_images=n_images))
            else:
                Spool.remove(out_path)
                await asyncio.shield(self.fail(job, exc, bytes_in=bytes_in,
                                               n_images=n_images))
            raise
        finally:
            place.release(paths)

    # -- record the end ------------------------------------------------------------
    async def complete(self, ended: JobResult, finish_extra=None) -> JobResult:
        """Record the end of a job that succeeded and its usage, with
        ``finish_extra(db, ended)`` in the same transaction; FailedPrecondition when the
        job had ended meanwhile (cancelled elsewhere)."""
        extra = None if finish_extra is None else (lambda db: finish_extra(db, ended))
        if not await self.finish(ended.job, ended.usage, extra):
            raise FailedPrecondition(f"job {ended.job.id} ended elsewhere while it ran "
                                     "(cancelled)")
        return ended

    async def finish(self, job: jobs.Job, usage: Usage, extra=None) -> bool:
        """Record a job's end and its one usage record; False if it had already ended, or
        if another server took it over while this one ran it (catalog.py ``finish_job``).

        One write (a savepoint of the catalog's group commit) holds the job's end
        (jobs/catalog.py ``finish_job``), its usage record (storage/usage.py ``add``),
        ``extra(tx)`` and, when the call being served runs the job, the call's audit
        entry (:attr:`job_audit`, storage/audit.py ``add``)."""
        entry = self.job_audit(job)
        record = usage.as_dict()
        runner = getattr(self.catalog, "runner", "")

        def end(tx) -> bool:
            """The job's end, its usage record and its call's audit entry: one write."""
            if not job_table.finish_job(tx, job, runner):
                return False
            usage_table.add(tx, job.id, job.subscriber, job.finished_at or 0.0, record)
            software_table.add_uses(tx, job.id, job.subscriber, job.finished_at or 0.0, record)
            if extra is not None:
                extra(tx)
            if entry is not None:
                entry.write(tx)         # storage/audit.py add(tx, ...)
            return True

        done = await self.catalog.db.write(end)
        if done and entry is not None:
            entry.committed()
        if done and self.metrics is not None:
            try:
                self.metrics.job_finished(record)
            except Exception:  # the job is recorded; a metric must not turn it into an error
                log.exception("could not count job %s in the metrics", job.id)
        return done

    async def finish_many(self, ends: list[tuple[jobs.Job, Usage]]) -> list[bool]:
        """:meth:`finish` for many jobs in one write (the images of a batch's stack): each
        job's end, its usage record and its call's audit entry; per job, False when it had
        already ended (nothing is written for it)."""
        entries = [self.job_audit(job) for job, _ in ends]
        records = [usage.as_dict() for _, usage in ends]
        runner = getattr(self.catalog, "runner", "")

        def end(tx) -> list[bool]:
            done = []
            for (job, _), record, entry in zip(ends, records, entries):
                ok = job_table.finish_job(tx, job, runner)
                if ok:
                    usage_table.add(tx, job.id, job.subscriber, job.finished_at or 0.0, record)
                    software_table.add_uses(tx, job.id, job.subscriber, job.finished_at or 0.0,
                                            record)
                    if entry is not None:
                        entry.write(tx)
                done.append(ok)
            return done

        done = await self.catalog.db.write(end)
        for ok, entry, record, (job, _) in zip(done, entries, records, ends):
            if ok and entry is not None:
                entry.committed()
            if ok and self.metrics is not None:
                try:
                    self.metrics.job_finished(record)
                except Exception:  # the job is recorded; a metric must not undo that
                    log.exception("could not count job %s in the metrics", job.id)
        return done

    async def fail(self, job: jobs.Job, exc: BaseException, *, bytes_in: int, n_images: int,
                   cancel_reason: str = "the call was cancelled or its deadline passed") -> None:
        """Record the failure (or cancellation) ``exc`` ended the job with, classified by
        the job state machine (states.py ``failure``: a full or failing disk is the
        platform's fault, not billed). When the end cannot be recorded either, the job is
        kept in :attr:`unrecorded` and recorded by :meth:`record_unrecorded` once the
        catalog can be written again, so that it never stays RUNNING.
        """
        job = jobs.apply(job, jobs.failure(exc, at=time.time(), reason=cancel_reason,
                                           images=n_images, bytes_in=bytes_in))
        await self.record_end(job, usage_record(job, None, images=n_images, voxels=0,
                                                bytes_in=bytes_in, bytes_out=0))

    async def record_end(self, job: jobs.Job, usage: Usage, after=None) -> bool:
        """Record the end of a job that failed or was cancelled, and its usage; whether it
        was recorded (False: kept, or refused because the job ended elsewhere or another
        server took it over). When the catalog cannot be written (a full or failing disk,
        the database away), the end is kept in :attr:`unrecorded` and recorded by
        :meth:`record_unrecorded` once it can, so that the job never stays RUNNING;
        recording it never hides why the job ended. ``after()`` (a coroutine function:
        what follows the end, e.g. removing the job's files) is awaited by
        :meth:`record_unrecorded` once a kept end is recorded, never for a refused one."""
        try:
            return await self.finish(job, usage)
        except Exception as error:
            if storage_fault(error) is None:
                log.exception("could not record the end of job %s", job.id)
            else:
                log.warning("could not record the end of job %s (%s); it is recorded once the "
                            "catalog can be written again", job.id, error)
            self.unrecorded[job.id] = (job, usage, after)
            return False

    async def record_unrecorded(self) -> int:
        """Record the ends kept in :attr:`unrecorded` (a job that ended meanwhile, or that
        another server took over, is left to it); return how many are still waiting."""
        for job_id, (job, usage, *rest) in list(self.unrecorded.items()):
            try:
                recorded = await self.finish(job, usage)
            except Exception as error:
                if storage_fault(error) is None:
                    log.exception("could not record the end of job %s", job_id)
                break           # the catalog still cannot be written; try again later
            self.unrecorded.pop(job_id, None)
            if not recorded:
                log.warning("job %s: its end here (%s) is dropped: the job ended elsewhere "
                            "or another server took it over", job_id, job.state.value)
                continue
            log.info("job %s: its end (%s) is recorded", job_id, job.state.value)
            after = rest[0] if rest else None
            if after is not None:
                await after()
        return len(self.unrecorded)

    def release(self, ended: JobResult) -> None:
        """Remove the result's spool file once it has been sent."""
        self.spool.remove(ended.result.out_path)

"""The processing service: one request becomes one job, run on a Dask worker.

Domain code: it takes the request header (the pipeline and image descriptors,
as the API defines them) and the stream of chunks, and returns an
:class:`Outcome`. It raises domain errors; the servicer maps them to status codes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2, processing_pb2
from medcompute.server.api.guard import job_audit
from medcompute.server.api.transport import (
    expect_image,
    receive_images,
    receive_in_memory,
)
from medcompute.server.config import ServerConfig
from medcompute.server.dispatch.dispatcher import Dispatcher
from medcompute.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    MedcomputeError,
    ResourceExhausted,
)
from medcompute.server.jobs import derived
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.metering import usage_record
from medcompute.server.jobs.operations import Geometry, ResolvedOp, resolve_pipeline
from medcompute.server.storage.space import FreeSpaceReserve, storage_fault
from medcompute.server.storage.spool import ExpectedImage, Spool
from medcompute.server.worker.tasks import InputSpec, TaskResult, TaskSpec, request_field

__all__ = ["ProcessingService", "Outcome", "Request", "Staged"]

log = logging.getLogger(__name__)


def _both(first, second):
    """``first(db)`` then ``second(db)`` (either may be None)."""
    if first is None:
        return second

    def both(db):
        first(db)
        second(db)
    return both

# The zero values (*_UNSPECIFIED) are the documented defaults: AUTO and RAW.
_DEVICES = {processing_pb2.DEVICE_UNSPECIFIED: "auto", processing_pb2.DEVICE_AUTO: "auto",
            processing_pb2.DEVICE_GPU: "gpu", processing_pb2.DEVICE_CPU: "cpu"}
_FORMATS = {processing_pb2.OUTPUT_FORMAT_UNSPECIFIED: "raw",
            processing_pb2.OUTPUT_FORMAT_RAW: "raw",
            processing_pb2.OUTPUT_FORMAT_DICOM_SERIES: "dicom_series",
            processing_pb2.OUTPUT_FORMAT_DICOM_FILE: "dicom_file"}


@dataclass
class Outcome:
    """A finished job: what ran, where, its result file and its usage record."""

    job: jobs.Job
    ops: list[ResolvedOp]
    result: TaskResult
    spacing: tuple[float, ...] | None
    output_format: str
    usage: dict
    fallback_reason: str = ""
    slabs: int = 1
    workers: tuple[str, ...] = ()
    stored_image_id: str = ""         # the derived image kept in the store (or reused)
    reused: bool = False              # answered from the store, nothing computed


@dataclass
class Request:
    """A checked request header: what to read, how to compute, where to run."""

    header: processing_pb2.ProcessHeader
    expected: list[ExpectedImage]
    device: str
    output_format: str
    output_dtype: str
    compute_dtype: str
    names: list[str]


@dataclass
class Staged:
    """The inputs on disk, their geometry and the resolved pipeline."""

    inputs: tuple[InputSpec, ...]
    geoms: list[Geometry]
    ops: list[ResolvedOp]
    out_geom: Geometry


class ProcessingService:
    def __init__(self, config: ServerConfig, catalog: Catalog, dispatcher: Dispatcher,
                 spool: Spool, store=None, metrics=None, space: FreeSpaceReserve | None = None):
        self.metrics = metrics            # Prometheus counters, fed as usage is recorded
        #: The free-space reserve every write checks first (space.py).
        self.space = space if space is not None else FreeSpaceReserve.from_config(config)
        #: Ends of jobs that could not be recorded (a full or failing disk), by job id:
        #: recorded by :meth:`record_unrecorded` once the catalog can be written again.
        self.unrecorded: dict[str, tuple[jobs.Job, dict]] = {}
        self.config = config
        self.catalog = catalog
        self.dispatcher = dispatcher
        self.spool = spool
        self.store = store                # the ImageStore: inputs by id, kept results

    # -- request validation ------------------------------------------------------
    def _expected(self, header) -> list[ExpectedImage]:
        sources = [("header.input", header.input)] + [
            (f"header.operands[{i}]", s) for i, s in enumerate(header.operands)]
        expected = []
        for field, source in sources:
            kind = source.WhichOneof("source")
            if kind == "image_id":
                if not source.image_id:
                    raise InvalidArgument("required: the id of a stored image, as Register "
                                          "returned it; got an empty string",
                                          f"{field}.image_id")
                expected.append(derived.placeholder(field, source.image_id, source.version))
                continue
            if source.version:
                raise InvalidArgument("a version is one of a stored image: give image_id, or "
                                      "leave version empty", f"{field}.version")
            if kind != "inline":
                raise InvalidArgument("expected an image: set inline (a descriptor; the pixels "
                                      "follow as chunks) or image_id (a stored image)", field)
            expected.append(expect_image(source.inline, f"{field}.inline",
                                         max_bytes=self.config.max_image_bytes))
        return expected

    @staticmethod
    def _options(header) -> tuple[str, str, str, str]:
        device = _DEVICES.get(header.device)
        if device is None:
            raise InvalidArgument(wire.enum_choices(processing_pb2.Device, header.device),
                                  "header.device")
        output_format = _FORMATS.get(header.output_format)
        if output_format is None:
            raise InvalidArgument(wire.enum_choices(processing_pb2.OutputFormat,
                                                    header.output_format),
                                  "header.output_format")
        out_code = header.output_dtype or image_pb2.DATA_TYPE_FLOAT32
        try:
            output_dtype = wire.dtype_from_proto(out_code, "header.output_dtype").name
        except wire.WireError as exc:
            raise InvalidArgument(exc.message, exc.field) from None
        compute_code = header.compute_dtype or image_pb2.DATA_TYPE_FLOAT32
        if compute_code not in (image_pb2.DATA_TYPE_FLOAT32, image_pb2.DATA_TYPE_FLOAT64):
            raise InvalidArgument(wire.enum_choices(
                image_pb2.DataType, compute_code,
                (image_pb2.DATA_TYPE_FLOAT32, image_pb2.DATA_TYPE_FLOAT64)),
                "header.compute_dtype")
        compute_dtype = wire.DTYPES[compute_code].name
        if header.result_compression not in image_pb2.Compression.values():
            raise InvalidArgument(wire.enum_choices(image_pb2.Compression,
                                                    header.result_compression),
                                  "header.result_compression")
        return device, output_format, output_dtype, compute_dtype

    def _check_size(self, shape, field: str) -> None:
        voxels = math.prod(shape)
        if voxels > self.config.max_voxels:
            raise ResourceExhausted(f"the image has {voxels} voxels; this server accepts at "
                                    f"most {self.config.max_voxels}", field)

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
        if len(meta.shape) > 4:
            raise InvalidArgument(f"expected at most 4 axes, the files give {len(meta.shape)}",
                                  e.field)
        spacing = e.spacing if e.spacing is not None else meta.spacing
        if spacing is not None and len(spacing) != len(meta.shape):
            raise InvalidArgument(
                f"expected {len(meta.shape)} values (one per axis), got {len(spacing)}",
                f"{e.field}.spacing_mm")
        return (Geometry(tuple(meta.shape), spacing),
                InputSpec(where, "dicom", tuple(meta.shape), np.dtype(meta.dtype).str,
                          file_sizes=e.file_sizes, field=e.field, data=data))

    # -- the phases of a job -------------------------------------------------------
    async def prepare(self, header, *, subscriber: str) -> Request:
        """Check the request header (before any pixel is read); NotFound for stored ids the
        subscriber does not own."""
        expected = await derived.resolve(self.store, self._expected(header), owner=subscriber)
        device, output_format, output_dtype, compute_dtype = self._options(header)
        if output_format != "raw" and expected[0].encoding != "dicom":
            raise InvalidArgument("DICOM output needs DICOM input (the derived series copies "
                                  "the source's patient and study)", "header.output_format")
        if device == "gpu":
            # Refuse before the upload when there is no GPU and no fallback was allowed.
            await self.dispatcher.check_gpu(allow_fallback=header.allow_fallback)
        names = [op.WhichOneof("op") or "?" for op in header.pipeline]
        return Request(header, expected, device, output_format, output_dtype, compute_dtype,
                       names)

    def check_space(self, request: Request, *locations: str) -> None:
        """RESOURCE_EXHAUSTED before anything is written when the data directory is below
        its free-space reserve (counting the inline images about to arrive)."""
        incoming = sum(e.size for e in request.expected if e.stored is None)
        where = [*locations, "catalog"]
        if request.header.store_result:
            where.append("blobs")
        self.space.check(*where, incoming=incoming)

    def new_job(self, request: Request, *, subscriber: str, destination: str = "") -> jobs.Job:
        return jobs.new_job(subscriber=subscriber, operations=request.names,
                            device=request.device, destination=destination or None,
                            inputs=[derived.input_ref(e) for e in request.expected],
                            created_at=time.time())

    def precheck(self, request: Request) -> None:
        """Fail fast: RAW images are checked against the limits and the pipeline before
        their pixels are read."""
        if all(e.encoding == "raw" for e in request.expected):
            for e in request.expected:
                self._check_size(e.shape, f"{e.field}.shape")
            geoms = [Geometry(e.shape, e.spacing) for e in request.expected]
            resolve_pipeline(request.header.pipeline, geoms[0], geoms[1:])

    def in_memory(self, request: Request) -> bool:
        """Whether a synchronous call's inline images travel to the worker in memory (and
        its result back) instead of through spool files: small images (together at most
        the batching size), not kept in the store. Such a job is not durable anyway: its
        caller holds the call open and gets an error if the server stops."""
        if not self.config.memory_inputs or request.header.store_result:
            return False
        if any(e.stored is not None for e in request.expected):
            return False
        # Float32 working size, as the dispatcher counts it (a DICOM file's voxels are
        # bounded by its bytes); never a job that would be split into slabs.
        work = sum(4 * (math.prod(e.shape) if e.encoding == "raw" else e.size)
                   for e in request.expected)
        return work <= min(self.config.batch_bytes, self.config.split_bytes)

    async def stage(self, request: Request, paths, datas=None) -> Staged:
        """The inputs' geometry (DICOM headers read), limits, and the resolved pipeline
        (``datas``: the images' bytes, for images kept in memory)."""
        datas = datas or [None] * len(request.expected)
        pairs = [await self._geometry(e, p, d)
                 for e, p, d in zip(request.expected, paths, datas)]
        geoms = [g for g, _ in pairs]
        for e, g in zip(request.expected, geoms):
            self._check_size(g.shape, e.field)
        ops, out_geom = resolve_pipeline(request.header.pipeline, geoms[0], geoms[1:])
        if request.output_format != "raw" and len(out_geom.shape) not in (2, 3):
            # Refused here, before any work, rather than by the worker that writes it.
            raise InvalidArgument(
                f"a DICOM result needs 2 or 3 axes; this pipeline gives "
                f"{len(out_geom.shape)} (use the array output)", "header.output_format")
        return Staged(tuple(s for _, s in pairs), geoms, ops, out_geom)

    async def execute(self, job: jobs.Job, request: Request, staged: Staged, out_path, *,
                      bytes_in: int, finish_extra=None) -> Outcome:
        """Run a QUEUED (or RUNNING) job on a worker; record its end and its usage.

        ``out_path`` None: the result comes back in memory (TaskResult.data).
        ``finish_extra(db, outcome)`` runs inside the transaction that records the end.
        Raises what the run raised; the caller records a failure with :meth:`fail`.
        """
        header = request.header
        voxels = sum(math.prod(g.shape) for g in staged.geoms)
        spec = TaskSpec(
            job_id=job.id, inputs=staged.inputs, ops=tuple(staged.ops),
            out_path=str(out_path or ""), result_in_memory=out_path is None,
            compute_dtype=request.compute_dtype,
            output_dtype=request.output_dtype, output_format=request.output_format,
            output_spacing=staged.out_geom.spacing,
            description="; ".join(op.summary for op in staged.ops),
        )
        execution = await self.dispatcher.run(
            spec, device=request.device, allow_fallback=header.allow_fallback, voxels=voxels,
            out_shape=staged.out_geom.shape, out_dtype=request.output_dtype)
        result = execution.result
        kept = (await derived.keep(self, header, job, spec, result, request.expected,
                                   staged.ops, staged.out_geom)
                if header.store_result else "")
        if job.state == jobs.State.QUEUED:
            job = jobs.apply(job, jobs.Started(result.started_at, result.worker))
        else:
            job = dataclasses.replace(job, started_at=result.started_at, worker=result.worker)
        job = jobs.apply(job, jobs.Succeeded(time.time()))
        usage = usage_record(job, result, images=len(request.expected), voxels=voxels,
                             bytes_in=bytes_in, bytes_out=result.nbytes,
                             fallback=bool(execution.fallback_reason))
        outcome = Outcome(job, staged.ops, result, staged.out_geom.spacing,
                          request.output_format, usage,
                          fallback_reason=execution.fallback_reason, slabs=execution.slabs,
                          workers=execution.workers, stored_image_id=kept)
        return await self.complete(outcome, finish_extra)

    async def complete(self, outcome: Outcome, finish_extra=None) -> Outcome:
        """Record the end of a job that succeeded and its usage, with
        ``finish_extra(db, outcome)`` in the same transaction; FailedPrecondition when the
        job had ended meanwhile (cancelled elsewhere)."""
        extra = None if finish_extra is None else (lambda db: finish_extra(db, outcome))
        if not await self.finish(outcome.job, outcome.usage, extra):
            raise FailedPrecondition(f"job {outcome.job.id} ended elsewhere while it ran "
                                     "(cancelled)")
        return outcome

    async def finish(self, job: jobs.Job, usage: dict, extra=None) -> bool:
        """Record a job's end and its one usage record; False if it had already ended.

        When the call being served runs the job, its audit entry is written in the same
        transaction (:func:`medcompute.server.api.guard.job_audit`)."""
        entry = job_audit(job)
        if entry is not None:
            extra = _both(extra, entry.write)
        done = await self.catalog.finish_job(job, usage, extra)
        if done and entry is not None:
            entry.committed()
        if done and self.metrics is not None:
            try:
                self.metrics.job_finished(usage)
            except Exception:  # the job is recorded; a metric must not turn it into an error
                log.exception("could not count job %s in the metrics", job.id)
        return done

    # -- the synchronous call ------------------------------------------------------
    async def process(self, header, chunks: AsyncIterator, *, subscriber: str,
                      on_job=None) -> Outcome:
        """Receive the inputs, run the pipeline on a worker, record the job and its usage."""
        request = await self.prepare(header, subscriber=subscriber)
        self.check_space(request, "spool")
        reused = await derived.reuse(self, header, request.expected, subscriber=subscriber,
                                     output_format=request.output_format)
        if reused is not None:
            return reused
        job = self.new_job(request, subscriber=subscriber)
        await self.catalog.put_job(job)
        if on_job is not None:
            on_job(job.id)
        memory = self.in_memory(request)
        paths = [None if memory else self.spool.path(job.id, f"in{i}")
                 for i in range(len(request.expected))]
        out_path = None if memory else self.spool.path(job.id, "out")
        bytes_in = 0
        try:
            self.precheck(request)
            if memory:
                bytes_in, datas = await receive_in_memory(chunks, request.expected)
            else:
                bytes_in, datas = await receive_images(chunks, request.expected, paths), None
            staged = await self.stage(request, paths, datas)
            job = jobs.apply(job, jobs.InputsReceived(time.time()))
            return await self.execute(job, request, staged, out_path, bytes_in=bytes_in)
        except BaseException as exc:
            self.spool.remove(out_path)
            await asyncio.shield(self.fail(job, exc, bytes_in=bytes_in,
                                           n_images=len(request.expected)))
            raise
        finally:
            self.spool.remove(*paths)

    async def fail(self, job: jobs.Job, exc: BaseException, *, bytes_in: int, n_images: int,
                   cancel_reason: str = "the call was cancelled or its deadline passed") -> None:
        """Record the failure (or cancellation) ``exc`` ended the job with.

        A full or failing disk is the platform's fault (not billed). When the end cannot be
        recorded either, the job is kept in :attr:`unrecorded` and recorded by
        :meth:`record_unrecorded` once the catalog can be written again, so that it never
        stays RUNNING.
        """
        now = time.time()
        exc = storage_fault(exc) or exc
        if isinstance(exc, asyncio.CancelledError):
            event = jobs.Cancelled(now, cancel_reason)
        elif isinstance(exc, MedcomputeError):
            platform = (exc.code_name in ("INTERNAL", "UNAVAILABLE")
                        or getattr(exc, "platform_fault", False))
            event = jobs.Failed(now, exc.details, exc.code_name, platform_fault=platform)
        else:
            event = jobs.Failed(now, f"internal error ({type(exc).__name__})", "INTERNAL",
                                platform_fault=True)
        job = jobs.apply(job, event)
        usage = usage_record(job, None, images=n_images, voxels=0, bytes_in=bytes_in,
                             bytes_out=0)
        try:
            await self.finish(job, usage)
        except Exception as error:  # recording the failure must not hide the original error
            if storage_fault(error) is None:
                log.exception("could not record the end of job %s", job.id)
            else:
                log.warning("could not record the end of job %s (%s); it is recorded once the "
                            "catalog can be written again", job.id, error)
            self.unrecorded[job.id] = (job, usage)

    async def record_unrecorded(self) -> int:
        """Record the ends kept in :attr:`unrecorded` (a job that ended meanwhile, e.g.
        taken over elsewhere, is left as it is); return how many are still waiting."""
        for job_id, (job, usage) in list(self.unrecorded.items()):
            try:
                await self.finish(job, usage)
            except Exception as error:
                if storage_fault(error) is None:
                    log.exception("could not record the end of job %s", job_id)
                break           # the catalog still cannot be written; try again later
            self.unrecorded.pop(job_id, None)
            log.info("job %s: its end (%s) is recorded", job_id, job.state.value)
        return len(self.unrecorded)

    def release(self, outcome: Outcome) -> None:
        """Remove the result's spool file once it has been sent."""
        self.spool.remove(outcome.result.out_path)

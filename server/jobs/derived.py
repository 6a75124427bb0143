"""Stored images in processing requests: inputs named by id, results kept as derived images.

- An ``image_id`` source resolves to the stored image's geometry and blob paths; the
  worker reads (and decompresses) the voxel blob itself.
- With ``store_result`` the job's result becomes a derived image, linked to its source,
  operands and pipeline: its voxels, and a DICOM derived series where the source is
  DICOM (the result's own files when the request asked for DICOM).
- A request whose inputs are all stored and which the store has already answered is
  answered from the store, marked reused, without computing (unless ``recompute``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from medcompute.server.errors import FailedPrecondition, MedcomputeError, Unavailable
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.metering import usage_record
from medcompute.server.jobs.operations import Geometry, resolve_pipeline
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.jobs.results import JobResult
from medcompute.server.storage import blobs as blobfiles
from medcompute.server.storage.images import BlobRef, ImageRecord
from medcompute.server.storage.spool import ExpectedImage
from medcompute.server.store.images import ImageStore, new_image_id
from medcompute.server.worker.store_tasks import keep_result
from medcompute.server.worker.tasks import InputSpec, TaskResult

__all__ = ["resolve", "geometry", "input_ref", "derivation_key", "reuse", "keep"]


def _store(store: ImageStore | None) -> ImageStore:
    if store is None:
        raise Unavailable("this server has no image store")
    return store


async def resolve(store: ImageStore | None, expected: list[ExpectedImage], *,
                  owner: str) -> list[ExpectedImage]:
    """Replace each placeholder with the stored image's description (NotFound if unknown)."""
    out = []
    for e in expected:
        if e.encoding != "stored":
            out.append(e)
            continue
        record = await _store(store).get(e.stored, owner=owner, field=e.field)
        version = ""
        if e.version:
            version = await _version(store, record, e)
        out.append(ExpectedImage(
            e.field, "dicom" if record.blob("dicom") else "raw", 0, record.shape,
            np.dtype(record.dtype), record.spacing, record.file_sizes, stored=record,
            version=version))
    return out


async def _version(store: ImageStore, record: ImageRecord, e: ExpectedImage):
    """The version of a stored input the request names (made now if it was not yet),
    when the study's reading status allows it."""
    field = e.field.rsplit(".", 1)[0] + ".version"
    try:
        spec = store.versions.resolve(e.version, field)
        if record.blob("dicom") is None:
            raise FailedPrecondition("versions are made of DICOM files for processing: this "
                                     "image was registered as a raw array, whose versions "
                                     "Store.Get serves; process the original", field)
        await store.readable(record, spec.name)
        return await store.versions.get(record, spec)
    except MedcomputeError as exc:
        if exc.field == "version":
            raise type(exc)(exc.message, field) from None
        raise


def _ref(e: ExpectedImage) -> str:
    return e.stored.id + (f"@{e.version.name}" if e.version else "")


def input_ref(e: ExpectedImage) -> str:
    """How a job record names an input (``image:ID@VERSION`` for a version)."""
    return f"image:{_ref(e)}" if e.stored is not None else f"inline:{e.size}"


def _spec(store: ImageStore, record: ImageRecord, field: str) -> InputSpec:
    voxels = str(store.blobs.path(record.blob("voxels").digest))
    dicom = record.blob("dicom")
    return InputSpec(str(store.blobs.path(dicom.digest)) if dicom else voxels, "stored",
                     record.shape, record.dtype, file_sizes=record.file_sizes if dicom else (),
                     field=field, voxels=voxels, digest=dicom.digest if dicom else "")


def geometry(store: ImageStore, e: ExpectedImage) -> tuple[Geometry, InputSpec]:
    """The geometry and worker input of a resolved stored image: its voxels, or the files
    of the version the request names (the worker decodes them)."""
    if e.version:
        v = e.version
        return Geometry(e.shape, e.spacing), InputSpec(
            str(store.blobs.path(v.digest)), "dicom", e.stored.shape, e.stored.dtype,
            file_sizes=v.file_sizes, field=e.field)
    return Geometry(e.shape, e.spacing), _spec(store, e.stored, e.field)


def derivation_key(request: ProcessRequest, ids: list[str]) -> str:
    """Identifies a request's result: its stored inputs, pipeline and output options."""
    h = hashlib.sha256(json.dumps({
        "inputs": ids, "device": request.device, "output_dtype": request.output_dtype,
        "compute_dtype": request.compute_dtype, "output_format": request.output_format},
        sort_keys=True).encode())
    for op in request.pipeline:
        data = op.SerializeToString(deterministic=True)
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def _stored_key(request: ProcessRequest) -> str:
    if any(e.stored is None for e in request.expected):
        return ""
    return derivation_key(request, [_ref(e) for e in request.expected])


def _materialise(store: ImageStore, record: ImageRecord, output_format: str, path: Path):
    if output_format == "raw":
        with open(path, "wb") as f:
            for data in blobfiles.voxel_chunks(store.blobs.path(record.blob("voxels").digest)):
                f.write(data)
        return (), record.size, record.crc32
    with open(store.blobs.path(record.blob("dicom").digest), "rb") as src, \
            open(path, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    return record.file_sizes, sum(record.file_sizes), record.dicom_crc32


async def reuse(service, request: ProcessRequest, *, subscriber: str,
                job: jobs.Job | None = None, out_path=None, finish_extra=None):
    """The JobResult of a request the store already answered, or None (compute it).

    A synchronous call passes no ``job`` (one is made here) and gets the result in a
    spool file; an asynchronous job passes itself, where its result goes, and what its
    end also records (``finish_extra(db, result)``, as for ``service.execute``).
    """
    expected, output_format = request.expected, request.output_format
    key = "" if request.recompute else _stored_key(request)
    record = await service.store.catalog.by_derivation(subscriber, key) if key else None
    if record is None or (output_format != "raw" and record.blob("dicom") is None):
        return None
    geoms = [Geometry(e.shape, e.spacing) for e in expected]
    ops, out_geom = resolve_pipeline(request.pipeline, geoms[0], geoms[1:], field="pipeline")
    now = time.time()
    if job is None:
        job = jobs.new_job(subscriber=subscriber, operations=request.names,
                           device=request.device,
                           inputs=[input_ref(e) for e in expected], created_at=now)
    out_path = out_path or service.spool.path(job.id, "out")
    try:
        file_sizes, nbytes, crc = await asyncio.to_thread(
            _materialise, service.store, record, output_format, out_path)
    except BaseException:
        service.spool.remove(out_path)
        raise
    computed = record.computed
    result = TaskResult(
        out_path=str(out_path), shape=record.shape, dtype=record.dtype, file_sizes=file_sizes,
        nbytes=nbytes, started_at=now, finished_at=time.time(), compute_seconds=0.0,
        backend=computed.get("backend", ""), device=computed.get("device", ""), worker="",
        crc32=crc, versions=computed.get("versions", {}))
    job = jobs.apply(job, jobs.AnsweredFromStore(now, time.time()))
    usage = usage_record(job, result, images=len(expected),
                         voxels=sum(math.prod(g.shape) for g in geoms), bytes_in=0,
                         bytes_out=nbytes)
    ended = JobResult(job, ops, result, record.spacing or out_geom.spacing, output_format,
                      usage, stored_image_id=record.id, reused=True)
    return await service.complete(ended, finish_extra)


def _metadata(expected: list[ExpectedImage], out: dict, names: list[str]) -> dict:
    source = expected[0].stored
    meta = dict(source.metadata) if source is not None else dict(out["source_metadata"])
    derived = out["metadata"]
    meta["series_instance_uid"] = derived.get("series_instance_uid", "")
    meta["sop_instance_uids"] = derived.get("sop_instance_uids", [])
    meta.pop("window_center", None)   # the source's window does not fit a derived image
    meta.pop("window_width", None)
    meta["description"] = ("derived: " + ", ".join(names))[:256]
    return meta


async def keep(service, request: ProcessRequest, job: jobs.Job, spec, result: TaskResult,
               ops, out_geom: Geometry) -> str:
    """Keep a finished job's result as a derived image (``store_result``); its id."""
    store = _store(service.store)
    expected = request.expected
    source = spec.inputs[0]
    dicom_source = (source.path, source.file_sizes, source.offset) if source.file_sizes else None
    voxels_tmp, dicom_tmp = store.blobs.new_tmp(), store.blobs.new_tmp()
    names = [op.name for op in ops]
    try:
        out = await store.runner(
            keep_result, result.out_path, spec.output_format, result.shape, result.dtype,
            result.file_sizes, dicom_source, out_geom.spacing, spec.description,
            str(voxels_tmp), str(dicom_tmp))
        vox, dcm = out["voxels"], out["dicom"]
        refs = [BlobRef("voxels", vox.digest, vox.size)]
        if dcm is not None:
            refs.append(BlobRef("dicom", dcm.digest, dcm.size))
        retention = request.retention_seconds
        record = ImageRecord(
            id=new_image_id(), owner=job.subscriber, identity=f"derived:{job.id}",
            kind="derived", shape=vox.shape, dtype=vox.dtype,
            size=math.prod(vox.shape) * np.dtype(vox.dtype).itemsize, crc32=vox.crc32,
            created_at=time.time(), spacing=out_geom.spacing,
            expires_at=time.time() + retention if retention else None,
            metadata=_metadata(expected, out, names),
            file_sizes=dcm.file_sizes if dcm else (), dicom_crc32=dcm.crc32 if dcm else 0,
            blobs=tuple(refs), source_id=expected[0].stored.id if expected[0].stored else "",
            operand_ids=tuple(e.stored.id for e in expected[1:] if e.stored is not None),
            operations=tuple(names), derivation=spec.description,
            derivation_key=_stored_key(request), job_id=job.id,
            computed={"backend": result.backend, "device": result.device,
                      "versions": dict(result.versions)})

        def install():
            store.blobs.install(voxels_tmp, vox.digest)
            if dcm is not None:
                store.blobs.install(dicom_tmp, dcm.digest)
        stored, _ = await store.add(record, install, "store_result")
        return stored.id
    finally:
        voxels_tmp.unlink(missing_ok=True)
        dicom_tmp.unlink(missing_ok=True)

"""Processing on retrieve: ``GET .../studies/{study}/series/{series}/processed?op=...``.

Each ``op`` is one operation in the API's text form (``gaussian:sigma_mm=1``,
``mip:axis=0``; :mod:`medcompute.proto.ops`), in order; ``device`` (auto, cpu, gpu)
is optional. The series' stored volume is processed by an ordinary asynchronous job
(listed, metered and billed as any, with an audit entry naming it), its result kept as a
derived DICOM series under the derivation key the gRPC API uses, so the same request
again is answered from the store without computing. The answer is the derived series as
WADO-RS sends a series (``multipart/related; type="application/dicom"``), or with
``Accept: image/png`` or ``image/jpeg`` its first instance rendered; its URL is in
``Content-Location`` and the job's id in ``Medcompute-Job``.
"""

from __future__ import annotations

import dataclasses

from medcompute.proto.ops import parse_op
from medcompute.server.dicomweb.door import HttpError
from medcompute.server.errors import FailedPrecondition, MedcomputeError, NotFound, renamed
from medcompute.server.jobs.derived import derivation_key
from medcompute.server.jobs.requests import ProcessRequest, SubmitRequest
from medcompute.server.jobs.states import State
from medcompute.server.storage.images import ImageRecord
from medcompute.server.storage.spool import ExpectedImage

__all__ = ["Processing", "parse_processing", "DEVICES", "KEYS"]

DEVICES = ("auto", "cpu", "gpu")
#: The query keys of a processed request (``window`` and ``quality``: rendered only).
KEYS = ("op", "device", "window", "quality")
_FIELDS = (("process.pipeline", "op"), ("process.device", "device"))
_STATUS = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429,
           "FAILED_PRECONDITION": 409, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
           "CANCELLED": 409}


def parse_processing(items: list[tuple[str, str]]) -> ProcessRequest:
    """The processing a query names (no input yet); 400 naming the key that is wrong."""
    ops, device = [], "auto"
    for key, value in items:
        if key == "op":
            try:
                ops.append(parse_op(value))
            except (ValueError, TypeError) as exc:
                raise HttpError(400, str(exc), f"op[{len(ops)}]") from None
        elif key == "device":
            if value not in DEVICES:
                raise HttpError(400, f"expected one of {', '.join(DEVICES)}, got "
                                f"{value[:16]!r}", "device")
            device = value
        elif key not in KEYS:
            raise HttpError(400, f"unknown query key; expected one of {', '.join(KEYS)}", key)
    if not ops:
        raise HttpError(400, "name at least one operation, e.g. op=gaussian:sigma_mm=1", "op")
    return ProcessRequest(pipeline=tuple(ops), device=device, output_format="dicom_series",
                          store_result=True)


class Processing:
    def __init__(self, runner, store):
        self.runner = runner          # JobRunner
        self.store = store            # ImageStore

    @staticmethod
    def source(records: list[ImageRecord]) -> ImageRecord:
        """The stored image that holds the series: its volume (the most files), an
        original before a derived one."""
        return max(records, key=lambda r: (r.kind == "original", len(r.file_sizes),
                                           -r.created_at))

    async def submit(self, request: ProcessRequest, record: ImageRecord, *,
                     subscriber: str, label: str = "dicomweb processed"):
        """Start ``request`` on ``record`` as an asynchronous job; its view."""
        try:
            view, _ = await self.runner.submit(SubmitRequest(
                request.with_images([_source(record)]), label=label), _no_chunks(),
                subscriber=subscriber)
        except MedcomputeError as exc:
            raise renamed(exc, moves=_FIELDS) from None
        return view

    async def run(self, request: ProcessRequest, record: ImageRecord, *, subscriber: str
                  ) -> tuple[str, ImageRecord]:
        """Run ``request`` on ``record`` as a job and wait for its end; (the job's id, the
        derived image)."""
        view = await self.submit(request, record, subscriber=subscriber)
        process = request.with_images([_source(record)])
        async for update in self.runner.watch(view.job_id, subscriber):
            job = update.job
        if job.state is not State.SUCCEEDED:
            raise HttpError(_STATUS.get(job.error_code, 500),
                            f"job {job.job_id} {job.state.value.lower()}: {job.error}",
                            "op")
        key = derivation_key(dataclasses.replace(process, store_result=True), [record.id])
        derived = await self.store.catalog.by_derivation(subscriber, key)
        if derived is None:
            raise NotFound(f"job {job.job_id} succeeded but its derived series is no longer "
                           "stored (deleted meanwhile); ask again")
        if derived.blob("dicom") is None:
            raise FailedPrecondition("the derived image has no DICOM files", "op")
        return job.job_id, derived


def _source(record: ImageRecord) -> ExpectedImage:
    return ExpectedImage("input.image_id", "stored", 0, stored=record.id)


async def _no_chunks():
    return
    yield  # an async generator without items: a stored input has no chunks

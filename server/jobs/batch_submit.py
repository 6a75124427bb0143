"""Batch submits: many images, one pipeline, each image its own asynchronous job.

Domain code for ``BatchService.SubmitBatch``. The header is checked whole first (as
:class:`~medcompute.server.jobs.batch.BatchProcessing` checks a batch); then every image goes
through :meth:`JobRunner.submit` exactly as a single submit does (its inputs fsynced on
disk and the job QUEUED in the catalog before the reply), fed with that image's chunks
from the one request stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from medcompute.proto.v1 import batch_pb2, jobs_pb2
from medcompute.server.api.transport import NOT_PROTOBUF
from medcompute.server.errors import InvalidArgument, MedcomputeError
from medcompute.server.jobs.batch import BatchProcessing, chunk_item

__all__ = ["BatchSubmit", "Submitted", "submit_field"]

#: Chunks of one image waiting for its upload to take them.
_QUEUED_CHUNKS = 8
_END = object()


@dataclass
class Submitted:
    """One image of a batch submit: its job, or the error its upload ended with."""

    index: int
    job: jobs_pb2.JobInfo | None = None
    existing: bool = False
    error: BaseException | None = None


def submit_field(field: str | None, index: int | None) -> str | None:
    """The batch submit's name for a field: the image's input is ``header.inputs[index]``,
    everything else lives under ``header.submit``."""
    if not field or not field.startswith("header.") or field.startswith(
            ("header.inputs", "header.submit.")):
        return field
    rest = field[len("header."):]
    if index is not None and (rest == "process.input" or rest.startswith("process.input.")):
        return f"header.inputs[{index}]" + rest[len("process.input"):]
    return "header.submit." + rest


def _rename(exc: BaseException, index: int | None) -> BaseException:
    if isinstance(exc, MedcomputeError):
        renamed = submit_field(exc.field, index)
        if renamed != exc.field:
            exc.field = renamed
            exc.args = (exc.details,)
    return exc


class BatchSubmit:
    def __init__(self, batch: BatchProcessing, runner):
        self.batch = batch
        self.runner = runner

    async def submit(self, header, chunks, *, subscriber: str,
                     on_job=None) -> list[Submitted]:
        """Submit every image of ``header`` as its own job; one :class:`Submitted` per
        image, in the order of ``header.inputs``."""
        submit = header.submit
        if len(submit.idempotency_key) > 120:
            raise InvalidArgument(f"expected at most 120 characters in a batch (each image's "
                                  f"job is keyed KEY#i), got {len(submit.idempotency_key)}",
                                  "header.submit.idempotency_key")
        try:
            requests = await self.batch.prepare(
                batch_pb2.ProcessBatchHeader(process=submit.process, inputs=header.inputs),
                subscriber=subscriber)
        except MedcomputeError as exc:
            raise _rename(exc, None) from None
        queues = [asyncio.Queue(_QUEUED_CHUNKS) for _ in requests]
        tasks = []
        for i, source in enumerate(header.inputs):
            item = jobs_pb2.SubmitHeader()
            item.CopyFrom(submit)
            item.process.input.CopyFrom(source)
            if submit.idempotency_key:
                item.idempotency_key = f"{submit.idempotency_key}#{i}"
            tasks.append(asyncio.create_task(self._one(i, item, queues[i], subscriber,
                                                       on_job)))
        try:
            await self._demux(chunks, requests, queues, tasks)
            return [await task for task in tasks]
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def _one(self, i: int, item, queue: asyncio.Queue, subscriber: str,
                   on_job) -> Submitted:
        async def chunks():
            while (got := await queue.get()) is not _END:
                yield got

        job_ids = []

        def created(job_id: str) -> None:
            job_ids.append(job_id)
            if on_job is not None:
                on_job(job_id)

        try:
            info, existing = await self.runner.submit(item, chunks(), subscriber=subscriber,
                                                      on_job=created)
        except Exception as exc:
            job = await self.runner.info(job_ids[0]) if job_ids else None
            return Submitted(i, job=job, error=_rename(exc, i))
        return Submitted(i, job=info, existing=existing)

    @staticmethod
    async def _demux(chunks, requests, queues, tasks) -> None:
        """Hand each chunk to its image's upload; an upload that has ended already (it
        failed) drops the rest of its chunks."""
        index = 0
        try:
            async for index, message in chunks:
                i = chunk_item(index, message, requests)
                await _put(queues[i], tasks[i], (index, message.chunk))
        except DecodeError:
            raise InvalidArgument(NOT_PROTOBUF, f"request[{index + 1}]") from None
        for queue, task in zip(queues, tasks):
            await _put(queue, task, _END)


async def _put(queue: asyncio.Queue, task: asyncio.Task, item) -> None:
    if task.done():
        return
    put = asyncio.ensure_future(queue.put(item))
    await asyncio.wait({put, task}, return_when=asyncio.FIRST_COMPLETED)
    if not put.done():
        put.cancel()

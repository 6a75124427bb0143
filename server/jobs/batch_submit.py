"""Batch submits: many images, one pipeline, each image its own asynchronous job.

Domain code for ``BatchService.SubmitBatch``. The request is checked whole first (as
:class:`~medcompute.server.jobs.batch.BatchProcessing` checks a batch); then every image goes
through :meth:`JobRunner.submit` exactly as a single submit does (its inputs fsynced on
disk and the job QUEUED in the catalog before the reply), fed with that image's payloads
from the one request stream.

Error fields are relative to the batch submit: image ``i`` is ``inputs[i]``, the shared
processing request ``process``, the rest the submit's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass

from medcompute.server.errors import InvalidArgument, named, renamed
from medcompute.server.jobs.batch import BatchProcessing
from medcompute.server.jobs.requests import SubmitRequest
from medcompute.server.jobs.views import JobView
from medcompute.server.storage.spool import ExpectedImage

__all__ = ["BatchSubmit", "Submitted"]

#: Payloads of one image waiting for its upload to take them.
_QUEUED_CHUNKS = 8
_END = object()


@dataclass
class Submitted:
    """One image of a batch submit: its job, or the error its upload ended with."""

    index: int
    job: JobView | None = None      # the job, as the runner gives it
    existing: bool = False
    error: BaseException | None = None


def _moves(index: int) -> tuple[tuple[str, str]]:
    return (("process.input", f"inputs[{index}]"),)


class BatchSubmit:
    def __init__(self, batch: BatchProcessing, runner):
        self.batch = batch
        self.runner = runner

    async def submit(self, template: SubmitRequest, images: list[ExpectedImage], payloads,
                     *, subscriber: str, on_job=None) -> list[Submitted]:
        """Submit every image as its own job (``template`` with that image as its input);
        one :class:`Submitted` per image, in the order of ``images``."""
        key = template.idempotency_key
        if len(key) > 120:
            raise InvalidArgument(f"expected at most 120 characters in a batch (each image's "
                                  f"job is keyed KEY#i), got {len(key)}", "idempotency_key")
        with named("process", (("inputs", "inputs"),)):
            requests = await self.batch.prepare(template.process, images,
                                                subscriber=subscriber)
        queues = [asyncio.Queue(_QUEUED_CHUNKS) for _ in requests]
        tasks = []
        for i, image in enumerate(images):
            item = dataclasses.replace(
                template,
                process=template.process.with_images([image, *template.process.operands]),
                idempotency_key=f"{key}#{i}" if key else "")
            tasks.append(asyncio.create_task(self._one(i, item, queues[i], subscriber,
                                                       on_job)))
        try:
            await self._demux(payloads, queues, tasks)
            return [await task for task in tasks]
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def _one(self, i: int, item: SubmitRequest, queue: asyncio.Queue, subscriber: str,
                   on_job) -> Submitted:
        async def payloads():
            while (got := await queue.get()) is not _END:
                yield got

        job_ids = []

        def created(job_id: str) -> None:
            job_ids.append(job_id)
            if on_job is not None:
                on_job(job_id)

        try:
            info, existing = await self.runner.submit(item, payloads(), subscriber=subscriber,
                                                      on_job=created)
        except Exception as exc:
            job = await self.runner.info(job_ids[0]) if job_ids else None
            return Submitted(i, job=job, error=renamed(exc, moves=_moves(i)))
        return Submitted(i, job=info, existing=existing)

    @staticmethod
    async def _demux(payloads, queues, tasks) -> None:
        """Hand each payload to its image's upload (as that upload's input); an upload
        that has ended already (it failed) drops the rest of its payloads."""
        async for i, payload in payloads:
            await _put(queues[i], tasks[i], (0, payload))
        for queue, task in zip(queues, tasks):
            await _put(queue, task, _END)


async def _put(queue: asyncio.Queue, task: asyncio.Task, item) -> None:
    if task.done():
        return
    put = asyncio.ensure_future(queue.put(item))
    await asyncio.wait({put, task}, return_when=asyncio.FIRST_COMPLETED)
    if not put.done():
        put.cancel()

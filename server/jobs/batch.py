"""Batch requests: one call carries many images and one pipeline; each image is its own job.

Domain code for ``BatchService.ProcessBatch``. The header is checked whole before any
job exists (a mistake in it fails the call). Then every image gets its own job, and each
job starts as soon as that image's bytes have arrived, while the next images are still
arriving; the jobs run concurrently, so the dispatcher spreads them over every worker
(coalescing small ones into few tasks while the workers are busy). Each job goes through
the same phases as a synchronous :meth:`ProcessingService.process` call and ends with its
own result, applied-operations record and usage record. :meth:`BatchProcessing.run`
yields each image's :class:`Item` as its job ends, in the order they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from medcompute.proto.v1 import processing_pb2
from medcompute.server.api.transport import NOT_PROTOBUF
from medcompute.server.errors import InvalidArgument, MedcomputeError, ResourceExhausted
from medcompute.server.jobs import derived
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.process import Outcome, ProcessingService, Request
from medcompute.server.storage.spool import ImageWriter

__all__ = ["BatchProcessing", "Item", "MAX_ITEMS", "batch_field", "chunk_item"]

#: The most images one batch request may carry.
MAX_ITEMS = 10_000
#: Seconds a stream that ended with images missing waits for its call's cancellation.
CUT_OFF_GRACE = 0.1


@dataclass
class Item:
    """How one image of a batch ended: its outcome, or the error its job failed with."""

    index: int
    outcome: Outcome | None = None
    error: BaseException | None = None
    job_id: str = ""


def batch_field(field: str | None, index: int | None) -> str | None:
    """The batch request's name for a field of one image's request: ``header.input...``
    is ``header.inputs[index]...``, any other ``header.X`` is ``header.process.X``."""
    if not field or not field.startswith("header.") or field.startswith(
            ("header.inputs", "header.process.")):
        return field                  # not a field of the header, or named already
    if field == "header.input" or field.startswith("header.input."):
        if index is None:
            return "header.process.input" + field[len("header.input"):]
        return f"header.inputs[{index}]" + field[len("header.input"):]
    return "header.process." + field[len("header."):]


@contextlib.contextmanager
def _named(index: int | None):
    """Errors about one image's request name their place in the batch request."""
    try:
        yield
    except MedcomputeError as exc:
        _rename(exc, index)
        raise


def _rename(exc: BaseException, index: int | None) -> BaseException:
    if isinstance(exc, MedcomputeError):
        renamed = batch_field(exc.field, index)
        if renamed != exc.field:
            exc.field = renamed
            exc.args = (exc.details,)
    return exc


def chunk_item(index: int, message, requests) -> int:
    """The image a batch chunk (request ``index`` of the stream) belongs to, after the
    checks every batch call makes: an image of the batch, not a stored one, no operand."""
    i = message.item
    if i >= len(requests):
        raise InvalidArgument(f"image {i} does not exist: this batch has {len(requests)} "
                              "image(s), counted from 0", f"request[{index}].chunk.item")
    if requests[i].expected[0].stored is not None:
        raise InvalidArgument(f"image {i} is a stored image (image_id); send no chunks for "
                              "it", f"request[{index}].chunk.item")
    if message.chunk.HasField("operand"):
        raise InvalidArgument("not used in a batch (the operands are stored images)",
                              f"request[{index}].chunk.chunk.operand")
    return i


class BatchProcessing:
    """Runs batch requests through a :class:`ProcessingService`."""

    def __init__(self, service: ProcessingService, *, concurrency: int | None = None):
        self.service = service
        #: Jobs of one batch in flight at once (the rest wait for their turn).
        self.concurrency = concurrency or max(4, service.config.max_queue)

    async def prepare(self, header, *, subscriber: str) -> list[Request]:
        """One checked request per image; InvalidArgument naming the batch's field."""
        if header.process.HasField("input"):
            raise InvalidArgument("leave it unset in a batch: the images are in "
                                  "header.inputs", "header.process.input")
        if not header.inputs:
            raise InvalidArgument("expected at least one image", "header.inputs")
        if len(header.inputs) > MAX_ITEMS:
            raise ResourceExhausted(f"the batch has {len(header.inputs)} images; this server "
                                    f"accepts at most {MAX_ITEMS} per request",
                                    "header.inputs")
        for k, source in enumerate(header.process.operands):
            if source.WhichOneof("source") != "image_id":
                raise InvalidArgument("in a batch the operands are shared by every image and "
                                      "must be stored images (image_id); register it first "
                                      "(medcompute store put)",
                                      f"header.process.operands[{k}]")
        requests = []
        for i, source in enumerate(header.inputs):
            item = processing_pb2.ProcessHeader()
            item.CopyFrom(header.process)
            item.input.CopyFrom(source)
            with _named(i):
                request = await self.service.prepare(item, subscriber=subscriber)
                # RAW images: limits and pipeline checked before any job exists.
                self.service.precheck(request)
            requests.append(request)
        return requests

    async def run(self, header, chunks: AsyncIterator, *, subscriber: str,
                  on_job=None, cancelled=None) -> AsyncIterator[Item]:
        """Receive the images, run one job per image, yield each :class:`Item` as it ends.

        ``chunks`` yields (message index, BatchChunk). A protocol mistake in the stream
        (a chunk for an image that does not exist or is stored, a message that is not a
        request) ends the call with InvalidArgument; the jobs still running are cancelled
        and recorded so. ``cancelled()`` says whether the caller went away: a stream that
        ends then was cut off, and the images it lacks are cancelled, not failed.
        """
        service = self.service
        requests = await self.prepare(header, subscriber=subscriber)
        incoming = sum(r.expected[0].size for r in requests if r.expected[0].stored is None)
        where = ["spool", "catalog"] + (["blobs"] if header.process.store_result else [])
        service.space.check(*where, incoming=incoming)
        n = len(requests)
        ready: asyncio.Queue[Item] = asyncio.Queue()
        pending: dict[int, tuple[Request, jobs.Job]] = {}
        for i, request in enumerate(requests):
            if request.expected[0].stored is not None:
                reused = await derived.reuse(service, request.header, request.expected,
                                             subscriber=subscriber,
                                             output_format=request.output_format)
                if reused is not None:
                    ready.put_nowait(Item(i, outcome=reused, job_id=reused.job.id))
                    continue
            pending[i] = (request, service.new_job(request, subscriber=subscriber))
        if pending:
            await service.catalog.put_jobs([job for _, job in pending.values()])
            if on_job is not None:
                on_job([job.id for _, job in pending.values()])
        slots = asyncio.Semaphore(self.concurrency)
        tasks: dict[int, asyncio.Task] = {}
        # Small images travel to the worker in memory (None), as for a synchronous Process.
        paths = {i: None if service.in_memory(request) else service.spool.path(job.id, "in0")
                 for i, (request, job) in pending.items()}

        def launch(i: int, bytes_in: int, error: BaseException | None = None,
                   data: bytes | None = None) -> None:
            request, job = pending[i]
            tasks[i] = asyncio.create_task(self._item(i, request, job, paths.get(i), data,
                                                      bytes_in, slots, ready, error))

        receiver = asyncio.create_task(self._receive(chunks, requests, pending, paths, launch,
                                                     cancelled or (lambda: False)))
        try:
            for _ in range(n):
                if not receiver.done():
                    getter = asyncio.ensure_future(ready.get())
                    await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                    if getter.done():
                        yield getter.result()
                        continue
                    getter.cancel()
                    receiver.result()          # a mistake in the stream ends the call
                yield await ready.get()
        finally:
            for task in (receiver, *tasks.values()):
                task.cancel()
            for task in (receiver, *tasks.values()):
                with contextlib.suppress(BaseException):
                    await task
            ended = (receiver.exception() if receiver.done() and not receiver.cancelled()
                     else None) or asyncio.CancelledError()
            for i, (request, job) in pending.items():
                if i not in tasks:           # never started: its job is ended here
                    await asyncio.shield(service.fail(job, ended, bytes_in=0,
                                                      n_images=len(request.expected)))
            service.spool.remove(*paths.values())

    async def _receive(self, chunks, requests, pending, paths, launch, cancelled) -> None:
        """Spool each inline image; launch its job once its bytes are all there (or with
        the error that ended its upload)."""
        writers: dict[int, ImageWriter] = {}
        wire = dict.fromkeys(pending, 0)
        launched: set[int] = set()
        failed: set[int] = set()

        def start(i: int, error: BaseException | None = None, data=None) -> None:
            launched.add(i)
            launch(i, wire[i], error, data)

        for i in pending:
            if requests[i].expected[0].stored is not None:
                start(i)
        index = 0
        try:
            async for index, message in chunks:
                i = chunk_item(index, message, requests)
                if i in failed:
                    continue                 # its job has failed already: the rest is dropped
                if i in launched:
                    raise InvalidArgument(f"more bytes arrived than the "
                                          f"{requests[i].expected[0].size} declared",
                                          f"header.inputs[{i}].size")
                wire[i] += len(message.chunk.data)
                writer = writers.get(i)
                if writer is None:
                    writer = writers[i] = ImageWriter(requests[i].expected[0], paths[i])
                try:
                    writer.write(message.chunk.data)
                    if writer.complete:
                        del writers[i]
                        writer.finish()
                        start(i, data=writer.data)
                except InvalidArgument as exc:
                    writer.close()
                    writers.pop(i, None)
                    failed.add(i)
                    start(i, _rename(exc, i))
        except DecodeError:
            raise InvalidArgument(NOT_PROTOBUF, f"request[{index + 1}]") from None
        finally:
            for writer in writers.values():
                writer.close()
        if len(launched) < len(pending):
            # A call its caller cancels sees its stream end before gRPC marks it cancelled
            # (and cancels this task): give that a moment before failing the images the
            # stream lacks, so that they end CANCELLED rather than FAILED.
            await asyncio.sleep(CUT_OFF_GRACE)
            if cancelled():
                raise asyncio.CancelledError()
        # The stream has ended: an image whose bytes did not all arrive fails alone.
        for i in pending:
            if i not in launched:
                writer = writers.get(i) or ImageWriter(requests[i].expected[0], paths[i])
                try:
                    writer.finish()
                    start(i)
                except InvalidArgument as exc:
                    start(i, _rename(exc, i))

    async def _item(self, i: int, request: Request, job: jobs.Job, path, data, bytes_in: int,
                    slots: asyncio.Semaphore, ready: asyncio.Queue,
                    error: BaseException | None) -> None:
        service = self.service
        stored = request.expected[0].stored is not None
        out_path = service.spool.path(job.id, "out") if path or stored else None
        try:
            if error is not None:
                raise error
            async with slots:
                with _named(i):
                    others = [None] * (len(request.expected) - 1)
                    staged = await service.stage(request, [path, *others], [data, *others])
                    job = jobs.apply(job, jobs.InputsReceived(time.time()))
                    outcome = await service.execute(job, request, staged, out_path,
                                                    bytes_in=bytes_in)
        except BaseException as exc:
            service.spool.remove(out_path)
            await asyncio.shield(service.fail(job, exc, bytes_in=bytes_in,
                                              n_images=len(request.expected)))
            if not isinstance(exc, Exception):
                raise
            ready.put_nowait(Item(i, error=_rename(exc, i), job_id=job.id))
            return
        finally:
            service.spool.remove(path)
        ready.put_nowait(Item(i, outcome=outcome, job_id=job.id))

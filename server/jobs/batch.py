"""Batch requests: one call carries many images and one pipeline; each image is its own job.

Domain code for ``BatchService.ProcessBatch``. The request is checked whole before any
job exists (a mistake in it fails the call). Then every image gets its own job, and each
job starts as soon as that image's bytes have arrived, while the next images are still
arriving; the jobs run concurrently, so the dispatcher spreads them over every worker
(coalescing small ones into few tasks while the workers are busy). Each job goes through
the phases of every job (pipeline.py) and ends with its own result, applied-operations
record and usage record. Images that share shape, dtype and pipeline are computed as
stacks (stacks.py, :class:`_Stacking`): while the workers are busy, arrived images of one
kind gather and leave together, in one worker call, and the ends of a stack's jobs are
recorded in one transaction. :meth:`BatchProcessing.run` yields each image's :class:`Item` as
its job ends, in the order they end.

Error fields are relative to the batch request: image ``i`` is ``inputs[i]``, every other
field one of the request all images share.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from medcompute.server.errors import InvalidArgument, ResourceExhausted, named, renamed
from medcompute.server.jobs import derived, stacks
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.pipeline import InMemory, Spooled
from medcompute.server.jobs.process import ProcessingService
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.jobs.results import JobResult
from medcompute.server.storage.spool import ExpectedImage, ImageWriter

__all__ = ["BatchProcessing", "Item", "MAX_ITEMS", "image_moves"]

#: The most images one batch request may carry.
MAX_ITEMS = 10_000
#: Seconds a stream that ended with images missing waits for its call's cancellation.
CUT_OFF_GRACE = 0.1


@dataclass
class Item:
    """How one image of a batch ended: its result, or the error its job failed with."""

    index: int
    result: JobResult | None = None
    error: BaseException | None = None
    job_id: str = ""


def image_moves(index: int) -> tuple[tuple[str, str], ...]:
    """One image's request names its image ``input`` and its regions ``input_region`` and
    ``output_region``; the batch's, ``inputs[index]``, ``input_regions[index]`` and
    ``output_regions[index]``."""
    return (("input", f"inputs[{index}]"), ("input_region", f"input_regions[{index}]"),
            ("output_region", f"output_regions[{index}]"))


class BatchProcessing:
    """Runs batch requests through a :class:`ProcessingService`."""

    def __init__(self, service: ProcessingService, *, concurrency: int | None = None):
        self.service = service
        #: Jobs of one batch in flight at once (the rest wait for their turn).
        self.concurrency = concurrency or max(4, service.config.max_queue)

    async def prepare(self, template: ProcessRequest, images: list[ExpectedImage], *,
                      subscriber: str, input_regions=(), output_regions=()
                      ) -> list[ProcessRequest]:
        """One checked request per image (``template`` with that image as its input, and
        its shared-memory regions, looked up and checked, where it has them)."""
        if not images:
            raise InvalidArgument("expected at least one image", "inputs")
        if len(images) > MAX_ITEMS:
            raise ResourceExhausted(f"the batch has {len(images)} images; this server "
                                    f"accepts at most {MAX_ITEMS} per request", "inputs")
        for k, e in enumerate(template.operands):
            if e.stored is None:
                raise InvalidArgument("in a batch the operands are shared by every image and "
                                      "must be stored images (image_id); register it first "
                                      "(medcompute store put)", f"operands[{k}]")
        requests = []
        for i, image in enumerate(images):
            with named(moves=image_moves(i)):
                request = await self.service.prepare(
                    template.with_images([image, *template.operands]), subscriber=subscriber)
                regions = {}
                if input_regions and input_regions[i] is not None:
                    regions["input_region"] = input_regions[i]
                if output_regions and output_regions[i] is not None:
                    regions["output_region"] = output_regions[i]
                if regions:
                    request = self.service.admit_regions(replace(request, **regions),
                                                         subscriber=subscriber)
                # RAW images: limits and pipeline checked before any job exists.
                self.service.precheck(request)
            requests.append(request)
        return requests

    async def run(self, template: ProcessRequest, images: list[ExpectedImage],
                  payloads: AsyncIterator, *, subscriber: str, on_job=None,
                  cancelled=None, input_regions=(), output_regions=()
                  ) -> AsyncIterator[Item]:
        """Receive the images, run one job per image, yield each :class:`Item` as it ends.

        ``payloads`` yields (image, payload). A protocol mistake in the stream (raised by
        it) ends the call; the jobs still running are cancelled and recorded so.
        ``cancelled()`` says whether the caller went away: a stream that ends then was cut
        off, and the images it lacks are cancelled, not failed.
        """
        service = self.service
        requests = await self.prepare(template, images, subscriber=subscriber,
                                      input_regions=input_regions,
                                      output_regions=output_regions)
        incoming = sum(r.expected[0].size for r in requests
                       if r.expected[0].stored is None and r.input_region is None)
        where = ["spool", "catalog"] + (["blobs"] if template.store_result else [])
        service.space.check(*where, incoming=incoming)
        n = len(requests)
        ready: asyncio.Queue[Item] = asyncio.Queue()
        pending: dict[int, tuple[ProcessRequest, jobs.Job]] = {}
        for i, request in enumerate(requests):
            if request.expected[0].stored is not None:
                reused = await derived.reuse(service, request, subscriber=subscriber)
                if reused is not None:
                    ready.put_nowait(Item(i, result=reused, job_id=reused.job.id))
                    continue
            pending[i] = (request, service.new_job(request, subscriber=subscriber))
        if pending:
            await service.catalog.put_jobs([job for _, job in pending.values()])
            if on_job is not None:
                on_job([job.id for _, job in pending.values()])
        slots = asyncio.Semaphore(self.concurrency)
        tasks: dict[int, asyncio.Task] = {}
        stacking = _Stacking(self, pending, slots, ready, tasks)
        # Small images travel to the worker in memory (None), as for a synchronous Process;
        # so do the images that may be stacked.
        paths = {i: None if i in stacking.keys or request.input_region is not None
                 else service.place(request).paths(job.id, 1)[0]
                 for i, (request, job) in pending.items()}

        def launch(i: int, bytes_in: int, error: BaseException | None = None,
                   data: bytes | None = None) -> None:
            if i in stacking.keys and error is None:
                stacking.arrived(i, data, bytes_in)
                return
            request, job = pending[i]
            tasks[i] = asyncio.create_task(self._item(i, request, job, paths.get(i), data,
                                                      bytes_in, slots, ready, error))

        receiver = asyncio.create_task(self._receive(payloads, requests, pending, paths, launch,
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
            stacking.closed = True
            for task in (receiver, *tasks.values()):
                task.cancel()
            for task in (receiver, *set(tasks.values())):
                with contextlib.suppress(BaseException):
                    await task
            ended = (receiver.exception() if receiver.done() and not receiver.cancelled()
                     else None) or asyncio.CancelledError()
            for i, (request, job) in pending.items():
                if i not in tasks:           # never started: its job is ended here
                    await asyncio.shield(service.fail(job, ended, bytes_in=0,
                                                      n_images=len(request.expected)))
            service.spool.remove(*paths.values())

    async def _receive(self, payloads, requests, pending, paths, launch, cancelled) -> None:
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
            if requests[i].input_region is not None:
                wire[i] = requests[i].input_region.length   # read from the region
                start(i)
            elif requests[i].expected[0].stored is not None:
                start(i)
        try:
            async for i, payload in payloads:
                if i in failed:
                    continue                 # its job has failed already: the rest is dropped
                if i in launched:
                    raise InvalidArgument(f"more bytes arrived than the "
                                          f"{requests[i].expected[0].size} declared",
                                          f"inputs[{i}].size")
                wire[i] += len(payload)
                writer = writers.get(i)
                if writer is None:
                    writer = writers[i] = ImageWriter(requests[i].expected[0], paths[i])
                try:
                    writer.write(payload)
                    if writer.complete:
                        del writers[i]
                        writer.finish()
                        start(i, data=writer.data)
                except InvalidArgument as exc:
                    writer.close()
                    writers.pop(i, None)
                    failed.add(i)
                    start(i, renamed(exc, moves=image_moves(i)))
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
                    start(i, renamed(exc, moves=image_moves(i)))

    async def _stack(self, members: list[tuple], slots: asyncio.Semaphore,
                     ready: asyncio.Queue) -> None:
        """Run a stack: ``members`` (index, request, job, data, bytes_in)."""
        stack = [stacks.Member(job, request, data, bytes_in)
                 for _, request, job, data, bytes_in in members]
        try:
            async with slots:
                outcomes = await stacks.run(self.service, stack)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            outcomes = [exc] * len(members)
        for (i, _, job, _, _), outcome in zip(members, outcomes):
            if isinstance(outcome, BaseException):
                ready.put_nowait(Item(i, error=renamed(outcome, moves=image_moves(i)),
                                      job_id=job.id))
            else:
                ready.put_nowait(Item(i, result=outcome, job_id=job.id))

    async def _item(self, i: int, request: ProcessRequest, job: jobs.Job, path, data,
                    bytes_in: int, slots: asyncio.Semaphore, ready: asyncio.Queue,
                    error: BaseException | None) -> None:
        service = self.service
        stored = request.expected[0].stored is not None
        # Small images travel in memory (path None), as for a synchronous Process.
        place = Spooled(service.spool) if path or stored else InMemory()
        others = [None] * (len(request.expected) - 1)
        try:
            if error is not None:
                ended = await service.run(job, request, place, paths=[path, *others],
                                          bytes_in=bytes_in, error=error)
            else:
                async with slots:
                    ended = await service.run(job, request, place, paths=[path, *others],
                                              datas=[data, *others], bytes_in=bytes_in)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            ready.put_nowait(Item(i, error=renamed(exc, moves=image_moves(i)), job_id=job.id))
            return
        ready.put_nowait(Item(i, result=ended, job_id=job.id))


class _Stacking:
    """Which images of a batch run as stacks, and when each stack leaves.

    An image that may be stacked (stacks.py's key) waits, once its bytes have arrived,
    with the others of its key. While fewer stacks are running than the cluster has
    workers, the waiting images leave at once (an image alone runs as a job alone: no
    latency is added); while the workers are busy they gather, and leave together, up to
    the stack size in bytes, when a stack ends."""

    def __init__(self, batch: BatchProcessing, pending: dict, slots, ready, tasks: dict):
        service = batch.service
        self.batch, self.pending, self.slots, self.ready = batch, pending, slots, ready
        self.tasks = tasks
        self.limit = service.config.stack_bytes
        self.keys = {i: key for i, (request, _) in pending.items()
                     if (key := stacks.stack_key(service, request)) is not None}
        self.sizes = {i: stacks.work_bytes(pending[i][0]) for i in self.keys}
        self.waiting: dict[tuple, list[tuple[int, bytes, int]]] = {}
        self.order: list[tuple] = []                # keys with waiting images, in turn
        self.running = 0
        self.closed = False

    def arrived(self, i: int, data, bytes_in: int) -> None:
        key = self.keys[i]
        if key not in self.waiting:
            self.waiting[key] = []
            self.order.append(key)
        self.waiting[key].append((i, data, bytes_in))
        self.pump()

    def pump(self) -> None:
        dispatcher = self.batch.service.dispatcher
        workers = max(1, dispatcher.slots("cpu") + dispatcher.slots("gpu"))
        while self.order and self.running < workers and not self.closed:
            key = self.order.pop(0)
            queue = self.waiting[key]
            taken, used = [], 0
            while queue and (not taken or used + self.sizes[queue[0][0]] <= self.limit):
                taken.append(queue.pop(0))
                used += self.sizes[taken[-1][0]]
            if queue:
                self.order.append(key)
            else:
                del self.waiting[key]
            self.running += 1
            if len(taken) == 1:
                [(i, data, bytes_in)] = taken
                request, job = self.pending[i]
                task = asyncio.create_task(self.batch._item(
                    i, request, job, None, data, bytes_in, self.slots, self.ready, None))
            else:
                task = asyncio.create_task(self.batch._stack(
                    [(i, *self.pending[i], data, bytes_in) for i, data, bytes_in in taken],
                    self.slots, self.ready))
            for i, _, _ in taken:
                self.tasks[i] = task
            task.add_done_callback(self._ended)

    def _ended(self, _task) -> None:
        self.running -= 1
        self.pump()

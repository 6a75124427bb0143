"""Small jobs coalesced into few worker calls while the workers are busy (the
dispatcher's own batching, below the dynamic batcher of jobs/batcher.py)."""

from __future__ import annotations

import asyncio
from collections import deque

from medcompute.server.worker.specs import StackResult, StackSpec, TaskResult, TaskSpec

__all__ = ["SmallJobs", "CALLERS_GONE"]


#: Marks a batch whose callers all went away (see :meth:`SmallJobs.run`).
CALLERS_GONE = object()


class SmallJobs:
    """Coalesces small jobs of one kind into few calls while the workers are busy.

    At most ``slots`` batches are in flight; a job that finds a free slot is sent at once
    (no added latency at low load), the others queue and leave together, up to
    ``max_items`` per batch, when a slot frees. A batch goes to a CPU worker's
    :class:`~medcompute.server.worker.tasks.WorkerRunner` directly where it can, else as a task.
    """

    def __init__(self, dispatcher, kind: str, max_items: int):
        # dispatcher: the Dispatcher whose send_batch, slots and translate it uses
        self.dispatcher = dispatcher
        self.kind = kind
        self.max_items = max_items
        self.queue: deque[tuple[TaskSpec | StackSpec, asyncio.Future]] = deque()
        self.in_flight = 0
        self.tasks = 0                  # batches sent (direct calls and tasks)
        self.sent: dict[asyncio.Future, tuple] = {}

    async def run(self, spec: TaskSpec | StackSpec) -> TaskResult | StackResult:
        waiter = asyncio.get_running_loop().create_future()
        self.queue.append((spec, waiter))
        self._pump()
        try:
            return await waiter
        except asyncio.CancelledError:
            # When every caller of a batch has gone, the batch is cancelled too.
            cancel, waiters = self.sent.pop(waiter, (None, ()))
            if cancel and all(w.done() for w in waiters):
                stop = cancel[0]
                cancel.append(CALLERS_GONE)     # not sent again if its worker goes
                await asyncio.shield(stop())
            raise

    def _pump(self) -> None:
        slots = max(1, self.dispatcher.slots(self.kind))
        while self.queue and self.in_flight < slots:
            batch = []
            while self.queue and len(batch) < self.max_items:
                spec, waiter = self.queue.popleft()
                if not waiter.done():   # a cancelled call leaves the queue here
                    batch.append((spec, waiter))
            if not batch:
                return
            self.in_flight += 1
            self.tasks += 1
            specs = [spec for spec, _ in batch]
            waiters = [w for _, w in batch]
            cancel: list = []           # how to cancel the batch, once it is sent
            for w in waiters:
                self.sent[w] = (cancel, waiters)
            asyncio.create_task(self._collect(specs, waiters, cancel))

    async def _collect(self, specs, waiters, cancel: list) -> None:
        try:
            try:
                results = await self.dispatcher.send_batch(self.kind, specs, cancel)
            except BaseException as exc:
                error = self.dispatcher.translate(exc, self.kind)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
                return
            for waiter, outcome in zip(waiters, results):
                if waiter.done():
                    continue
                if isinstance(outcome, BaseException):
                    waiter.set_exception(outcome)
                else:
                    waiter.set_result(outcome)
        finally:
            for waiter in waiters:
                self.sent.pop(waiter, None)
            self.in_flight -= 1
            self._pump()

"""Dynamic batching: concurrent single-image Process calls computed as one stack.

A synchronous call whose image may be stacked (stacks.py: a RAW inline image, a RAW
result not kept in the store, here without operands) is admitted and received as any
call is; then, instead of running alone, it waits up to ``batch_delay`` seconds for calls
with the same pipeline and geometry (the stack key). A group leaves when its delay has
passed or it holds ``stack_bytes`` of work, while fewer stacks are running than the
cluster has workers; when several groups are ready, the one holding the call of highest
priority leaves first (then the oldest), and inside a group the calls of higher priority
take the places first. As Triton's dynamic batcher: a max queue delay, priority levels,
and a queue limit (``batch_queue`` calls per subscriber; more answer
RESOURCE_EXHAUSTED before any job exists).

Each call keeps its own job, result, usage record and audit entry: the stack only
computes; every call records its own end, in its own task. A call cancelled, or past its
deadline, leaves the queue (or, once its stack runs, stops waiting for it); its job ends
CANCELLED and the others of its stack are untouched.

A call whose image is in a client's shared-memory region (regions.py) joins a stack as
any other: its image is read from the region (by the worker when every image of the stack
is in one, else by the server into the stack), and the worker writes its result there.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field

from medcompute.server.errors import ResourceExhausted
from medcompute.server.jobs import stacks
from medcompute.server.jobs.pipeline import InMemory, Payloads
from medcompute.server.jobs.process import ProcessingService
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.jobs.results import JobResult

__all__ = ["DynamicBatcher", "LOW", "NORMAL", "HIGH"]

log = logging.getLogger(__name__)

#: Priority levels: higher leaves first.
LOW, NORMAL, HIGH = 0, 1, 2


@dataclass(eq=False)
class _Waiting:
    """One call waiting for its stack to leave."""

    member: stacks.Member
    priority: int
    seq: int
    size: int
    future: asyncio.Future
    release: object = field(default=None)   # frees the call's place in its subscriber's queue
    #: Once sent: the task computing its stack, and the calls of that stack.
    stack: asyncio.Task | None = None
    mates: list = field(default_factory=list)


class DynamicBatcher:
    """Joins concurrent single-image calls into stacks (see the module's docstring)."""

    def __init__(self, service: ProcessingService):
        self.service = service
        self.waiting: dict[tuple, list[_Waiting]] = {}    # by stack key, in arrival order
        self.due: dict[tuple, float] = {}                  # loop time each group leaves
        self.queued: dict[str, int] = {}                   # calls per subscriber
        self.running = 0                                   # stacks computing now
        self.stacks = 0                                    # stacks sent, ever
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        config = self.service.config
        return config.batch_delay > 0 and config.stack_bytes > 0

    def key(self, request: ProcessRequest) -> tuple | None:
        """The stack key of a call that may be batched, else None."""
        if not self.enabled or request.operands:
            return None
        return stacks.stack_key(self.service, request)

    async def process(self, request: ProcessRequest, payloads: Payloads, *, subscriber: str,
                      on_job=None, priority: int = NORMAL) -> JobResult:
        """As :meth:`ProcessingService.process`; a call that may be batched joins a
        stack of concurrent calls."""
        service = self.service
        key = self.key(request)
        if key is None:
            return await service.process(request, payloads, subscriber=subscriber,
                                         on_job=on_job)
        release = self._admit(subscriber)
        try:
            request = await service.prepare(request, subscriber=subscriber)
            if request.input_region is not None or request.output_region is not None:
                request = service.admit_regions(request, subscriber=subscriber)
            service.check_space(request, "spool")
            job = service.new_job(request, subscriber=subscriber)
            await service.catalog.put_job(job)
            if on_job is not None:
                on_job(job.id)
            bytes_in = 0
            try:
                service.precheck(request)
                if request.input_region is not None:
                    # Read from the client's shared-memory region where the stack is made
                    # (by its worker when every image of the stack is in a region).
                    bytes_in = request.input_region.length
                    datas = [None]
                else:
                    bytes_in, datas = await service.receive(
                        request, payloads, [None] * len(request.expected), InMemory())
                member = stacks.Member(job, request, datas[0], bytes_in)
                ended = await self._join(key, member, priority, release)
                return await service.complete(ended)   # a region's result: written there
            except BaseException as exc:
                await asyncio.shield(service.fail(job, exc, bytes_in=bytes_in,
                                                  n_images=len(request.expected)))
                raise
        finally:
            release()

    # -- the queue ------------------------------------------------------------------
    def _admit(self, subscriber: str):
        """A place in the subscriber's queue (RESOURCE_EXHAUSTED when it is full); the
        function that gives it back (once)."""
        limit = self.service.config.batch_queue
        held = self.queued.get(subscriber, 0)
        if held >= limit:
            raise ResourceExhausted(
                f"this subscriber has {held} Process calls waiting to be batched, its limit "
                f"(batch_queue={limit}); retry when some have ended")
        self.queued[subscriber] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self.queued[subscriber] - 1
            if left:
                self.queued[subscriber] = left
            else:
                del self.queued[subscriber]
        return release

    async def _join(self, key: tuple, member: stacks.Member, priority: int,
                    release) -> JobResult:
        loop = asyncio.get_running_loop()
        entry = _Waiting(member, priority, next(self._seq), stacks.work_bytes(member.request),
                         loop.create_future(), release)
        group = self.waiting.setdefault(key, [])
        if not group:
            self.due[key] = loop.time() + self.service.config.batch_delay
        group.append(entry)
        self._pump()
        try:
            return await entry.future
        finally:
            if not entry.future.done():
                entry.future.cancel()
            if entry.stack is not None and all(e.future.done() for e in entry.mates):
                # Every call of its stack has gone: the stack stops (its worker too when
                # it is inside a kernel), so the calls behind it do not wait for it.
                entry.stack.cancel()
            if entry in self.waiting.get(key, ()):      # cancelled while waiting
                self.waiting[key].remove(entry)
                if not self.waiting[key]:
                    self._forget(key)

    def _forget(self, key: tuple) -> None:
        self.waiting.pop(key, None)
        self.due.pop(key, None)

    def _ready(self, now: float) -> list[tuple]:
        limit = self.service.config.stack_bytes
        return [k for k, group in self.waiting.items()
                if self.due[k] <= now or sum(e.size for e in group) >= limit]

    def _pump(self) -> None:
        """Send the ready groups while workers are free, highest priority first; set the
        timer for the next group's delay."""
        loop = asyncio.get_running_loop()
        dispatcher = self.service.dispatcher
        workers = max(1, dispatcher.slots("cpu") + dispatcher.slots("gpu"))
        now = loop.time()
        while self.running < workers:
            ready = self._ready(now)
            if not ready:
                break
            key = min(ready, key=lambda k: min((-e.priority, e.seq) for e in self.waiting[k]))
            self._send(key)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        later = [due for k, due in self.due.items() if due > now]
        if later:
            self._timer = loop.call_at(min(later), self._pump)

    def _send(self, key: tuple) -> None:
        limit = self.service.config.stack_bytes
        taken, used = [], 0
        for entry in sorted(self.waiting[key], key=lambda e: (-e.priority, e.seq)):
            if taken and used + entry.size > limit:
                break
            taken.append(entry)
            used += entry.size
        rest = [e for e in self.waiting[key] if e not in taken]
        if rest:
            self.waiting[key] = rest
        else:
            self._forget(key)
        for entry in taken:
            entry.release()                      # left the queue
        self.running += 1
        self.stacks += 1
        task = asyncio.create_task(self._run(taken))
        task.add_done_callback(self._ended)
        for entry in taken:
            entry.stack, entry.mates = task, taken

    def _ended(self, _task) -> None:
        self.running -= 1
        self._pump()

    async def _run(self, taken: list[_Waiting]) -> None:
        """Compute a stack and hand each waiting call its outcome (a call that went
        away meanwhile is skipped: it records its own end)."""
        try:
            outcomes = await stacks.compute(self.service, [e.member for e in taken])
        except BaseException as exc:
            if not isinstance(exc, Exception):
                for entry in taken:
                    if not entry.future.done():
                        entry.future.set_exception(asyncio.CancelledError())
                raise
            outcomes = [exc] * len(taken)
        for entry, outcome in zip(taken, outcomes):
            if entry.future.done():
                continue
            if isinstance(outcome, BaseException):
                entry.future.set_exception(outcome)
            else:
                entry.future.set_result(outcome)


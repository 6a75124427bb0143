"""Asynchronous jobs: submitted now, run in the background, watched, fetched, delivered.

A submit stores the job and its request in the catalog, writes the inputs under
``<data_dir>/jobs/<job id>/`` (fsynced) and marks the job QUEUED in one transaction;
only then does the caller get its id. The :class:`JobRunner` runs queued jobs through
the same phases as a synchronous call (``Pipeline.run``, with a
:class:`~medcompute.server.jobs.pipeline.JobFolder` as the place of its inputs), keeps the
result file next to the inputs, and records the end of the job, its usage record, its
result and its delivery in one transaction.

Each step is an event of the job state machine (states.py); the instructions it returns
are carried out by effects.py. Leases (leases.py) make a stopped server's jobs visible
and take them over; queries.py answers about jobs and the inbox, as plain values
(views.py) that api/jobs.py turns into messages. The request and result descriptions are
stored as the API layer encoded them: the :class:`~medcompute.server.jobs.views.JobCodec`
it lends the runner reads and writes them.

:data:`started_hook` is the tests' fault-injection seam: a coroutine function awaited with
each job once its RUNNING state is persisted here, before its work goes to a worker (a
test's entry point holds jobs RUNNING there until it kills the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable

from medcompute.server.config import ServerConfig
from medcompute.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    named,
    shown_id,
)
from medcompute.server.jobs import derived
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.effects import JobEffects
from medcompute.server.jobs.leases import Leases
from medcompute.server.jobs.pipeline import JobFolder
from medcompute.server.jobs.queries import JobQueries
from medcompute.server.jobs.views import (
    JobAudit,
    JobCodec,
    JobPage,
    JobView,
    StoredResult,
)

__all__ = ["JobRunner", "MAX_ATTEMPTS", "started_hook"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = jobs.MAX_ATTEMPTS
_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
_ENDED = (jobs.State.SUCCEEDED, jobs.State.FAILED, jobs.State.CANCELLED)
#: The tests' seam (see the module's docstring); None: nothing is awaited.
started_hook: Callable[[jobs.Job], Awaitable[None]] | None = None


class JobRunner:
    """Runs the asynchronous jobs of one server; see the module's docstring.

    ``codec`` reads and writes the stored request and result descriptions, ``audit``
    gives the audit entry of the call that submits a job (both lent by the API layer).
    """

    def __init__(self, config: ServerConfig, service, catalog: Catalog, keys=None, *,
                 codec: JobCodec | None = None, audit: JobAudit | None = None):
        self.config = config
        self.service = service
        self.catalog = catalog
        self.keys = keys
        self.codec = codec
        self.effects = JobEffects(config, catalog, service, launch=self._launch, audit=audit)
        self.leases = Leases(config, catalog, service, self.effects)
        self.queries = JobQueries(catalog, self.effects, codec)
        self.dir = self.effects.dir
        self._slots = asyncio.Semaphore(max(1, config.max_queue))
        self._loop: asyncio.Task | None = None

    def active(self) -> int:
        """Asynchronous jobs receiving, waiting or running on this server."""
        return len(self.effects.tasks)

    # -- life-cycle -----------------------------------------------------------------
    async def start(self) -> None:
        self.service.dispatcher.add_listener(self._on_worker_event)
        loop = asyncio.get_running_loop()

        def changed(_job_id: str) -> None:      # a job changed on any front end
            if not loop.is_closed():
                loop.call_soon_threadsafe(lambda: loop.create_task(self.effects.notify()))
        self.catalog.on_change(changed)
        await self.recover()
        self._loop = asyncio.create_task(self._upkeep())

    async def stop(self) -> None:
        """Stop running jobs without ending them: their leases are released, so the next
        server of this data directory takes them over at once."""
        self.effects.stopping = True
        with contextlib.suppress(ValueError):
            self.service.dispatcher.remove_listener(self._on_worker_event)
        tasks = [t for t in (self._loop, *self.effects.tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.catalog.release_leases()

    async def _upkeep(self) -> None:
        await self.leases.upkeep()

    async def recover(self) -> None:
        """Take over the jobs of servers that stopped (this one's earlier life included)."""
        await self.leases.recover()

    async def expire_results(self, now: float | None = None) -> int:
        """Remove the files of jobs that ended more than the result retention ago."""
        return await self.leases.expire_results(now)

    def _on_worker_event(self, message: dict) -> None:
        # A slab's start says little (the finished slabs are counted instead); a whole job's
        # start names its worker. Events arrive through the scheduler, possibly late.
        # Several small jobs run together are announced once (``jobs``).
        if message.get("slab") is not None:
            return
        for job_id in message.get("jobs") or [message.get("job")]:
            if job_id in self.effects.tasks:
                fraction, text = self.effects.progress_of(job_id)
                if not text.startswith("slab "):
                    where = "sent to" if message.get("event") == "sent" else "started on"
                    self.effects.set_progress(job_id, fraction,
                                              f"{where} {message.get('worker', 'a worker')}")

    # -- submit -------------------------------------------------------------------
    async def _check_destination(self, sender: str, destination: str) -> str:
        if not destination or destination == sender:
            return ""
        if not await self.catalog.delivery_allowed(sender, destination):
            raise PermissionDenied(
                f"this subscriber may not deliver to {shown_id(destination)}: an administrator "
                "allows it with `medcompute deliveries allow`", "header.destination")
        keys = await asyncio.to_thread(self.keys.list, destination) if self.keys else []
        if not any(k.valid and "receive" in k.roles for k in keys):
            raise FailedPrecondition(
                f"{shown_id(destination)} has no valid key with the receive role",
                "header.destination")
        return destination

    async def submit(self, submit, chunks, *, subscriber: str,
                     on_job=None) -> tuple[JobView, bool]:
        """Store a new job and its inputs durably; (its view, whether it existed already).

        ``submit``: the :class:`~medcompute.server.jobs.requests.SubmitRequest` the API built."""
        key = submit.idempotency_key
        if key and not _KEY.match(key):
            raise InvalidArgument("expected 1 to 128 printable ASCII characters without spaces",
                                  "header.idempotency_key")
        if len(submit.label) > 256:
            raise InvalidArgument(f"expected at most 256 characters, got {len(submit.label)}",
                                  "header.label")
        destination = await self._check_destination(subscriber, submit.destination)
        # A retry of a submit that was answered is not a new job: no limit applies to it.
        earlier = await self.catalog.keyed_job(subscriber, key) if key else None
        if earlier is None or earlier.queued_at is None:
            pending = await self.catalog.pending_jobs(subscriber)
            if pending >= self.config.max_pending_jobs:
                raise ResourceExhausted(
                    f"this subscriber has {pending} jobs waiting or running, its limit "
                    f"(max_pending_jobs={self.config.max_pending_jobs}); submit when some have "
                    "ended")
        with named("process"):
            request = await self.service.prepare(submit.process, subscriber=subscriber)
        if earlier is None or earlier.queued_at is None:
            # Refused before anything is written when the disk is below its reserve; the
            # retry of an answered submit writes nothing and is answered as before.
            self.service.check_space(request, "jobs")
        job = self.service.new_job(request, subscriber=subscriber, destination=destination)
        # Admitted: its Persist is the job with its request, in one transaction.
        job, _ = jobs.handle(job, jobs.Admitted(job.created_at))
        blob = submit.encode()
        job, created = await self.catalog.create_request(job, {
            "idempotency_key": key, "request_sha256": hashlib.sha256(blob).hexdigest(),
            "header": blob, "label": submit.label, "destination": destination})
        if on_job is not None:
            on_job(job.id)
        if not created:
            return await self.queries.info(job.id), True
        directory = self.effects.job_dir(job.id)
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / f"in{i}" for i in range(len(request.expected))]
        bytes_in = 0
        self.effects.tasks[job.id] = asyncio.current_task()
        try:
            with named("process"):
                self.service.precheck(request)
                total = sum(e.size for e in request.expected if e.stored is None) or 1
                bytes_in, _ = await self.service.receive(
                    request, self._counted(job.id, chunks, total), paths, JobFolder(directory))
                await self.service.stage(request, paths)
            queued, todo = jobs.handle(job, jobs.InputsReceived(time.time(), bytes_in))
            # The QUEUED row first (durable, with the call's audit entry); its run is
            # launched once this upload's task has let go of the job.
            persist, *then = todo
            accepted = await self.effects.apply([persist])
        except BaseException as exc:
            reason = self.effects.cancel_reasons.pop(job.id, "the upload was cancelled")
            await asyncio.shield(self.effects.handle(job, jobs.failure(
                exc, at=time.time(), reason=reason, images=len(request.expected),
                bytes_in=bytes_in)))
            raise
        finally:
            self.effects.tasks.pop(job.id, None)
            self.effects.progress.pop(job.id, None)
        if accepted:
            await self.effects.apply(then)
        else:
            await self.effects.notify()
        return await self.queries.info(queued.id), False

    async def _counted(self, job_id: str, chunks, total: int):
        got, step = 0, 0
        async for index, chunk in chunks:
            got += len(chunk)
            if got * 20 // total > step:        # every 5 %
                step = got * 20 // total
                self.effects.set_progress(job_id, min(1.0, got / total),
                                          "receiving the inputs")
            yield index, chunk

    # -- running ------------------------------------------------------------------
    def _launch(self, job_id: str) -> None:
        if job_id in self.effects.tasks or self.effects.stopping:
            return
        # In a context of its own: not the call's that submitted it (its audit entry).
        task = contextvars.Context().run(asyncio.get_running_loop().create_task,
                                         self._run(job_id))
        self.effects.tasks[job_id] = task
        task.add_done_callback(lambda _: self.effects.tasks.pop(job_id, None))

    async def _run(self, job_id: str) -> None:
        effects = self.effects
        try:
            async with self._slots:
                await self._run_now(job_id)
        except asyncio.CancelledError:
            if effects.stopping:
                return
            if job_id not in effects.cancel_reasons:
                raise
            # Cancelled while waiting for a slot.
            await asyncio.shield(effects.end_cancelled(job_id, effects.cancel_reasons[job_id]))
        except Exception:
            log.exception("job %s: the runner failed", job_id)
        finally:
            effects.progress.pop(job_id, None)
            effects.cancel_reasons.pop(job_id, None)
            await effects.notify()

    async def _run_now(self, job_id: str) -> None:
        """Run one QUEUED (or taken-over) job through the job pipeline, with its inputs in
        its job folder; the state machine's steps are carried out by the effects."""
        effects = self.effects
        job = await self.catalog.get_job(job_id)
        request_row = await self.catalog.request(job_id)
        if job is None or request_row is None or job.state.terminal:
            return
        stored = request_row["header"]
        header = self.codec.process_header(stored)
        place = JobFolder(effects.job_dir(job_id))
        n_images = len(job.inputs)
        bytes_in = request_row["bytes_in"]
        if request_row["cancel_reason"]:
            await effects.end_cancelled(job_id, request_row["cancel_reason"])
            return
        out_path = place.out_path(job_id)

        def finish_extra(db, outcome):
            Catalog.store_result(db, job_id, self.codec.result_header(outcome, stored),
                                 str(out_path))
            if job.delivered:
                Catalog.deliver(db, job_id, job.destination, job.subscriber,
                                outcome.job.finished_at or time.time())

        async def failed(job: jobs.Job, exc: BaseException, *, bytes_in: int = bytes_in,
                         n_images: int = n_images) -> None:
            if isinstance(exc, asyncio.CancelledError) and effects.stopping:
                return          # the server stops: the job is taken over later, not ended
            reason = effects.cancel_reasons.get(job_id, "cancelled")
            # Recorded unless it ended elsewhere meanwhile (a job ends once).
            await effects.handle(job, jobs.failure(exc, at=time.time(), reason=reason,
                                                   images=n_images, bytes_in=bytes_in))

        hooks = self.service.dispatcher.progress_hooks
        try:
            try:
                request = await self.service.prepare(header, subscriber=job.subscriber)
                # The store may hold this very result already (stored inputs, store_result).
                outcome = await derived.reuse(self.service, request, subscriber=job.subscriber,
                                              job=job, out_path=out_path,
                                              finish_extra=finish_extra)
            except BaseException as exc:
                await asyncio.shield(failed(job, exc))
                raise
            if outcome is not None:
                log.info("job %s: answered from the store", job_id)
            else:
                hooks[job_id] = lambda done, total: effects.set_progress(
                    job_id, done / total, f"slab {done} of {total} done")
                outcome = await self.service.run(
                    job, request, place, bytes_in=bytes_in, started=self._started,
                    failed=failed, finish_extra=finish_extra)
                if outcome is None:
                    return
                log.info("job %s: succeeded", job_id)
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            if cancelled and effects.stopping:
                raise           # the server stops: the job is taken over later, not ended
            if not isinstance(exc, Exception | asyncio.CancelledError):
                raise
            log.info("job %s: %s", job_id, "cancelled" if cancelled else
                     f"failed ({getattr(exc, 'code_name', type(exc).__name__)})")
            return
        finally:
            hooks.pop(job_id, None)
        # The run recorded its end, usage and result in one transaction.
        await effects.handle(outcome.job, jobs.EndRecorded(time.time()))

    async def _started(self, job: jobs.Job) -> jobs.Job | None:
        """The job goes to a worker: RUNNING persisted (a QUEUED job), its progress told;
        None when another server ended it (cancelled) before it started here."""
        if job.state is jobs.State.QUEUED:
            started, todo = jobs.handle(job, jobs.Started(time.time(), ""))
            if not await self.effects.apply(todo):
                await self._ended_elsewhere(job.id)
                return None
            job = started
        self.effects.set_progress(job.id, 0.0, "running")
        if started_hook is not None:
            await started_hook(job)
        return job

    async def _ended_elsewhere(self, job_id: str) -> None:
        """A job that another server ended (cancelled) before it started here."""
        ended = await self.catalog.get_job(job_id)
        if ended is not None and ended.state.terminal:
            await self.effects.handle(ended, jobs.EndRecorded(time.time()))

    # -- cancel -----------------------------------------------------------------------
    async def cancel(self, job_id: str, subscriber: str) -> JobView:
        job = await self.queries.owned(job_id, subscriber)
        _, todo = jobs.handle(job, jobs.CancelRequested(time.time()))
        if not todo:                                    # ended already
            return await self.queries.info(job_id)
        await self.effects.apply(todo)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if (await self.queries.info(job_id)).state in _ENDED:
                break
            await self.effects.wait_change(0.2)
        await self.effects.notify()
        return await self.queries.info(job_id)

    # -- queries (queries.py) -----------------------------------------------------------
    async def info(self, job_id: str) -> JobView:
        return await self.queries.info(job_id)

    async def get(self, job_id: str, subscriber: str) -> JobView:
        return await self.queries.get(job_id, subscriber)

    def watch(self, job_id: str, subscriber: str):
        return self.queries.watch(job_id, subscriber)

    async def list(self, subscriber: str, **filters) -> JobPage:
        return await self.queries.list(subscriber, **filters)

    async def fetch(self, job_id: str, subscriber: str, roles) -> StoredResult:
        return await self.queries.fetch(job_id, subscriber, roles)

    async def fetched(self, job_id: str) -> None:
        await self.queries.fetched(job_id)

    async def inbox(self, recipient: str, **filters):
        return await self.queries.inbox(recipient, **filters)

    def watch_inbox(self, recipient: str, **filters):
        return self.queries.watch_inbox(recipient, **filters)

"""Asynchronous jobs: submitted now, run in the background, watched, fetched, delivered.

A submit stores the job and its request in the catalog, writes the inputs under
``<data_dir>/jobs/<job id>/`` (fsynced) and marks the job QUEUED in one transaction;
only then does the caller get its id. The :class:`JobRunner` runs queued jobs through
the same phases as a synchronous call (:class:`~medcompute.server.jobs.process.ProcessingService`),
keeps the result file next to the inputs, and records the end of the job, its usage
record, its result and its delivery in one transaction.

Leases (catalog.py) make a stopped server's jobs visible: every server of the data
directory renews the leases of the jobs it runs, and takes over the jobs whose lease
has run out, running again those whose inputs are on disk and failing the others with
the reason (never billed: the fault is the platform's). A job ends once, whoever races.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from medcompute.proto import wire
from medcompute.proto.v1 import jobs_pb2
from medcompute.server.config import ServerConfig
from medcompute.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    named,
)
from medcompute.server.jobs import derived
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.pipeline import JobFolder
from medcompute.server.storage.space import storage_fault

__all__ = ["JobRunner", "job_info", "MAX_ATTEMPTS"]

log = logging.getLogger(__name__)

#: A job interrupted this many times (its server stopped while it ran) is failed, not run
#: again: a job that brings its server down must not do so forever.
MAX_ATTEMPTS = 3
_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
_STATES = {s: jobs_pb2.JobState.Value(f"JOB_STATE_{s.value}") for s in jobs.State}
_ENDED = (jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED)


def job_info(job: jobs.Job, request: dict | None, delivery: dict | None = None,
             progress: float = 0.0) -> jobs_pb2.JobInfo:
    """The JobInfo message of a job (``request``: its stored asynchronous request)."""
    delivered = delivery is not None
    if job.destination == job.subscriber:
        state = jobs_pb2.DELIVERY_STATE_NONE
    elif delivered:
        state = (jobs_pb2.DELIVERY_STATE_FETCHED if delivery["fetched_at"]
                 else jobs_pb2.DELIVERY_STATE_DELIVERED)
    elif job.state.terminal:
        state = jobs_pb2.DELIVERY_STATE_FAILED
    else:
        state = jobs_pb2.DELIVERY_STATE_PENDING
    request = request or {}
    available = (job.state is jobs.State.SUCCEEDED and bool(request.get("result_path"))
                 and not request.get("result_removed_at"))
    return jobs_pb2.JobInfo(
        job_id=job.id, subscriber=job.subscriber, state=_STATES[job.state],
        operations=job.operations,
        destination="" if job.destination == job.subscriber else job.destination,
        delivery=state, label=request.get("label") or "",
        idempotency_key=request.get("idempotency_key") or "",
        created_at=job.created_at, queued_at=job.queued_at or 0.0,
        started_at=job.started_at or 0.0, finished_at=job.finished_at or 0.0,
        delivered_at=delivery["delivered_at"] if delivered else 0.0,
        fetched_at=(delivery["fetched_at"] or 0.0) if delivered else 0.0,
        worker=job.worker, error=job.error, error_code=job.error_code,
        platform_fault=job.platform_fault,
        progress=1.0 if job.state is jobs.State.SUCCEEDED else progress,
        result_available=available, asynchronous=bool(request))


class JobRunner:
    """Runs the asynchronous jobs of one server; see the module's docstring."""

    def __init__(self, config: ServerConfig, service, catalog: Catalog, keys=None):
        self.config = config
        self.service = service
        self.catalog = catalog
        self.keys = keys
        self.dir = Path(config.data_dir) / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._tasks: dict[str, asyncio.Task] = {}
        self._progress: dict[str, tuple[float, str]] = {}
        self._cancel_reasons: dict[str, str] = {}
        self._changed = asyncio.Condition()
        self._delivered = asyncio.Condition()
        self._slots = asyncio.Semaphore(max(1, config.max_queue))
        self._loop: asyncio.Task | None = None
        self._stopping = False

    def active(self) -> int:
        """Asynchronous jobs receiving, waiting or running on this server."""
        return len(self._tasks)

    # -- life-cycle -----------------------------------------------------------------
    async def start(self) -> None:
        self.service.dispatcher.add_listener(self._on_worker_event)
        await self.recover()
        self._loop = asyncio.create_task(self._upkeep())

    async def stop(self) -> None:
        """Stop running jobs without ending them: their leases are released, so the next
        server of this data directory takes them over at once."""
        self._stopping = True
        with contextlib.suppress(ValueError):
            self.service.dispatcher.remove_listener(self._on_worker_event)
        tasks = [t for t in (self._loop, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.catalog.release_leases()

    async def _upkeep(self) -> None:
        interval = max(0.2, self.catalog.lease_seconds / 3)
        last_recovery = last_expiry = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                if self.service.unrecorded:
                    await self.service.record_unrecorded()
                for job_id, reason in await self.catalog.renew():
                    task = self._tasks.get(job_id)
                    if task is not None and job_id not in self._cancel_reasons:
                        self._cancel_reasons[job_id] = reason
                        task.cancel()
                now = time.monotonic()
                if now - last_recovery >= self.catalog.lease_seconds:
                    last_recovery = now
                    await self.recover()
                if now - last_expiry >= 3600:
                    last_expiry = now
                    await self.expire_results()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if storage_fault(exc) is not None:   # a full disk: retried each round
                    log.warning("job upkeep: the catalog cannot be written (%s); retrying", exc)
                else:
                    log.exception("job upkeep failed; retrying")

    async def recover(self) -> None:
        """Take over the jobs of servers that stopped (this one's earlier life included)."""
        for job in await self.catalog.orphans():
            attempts = await self.catalog.claim(job.id)
            if attempts is None:
                continue
            request = await self.catalog.request(job.id)
            n_images = len(job.inputs)
            if request is None:
                await self._fail_orphan(job, n_images, 0, "the server handling this call "
                                        "stopped before the job ended")
            elif job.state is jobs.State.RECEIVING:
                await self._fail_orphan(job, n_images, request["bytes_in"],
                                        "the server stopped while receiving the inputs; submit "
                                        "again (the same idempotency key may be used)")
            elif request["attempts"] >= MAX_ATTEMPTS:
                # Its first run and every take-over so far were cut short by a stopping server.
                await self._fail_orphan(job, n_images, request["bytes_in"],
                                        f"the job was interrupted {MAX_ATTEMPTS} times by its "
                                        "server stopping; not run again")
            else:
                log.info("job %s: taken over (%s), attempt %d", job.id, job.state.value,
                         request["attempts"])
                self._launch(job.id)

    async def _fail_orphan(self, job, n_images: int, bytes_in: int, reason: str) -> None:
        log.warning("job %s: %s", job.id, reason)
        await self.service.fail(job, Unavailable(reason), bytes_in=bytes_in, n_images=n_images)
        self._remove_inputs(job.id)
        await self._notify()

    async def expire_results(self, now: float | None = None) -> int:
        """Remove the files of jobs that ended more than the result retention ago."""
        before = (time.time() if now is None else now) - self.config.result_retention
        removed = 0
        for job_id, _ in await self.catalog.results_before(before):
            await asyncio.to_thread(shutil.rmtree, self.dir / job_id, True)
            await self.catalog.result_removed(job_id)
            removed += 1
        return removed

    # -- notifications ----------------------------------------------------------------
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait_change(self, timeout: float) -> None:
        async with self._changed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    def _set_progress(self, job_id: str, fraction: float, message: str) -> None:
        self._progress[job_id] = (fraction, message)
        asyncio.get_running_loop().create_task(self._notify())

    def _on_worker_event(self, message: dict) -> None:
        # A slab's start says little (the finished slabs are counted instead); a whole job's
        # start names its worker. Events arrive through the scheduler, possibly late.
        # Several small jobs run together are announced once (``jobs``).
        if message.get("slab") is not None:
            return
        for job_id in message.get("jobs") or [message.get("job")]:
            if job_id in self._tasks:
                fraction, text = self._progress.get(job_id, (0.0, ""))
                if not text.startswith("slab "):
                    where = "sent to" if message.get("event") == "sent" else "started on"
                    self._set_progress(job_id, fraction,
                                       f"{where} {message.get('worker', 'a worker')}")

    # -- submit -------------------------------------------------------------------
    def _job_dir(self, job_id: str) -> Path:
        return self.dir / job_id

    def _remove_inputs(self, job_id: str) -> None:
        directory = self._job_dir(job_id)
        if directory.is_dir():
            for path in directory.glob("in*"):
                path.unlink(missing_ok=True)

    async def _check_destination(self, sender: str, destination: str) -> str:
        if not destination or destination == sender:
            return ""
        if not await self.catalog.delivery_allowed(sender, destination):
            raise PermissionDenied(
                f"this subscriber may not deliver to {destination!r}: an administrator "
                "allows it with `medcompute deliveries allow`", "header.destination")
        keys = await asyncio.to_thread(self.keys.list, destination) if self.keys else []
        if not any(k.valid and "receive" in k.roles for k in keys):
            raise FailedPrecondition(f"{destination!r} has no valid key with the receive role",
                                     "header.destination")
        return destination

    async def submit(self, submit, chunks, *, subscriber: str, on_job=None):
        """Store a new job and its inputs durably; (JobInfo, existing)."""
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
        blob = submit.encode()
        job, created = await self.catalog.create_request(job, {
            "idempotency_key": key, "request_sha256": hashlib.sha256(blob).hexdigest(),
            "header": blob, "label": submit.label, "destination": destination})
        if on_job is not None:
            on_job(job.id)
        if not created:
            return await self.info(job.id), True
        directory = self._job_dir(job.id)
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / f"in{i}" for i in range(len(request.expected))]
        bytes_in = 0
        self._tasks[job.id] = asyncio.current_task()
        try:
            with named("process"):
                self.service.precheck(request)
                total = sum(e.size for e in request.expected if e.stored is None) or 1
                bytes_in, _ = await self.service.receive(
                    request, self._counted(job.id, chunks, total), paths, JobFolder(directory))
                await self.service.stage(request, paths)
            job = jobs.apply(job, jobs.InputsReceived(time.time()))
            # The submit call's audit entry commits with its job's QUEUED row.
            entry = self.service.job_audit(job)
            queued = await self.catalog.queue(job, bytes_in,
                                              entry.write if entry is not None else None)
            if queued and entry is not None:
                entry.committed()
        except BaseException as exc:
            reason = self._cancel_reasons.pop(job.id, "the upload was cancelled")
            await asyncio.shield(self.service.fail(job, exc, bytes_in=bytes_in,
                                                   n_images=len(request.expected),
                                                   cancel_reason=reason))
            await asyncio.to_thread(shutil.rmtree, directory, True)
            await self._notify()
            raise
        finally:
            self._tasks.pop(job.id, None)
            self._progress.pop(job.id, None)
        if queued:
            self._launch(job.id)
        await self._notify()
        return await self.info(job.id), False

    async def _counted(self, job_id: str, chunks, total: int):
        got, step = 0, 0
        async for index, chunk in chunks:
            got += len(chunk)
            if got * 20 // total > step:        # every 5 %
                step = got * 20 // total
                self._set_progress(job_id, min(1.0, got / total), "receiving the inputs")
            yield index, chunk

    # -- running ------------------------------------------------------------------
    def _launch(self, job_id: str) -> None:
        if job_id in self._tasks or self._stopping:
            return
        # In a context of its own: not the call's that submitted it (its audit entry).
        task = contextvars.Context().run(asyncio.get_running_loop().create_task,
                                         self._run(job_id))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    async def _run(self, job_id: str) -> None:
        try:
            async with self._slots:
                await self._run_now(job_id)
        except asyncio.CancelledError:
            if self._stopping:
                return
            if job_id not in self._cancel_reasons:
                raise
            # Cancelled while waiting for a slot.
            await asyncio.shield(self._end_cancelled(job_id, self._cancel_reasons[job_id]))
        except Exception:
            log.exception("job %s: the runner failed", job_id)
        finally:
            self._progress.pop(job_id, None)
            self._cancel_reasons.pop(job_id, None)
            await self._notify()

    async def _run_now(self, job_id: str) -> None:
        from medcompute.server.api.processing import result_header, stored_submit

        job = await self.catalog.get_job(job_id)
        request_row = await self.catalog.request(job_id)
        if job is None or request_row is None or job.state.terminal:
            return
        header = stored_submit(request_row["header"]).process
        directory = self._job_dir(job_id)
        n_images = len(job.inputs)
        bytes_in = request_row["bytes_in"]
        if request_row["cancel_reason"]:
            await self._end_cancelled(job_id, request_row["cancel_reason"])
            return
        out_path = directory / "out"

        def finish_extra(db, outcome):
            blob = result_header(outcome, header.result_compression).SerializeToString()
            Catalog.store_result(db, job_id, blob, str(out_path))
            if job.destination != job.subscriber:
                Catalog.deliver(db, job_id, job.destination, job.subscriber,
                                outcome.job.finished_at or time.time())

        try:
            request = await self.service.prepare(header, subscriber=job.subscriber)
            # The store may hold this very result already (stored inputs, store_result).
            if await derived.reuse(self.service, request, subscriber=job.subscriber, job=job,
                                   out_path=out_path, finish_extra=finish_extra):
                log.info("job %s: answered from the store", job_id)
                await self._delivered_now(job)
                return
            paths = [directory / f"in{i}" for i in range(len(request.expected))]
            staged = await self.service.stage(request, paths)
            if job.state is jobs.State.QUEUED:
                job = jobs.apply(job, jobs.Started(time.time(), ""))
                if not await self.catalog.put_job(job):
                    return          # ended meanwhile (cancelled by another server)
            self._set_progress(job_id, 0.0, "running")
            await self._notify()
            hooks = self.service.dispatcher.progress_hooks
            hooks[job_id] = lambda done, total: self._set_progress(
                job_id, done / total, f"slab {done} of {total} done")
            try:
                await self.service.execute(job, request, staged, out_path, bytes_in=bytes_in,
                                           finish_extra=finish_extra)
            finally:
                hooks.pop(job_id, None)
            log.info("job %s: succeeded", job_id)
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            if cancelled and self._stopping:
                raise           # the server stops: the job is taken over later, not ended
            reason = self._cancel_reasons.get(job_id, "cancelled")
            await asyncio.shield(self.service.fail(job, exc, bytes_in=bytes_in,
                                                   n_images=n_images, cancel_reason=reason))
            for name in ("out", "out.raw"):
                (directory / name).unlink(missing_ok=True)
            if not isinstance(exc, Exception | asyncio.CancelledError):
                raise
            log.info("job %s: %s", job_id, "cancelled" if cancelled else
                     f"failed ({getattr(exc, 'code_name', type(exc).__name__)})")
            return
        finally:
            if not self._stopping:
                self._remove_inputs(job_id)
        await self._delivered_now(job)

    async def _delivered_now(self, job: jobs.Job) -> None:
        """Wake the inbox watches after a job for another subscriber has ended."""
        if job.destination != job.subscriber:
            async with self._delivered:
                self._delivered.notify_all()

    async def _end_cancelled(self, job_id: str, reason: str) -> None:
        job = await self.catalog.get_job(job_id)
        if job is None or job.state.terminal:
            return
        request = await self.catalog.request(job_id)
        await self.service.fail(job, asyncio.CancelledError(),
                                bytes_in=request["bytes_in"] if request else 0,
                                n_images=len(job.inputs), cancel_reason=reason)
        self._remove_inputs(job_id)

    # -- queries --------------------------------------------------------------------
    async def _owned(self, job_id: str, subscriber: str, *, recipient_ok: bool = False):
        job = await self.catalog.get_job(job_id) if job_id else None
        if job is None or (job.subscriber != subscriber
                           and not (recipient_ok and job.destination == subscriber)):
            # Also for another subscriber's job: its existence is not revealed.
            raise NotFound(f"no job {job_id!r}", "job_id")
        return job

    async def info(self, job_id: str) -> jobs_pb2.JobInfo:
        job = await self.catalog.get_job(job_id)
        request = await self.catalog.request(job_id)
        delivery = await self.catalog.delivery(job_id) if job.destination != job.subscriber \
            else None
        return job_info(job, request, delivery, self._progress.get(job_id, (0.0, ""))[0])

    async def get(self, job_id: str, subscriber: str) -> jobs_pb2.JobInfo:
        await self._owned(job_id, subscriber)
        return await self.info(job_id)

    async def watch(self, job_id: str, subscriber: str):
        """WatchJobResponses from the job's current state until it ends."""
        await self._owned(job_id, subscriber)
        last = None
        while True:
            info = await self.info(job_id)
            message = self._progress.get(job_id, (0.0, ""))[1]
            if info.state in (jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED):
                message = info.error
            elif info.state == jobs_pb2.JOB_STATE_SUCCEEDED:
                message = "succeeded"
            elif not message:
                message = jobs_pb2.JobState.Name(info.state).removeprefix("JOB_STATE_").lower()
            seen = (info.state, round(info.progress, 2), message, info.delivery)
            if seen != last:
                last = seen
                yield jobs_pb2.WatchJobResponse(job=info, message=message)
            if info.state in _ENDED:
                return
            await self._wait_change(1.0)

    async def cancel(self, job_id: str, subscriber: str) -> jobs_pb2.JobInfo:
        job = await self._owned(job_id, subscriber)
        if job.state.terminal:
            return await self.info(job_id)
        reason = "cancelled by the subscriber"
        await self.catalog.request_cancel(job_id, reason)
        task = self._tasks.get(job_id)
        if task is not None:
            self._cancel_reasons.setdefault(job_id, reason)
            task.cancel()
        elif job.state is jobs.State.QUEUED or job.state is jobs.State.RUNNING:
            # Held by another server (it sees the request when it renews its leases), or
            # by none: then it is ended here.
            if await self.catalog.claim(job_id) is not None:
                await self._end_cancelled(job_id, reason)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            info = await self.info(job_id)
            if info.state in _ENDED:
                break
            await self._wait_change(0.2)
        await self._notify()
        return await self.info(job_id)

    async def list(self, subscriber: str, request) -> jobs_pb2.ListJobsResponse:
        limit = max(1, min(request.page_size or 50, 1000))
        after = None
        if request.page_token:
            try:
                at, _, last = request.page_token.partition(":")
                after = (float(at), last)
            except ValueError:
                raise InvalidArgument("expected a next_page_token of an earlier reply",
                                      "page_token") from None
        states = []
        for s in request.states:
            if s not in _STATES.values() or s == jobs_pb2.JOB_STATE_UNSPECIFIED:
                raise InvalidArgument(wire.enum_choices(jobs_pb2.JobState, s), "states")
            states.append(jobs_pb2.JobState.Name(s).removeprefix("JOB_STATE_"))
        rows = await self.catalog.list_jobs(
            subscriber, states=states, since=request.since, until=request.until,
            operation=request.operation, label=request.label, limit=limit, after=after)
        infos = [job_info(job, req, delivery, self._progress.get(job.id, (0.0, ""))[0])
                 for job, req, delivery in rows]
        token = f"{rows[-1][0].created_at!r}:{rows[-1][0].id}" if len(rows) == limit else ""
        return jobs_pb2.ListJobsResponse(jobs=infos, next_page_token=token)

    async def fetch(self, job_id: str, subscriber: str, roles) -> tuple:
        """(ResultHeader bytes, result path, compression, itemsize, by the recipient)."""
        job = await self._owned(job_id, subscriber, recipient_ok="receive" in roles)
        recipient = job.subscriber != subscriber
        request = await self.catalog.request(job_id)
        if request is None:
            raise FailedPrecondition(f"job {job_id} was a synchronous call: its result was "
                                     "returned by that call", "job_id")
        if job.state is not jobs.State.SUCCEEDED:
            why = f" ({job.error})" if job.error else ""
            raise FailedPrecondition(f"job {job_id} is {job.state.value}{why}; a result exists "
                                     "once it has SUCCEEDED (watch it)", "job_id")
        path = request["result_path"]
        if request["result_removed_at"] or not path or not os.path.exists(path):
            raise FailedPrecondition(f"the result of job {job_id} was removed after the "
                                     f"server's result retention", "job_id")
        from medcompute.proto.v1 import processing_pb2

        header = processing_pb2.ResultHeader.FromString(request["result_header"])
        compression = header.output.compression
        itemsize = (wire.DTYPES[header.output.dtype].itemsize
                    if header.output.encoding == 0 and header.output.dtype else 1)
        return header, path, compression, itemsize, recipient

    async def fetched(self, job_id: str) -> None:
        try:
            await self.catalog.mark_fetched(job_id)
        except Exception as exc:
            if storage_fault(exc) is None:
                raise
            # The result was sent: a full disk must not turn the fetch into an error.
            log.warning("job %s: its fetch could not be recorded (%s)", job_id, exc)
        await self._notify()

    # -- inbox --------------------------------------------------------------------
    @staticmethod
    def delivery_message(row: dict) -> jobs_pb2.Delivery:
        from medcompute.proto.v1 import processing_pb2

        header = processing_pb2.ResultHeader.FromString(row["result_header"] or b"")
        record = json.loads(row["record"])
        return jobs_pb2.Delivery(
            seq=row["seq"], job_id=row["job_id"], sender=row["sender"],
            operations=record.get("operations", []), label=row["label"] or "",
            delivered_at=row["delivered_at"], fetched_at=row["fetched_at"] or 0.0,
            output=header.output)

    async def inbox(self, recipient: str, request) -> jobs_pb2.ListInboxResponse:
        limit = max(1, min(request.page_size or 100, 1000))
        rows = await self.catalog.inbox(recipient, after_seq=request.after_seq,
                                        unfetched_only=request.unfetched_only, limit=limit)
        return jobs_pb2.ListInboxResponse(deliveries=[self.delivery_message(r) for r in rows])

    async def watch_inbox(self, recipient: str, request):
        after = (await self.catalog.last_delivery_seq() if request.new_only
                 else request.after_seq)
        while True:
            for row in await self.catalog.inbox(recipient, after_seq=after, limit=100):
                after = row["seq"]
                yield self.delivery_message(row)
            async with self._delivered:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._delivered.wait(), 1.0)

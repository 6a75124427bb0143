"""The asynchronous layer under the job state machine (states.py): it applies the
machine's instructions (write the job, launch its run, record its end and usage, remove
its files, wake its watchers, stop its run) and keeps what the jobs of this server share
at run time: their tasks, their progress, the reasons they were cancelled for.

The runner (intake and runs), the leases (renewal, take-over, expiry) and the queries
all use one :class:`JobEffects`; none of them imports another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from medcompute.server.config import ServerConfig
from medcompute.server.jobs import catalog as job_table
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.metering import usage_record
from medcompute.server.jobs.views import JobAudit

__all__ = ["JobEffects"]

log = logging.getLogger(__name__)


class JobEffects:
    """Applies instructions for the jobs of one server; see the module's docstring.

    ``launch(job_id)`` starts a job's run (the runner's); ``audit(job)`` gives the audit
    entry a submit's QUEUED row commits with (the API layer's)."""

    def __init__(self, config: ServerConfig, catalog: Catalog, service, *,
                 launch: Callable[[str], None], audit: JobAudit | None = None):
        self.catalog = catalog
        self.service = service
        self.launch = launch
        self.audit = audit
        self.dir = Path(config.data_dir) / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tasks: dict[str, asyncio.Task] = {}
        self.progress: dict[str, tuple[float, str]] = {}
        self.cancel_reasons: dict[str, str] = {}
        self.stopping = False
        self._changed = asyncio.Condition()
        self._delivered = asyncio.Condition()

    def job_dir(self, job_id: str) -> Path:
        return self.dir / job_id

    # -- applying the machine's instructions ------------------------------------------
    async def handle(self, job: jobs.Job, event: jobs.Event) -> jobs.Job:
        """Apply ``event`` to ``job`` and carry out what it asks for; the job after it."""
        job, todo = jobs.handle(job, event)
        await self.apply(todo)
        return job

    async def apply(self, instructions: Iterable[jobs.Instruction]) -> bool:
        """Carry out ``instructions`` in order; False when a Persist found the job ended
        meanwhile, or a RecordEnd was not recorded (the rest is dropped; for an end kept
        until the catalog takes it, the rest follows once it is recorded)."""
        instructions = list(instructions)
        for i, todo in enumerate(instructions):
            if isinstance(todo, jobs.Persist):
                if not await self._persist(todo):
                    return False
            elif isinstance(todo, jobs.Launch):
                self.launch(todo.job_id)
            elif isinstance(todo, jobs.RecordEnd):
                rest = instructions[i + 1:]
                if not await self._record_end(todo, lambda rest=rest: self.apply(rest)):
                    # Kept (the rest follows once it is recorded) or refused (the job
                    # ended elsewhere or was taken over: its files are the other's).
                    return False
            elif isinstance(todo, jobs.RemoveFiles):
                await self._remove(todo)
            elif isinstance(todo, jobs.Notify):
                await self.notify()
            elif isinstance(todo, jobs.NotifyRecipient):
                async with self._delivered:
                    self._delivered.notify_all()
            elif isinstance(todo, jobs.CancelRun):
                await self._cancel_run(todo)
            elif isinstance(todo, jobs.MarkResultRemoved):
                await self.catalog.result_removed(todo.job_id)
            else:
                raise TypeError(f"unknown instruction {todo!r}")
        return True

    async def _persist(self, todo: jobs.Persist) -> bool:
        if todo.bytes_in is None:
            return await self.catalog.put_job(todo.job)
        # The submit call's audit entry commits with its job's QUEUED row: one write.
        entry = self.audit(todo.job) if self.audit is not None else None
        catalog = self.catalog

        def queued_and_audited(tx) -> bool:
            if not job_table.queue(tx, todo.job, todo.bytes_in, catalog.runner,
                                   catalog.lease_seconds):
                return False
            if entry is not None:
                entry.write(tx)         # storage/audit.py add(tx, ...)
            return True

        queued = await catalog.db.write(queued_and_audited)
        if queued and entry is not None:
            entry.committed()
        return queued

    async def _record_end(self, todo: jobs.RecordEnd, after) -> bool:
        """Record the end and its usage; whether it was (the service keeps an end the
        catalog cannot take yet, records it once it can and then awaits ``after()``:
        :meth:`Pipeline.record_end`)."""
        job = todo.job
        return await self.service.record_end(job, usage_record(
            job, None, images=todo.images, voxels=0, bytes_in=todo.bytes_in, bytes_out=0),
            after)

    async def _remove(self, todo: jobs.RemoveFiles) -> None:
        directory = self.job_dir(todo.job_id)
        if todo.folder:
            await asyncio.to_thread(shutil.rmtree, directory, True)
            return
        if not directory.is_dir():
            return
        if todo.inputs:
            for path in directory.glob("in*"):
                path.unlink(missing_ok=True)
        if todo.result:
            for name in ("out", "out.raw"):
                (directory / name).unlink(missing_ok=True)

    async def _cancel_run(self, todo: jobs.CancelRun) -> None:
        await self.catalog.request_cancel(todo.job_id, todo.reason)
        task = self.tasks.get(todo.job_id)
        if task is not None:
            self.cancel_reasons.setdefault(todo.job_id, todo.reason)
            task.cancel()
            return
        job = await self.catalog.get_job(todo.job_id)
        if job is not None and job.state in (jobs.State.QUEUED, jobs.State.RUNNING):
            # Held by another server (it sees the request when it renews its leases), or
            # by none: then it is ended here.
            if await self.catalog.claim(todo.job_id) is not None:
                await self.end_cancelled(todo.job_id, todo.reason)

    async def end_cancelled(self, job_id: str, reason: str) -> None:
        """End a job this server holds but does not run (cancelled before its run)."""
        job = await self.catalog.get_job(job_id)
        if job is None or job.state.terminal:
            return
        request = await self.catalog.request(job_id)
        await self.handle(job, jobs.Failure(
            time.time(), jobs.Fault.CANCELLED, reason, images=len(job.inputs),
            bytes_in=request["bytes_in"] if request else 0))

    # -- progress and watchers ----------------------------------------------------------
    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_change(self, timeout: float) -> None:
        async with self._changed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def wait_delivery(self, timeout: float) -> None:
        async with self._delivered:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._delivered.wait(), timeout)

    def set_progress(self, job_id: str, fraction: float, message: str) -> None:
        self.progress[job_id] = (fraction, message)
        asyncio.get_running_loop().create_task(self.notify())

    def progress_of(self, job_id: str) -> tuple[float, str]:
        return self.progress.get(job_id, (0.0, ""))

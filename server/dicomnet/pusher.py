"""The sending loop of the DICOM node: the pending pushes whose jobs have succeeded are
sent (push.py ``send_files``), once across the front ends sharing the catalog.

A front end takes a push with its owner (its runner id, as in its job leases) and a lease
of ``--job-lease`` seconds, renews the lease while it sends, and records the end of its
try only while it still owns the push. Each round it makes pending again the pushes left
``sending`` whose lease ran out (a front end killed, or cut off from the catalog); a push
another live front end sends, on this host or another, is left to it.

:attr:`Pusher.failed_try` is the fault-injection seam of the tests: a coroutine function
awaited with the push and the outcome of each failed try that will be tried again, before
the next try is scheduled (a test brings a node up there, so that the next try finds it
listening whatever the machine's load).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable

from medcompute.server.dicomnet.commit import Commitments
from medcompute.server.dicomnet.push import PROOF, Outcome, PushBook, PushRow, send_files
from medcompute.server.worker.store_tasks import dicom_parts

__all__ = ["Pusher"]

log = logging.getLogger(__name__)


class Pusher:
    """Sends the pending pushes whose jobs have succeeded."""

    def __init__(self, book: PushBook, runner, *, own_ae: str, max_attempts: int,
                 backoff: float, poll: float = 0.25, commitments: Commitments | None = None,
                 commit_timeout: float = 30.0, associations: int = 1):
        self.book = book
        self.runner = runner              # JobRunner
        self.own_ae = own_ae
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.poll = poll
        self.commitments = commitments
        self.commit_timeout = commit_timeout
        self.associations = associations
        catalog = getattr(runner, "catalog", None)
        #: Who this front end is in a push's ``owner`` (the runner id of its job leases),
        #: and how long it holds a push it sends without renewing it (the job lease).
        self.owner: str = getattr(catalog, "runner", "") or uuid.uuid4().hex
        self.lease_seconds: float = getattr(catalog, "lease_seconds", 30.0)
        self._task: asyncio.Task | None = None
        self._taken_over_at = 0.0
        #: The tests' seam (see the module's docstring); None: nothing is awaited.
        self.failed_try: Callable[[PushRow, Outcome], Awaitable[None]] | None = None

    async def start(self) -> None:
        await self._take_over()
        self._task = asyncio.create_task(self._loop())

    async def _take_over(self) -> None:
        """Pushes left ``sending`` by a front end whose lease ran out: pending again."""
        self._taken_over_at = time.monotonic()
        resumed = await self.book.take_over()
        if resumed:
            log.info("dicom: %d interrupted push(es) will be sent again", resumed)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                if time.monotonic() - self._taken_over_at >= self.lease_seconds / 3:
                    await self._take_over()
                for push in await self.book.due():
                    await self.attempt(push)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dicom: pushing results failed; trying again")
            await asyncio.sleep(self.poll)

    async def _files(self, push: PushRow) -> tuple[str, list] | str | None:
        """The result's path and its DICOM files (views of one read of it); a reason when
        the job cannot deliver; None: wait."""
        from medcompute.server.jobs import states as jobs

        job = await self.runner.catalog.get_job(push.job_id)
        if job is None:
            return "the job no longer exists"
        if not job.state.terminal:
            return None
        if job.state is not jobs.State.SUCCEEDED:
            return f"the job ended {job.state.value}: nothing to deliver"
        result = await self.runner.fetch(push.job_id, push.sender, ("process",))
        sizes = list(result.file_sizes)
        if not sizes:
            return "the job's result is not DICOM (route with a DICOM output)"
        return result.path, await asyncio.to_thread(dicom_parts, result.path, sizes)

    async def attempt(self, push: PushRow) -> None:
        files = await self._files(push)
        if files is None:
            await self.book.update(push.push_id, "pending", next_at=time.time() + self.poll,
                                   pending=True)
            return
        if isinstance(files, str):
            await self.book.update(push.push_id, "failed", reason=files, pending=True)
            return
        node = await self.book.node(push.recipient, push.node)
        if node is None:
            await self.book.update(push.push_id, "failed", reason=f"the recipient has no "
                                   f"DICOM node {push.node!r} any more", pending=True)
            return
        attempts = push.attempts + 1
        if not await self.book.claim(push.push_id, attempts, self.owner, self.lease_seconds):
            return                      # another front end sends it

        # The files are spooled beside the job's result (in the data directory), one per
        # instance, for the associations to send them as they are.
        path, parts = files
        sending = asyncio.ensure_future(asyncio.to_thread(
            send_files, parts, node, own_ae=self.own_ae, commitments=self.commitments,
            commit_timeout=self.commit_timeout, associations=self.associations,
            spool=os.path.dirname(path)))
        outcome = await self._renewing(push, sending)
        if outcome.transient is None:
            done = await self._end(push, "delivered", reason=outcome.reason,
                                   delivered=outcome.delivered, proof=outcome.proof or PROOF,
                                   instances=outcome.instances)
            if done:
                log.info("dicom: pushed %d instance(s) of job %s to node %s",
                         outcome.delivered, push.job_id, push.node)
        elif outcome.transient and attempts < self.max_attempts:
            if self.failed_try is not None:
                await self.failed_try(push, outcome)
            delay = self.backoff * 2 ** (attempts - 1)
            if await self._end(push, "pending", reason=outcome.reason,
                               delivered=outcome.delivered, next_at=time.time() + delay,
                               instances=outcome.instances):
                log.warning("dicom: push of job %s to node %s: %s; try %d again in %.1f s",
                            push.job_id, push.node, outcome.reason, attempts + 1, delay)
        else:
            reason = outcome.reason if not outcome.transient else (
                f"{outcome.reason} (gave up after {attempts} tries)")
            if await self._end(push, "failed", reason=reason, delivered=outcome.delivered,
                               instances=outcome.instances):
                log.warning("dicom: push of job %s to node %s failed: %s", push.job_id,
                            push.node, reason)

    async def _renewing(self, push: PushRow, sending: asyncio.Future) -> Outcome:
        """``sending``'s outcome, renewing this front end's lease on the push meanwhile."""
        while True:
            done, _ = await asyncio.wait({sending}, timeout=self.lease_seconds / 3)
            if done:
                return sending.result()
            try:
                if not await self.book.renew(push.push_id, self.owner, self.lease_seconds):
                    log.warning("dicom: push of job %s to node %s was taken over by another "
                                "front end while this one sent it", push.job_id, push.node)
            except asyncio.CancelledError:
                raise
            except Exception as exc:    # the catalog away: the send goes on; the lease may run out
                log.warning("dicom: the lease of the push of job %s could not be renewed "
                            "(%s)", push.job_id, exc)

    async def _end(self, push: PushRow, state: str, **fields) -> bool:
        """Record the end of this front end's try, only while it still owns the push;
        False when its lease ran out and another front end took the push over (that one
        records the push's end)."""
        if await self.book.update(push.push_id, state, owner=self.owner, **fields):
            return True
        log.warning("dicom: push of job %s to node %s: this front end's try ended after "
                    "another took the push over; its outcome is not recorded", push.job_id,
                    push.node)
        return False

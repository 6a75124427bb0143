"""What a subscriber asks of its jobs: one job, a watch of it, a page of them, its result,
and the inbox of results delivered to it. Answers are plain values (views.py)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator

from medcompute.server.errors import FailedPrecondition, InvalidArgument, NotFound, shown_id
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.effects import JobEffects
from medcompute.server.jobs.views import (
    DeliveryView,
    JobCodec,
    JobPage,
    JobUpdate,
    JobView,
    StoredResult,
    job_view,
)
from medcompute.server.storage.space import storage_fault

__all__ = ["JobQueries"]

log = logging.getLogger(__name__)

_ENDED = (jobs.State.SUCCEEDED, jobs.State.FAILED, jobs.State.CANCELLED)


class JobQueries:
    def __init__(self, catalog: Catalog, effects: JobEffects, codec: JobCodec | None = None):
        self.catalog = catalog
        self.effects = effects
        self.codec = codec

    async def owned(self, job_id: str, subscriber: str, *,
                    recipient_ok: bool = False) -> jobs.Job:
        job = await self.catalog.get_job(job_id) if job_id else None
        if job is None or (job.subscriber != subscriber
                           and not (recipient_ok and job.destination == subscriber)):
            # Also for another subscriber's job: its existence is not revealed.
            raise NotFound(f"no job {shown_id(job_id)}", "job_id")
        return job

    async def info(self, job_id: str) -> JobView:
        job = await self.catalog.get_job(job_id)
        request = await self.catalog.request(job_id)
        delivery = await self.catalog.delivery(job_id) if job.delivered else None
        return job_view(job, request, delivery, self.effects.progress_of(job_id)[0])

    async def get(self, job_id: str, subscriber: str) -> JobView:
        await self.owned(job_id, subscriber)
        return await self.info(job_id)

    async def watch(self, job_id: str, subscriber: str) -> AsyncIterator[JobUpdate]:
        """The job's updates from its current state until it ends."""
        await self.owned(job_id, subscriber)
        last = None
        while True:
            view = await self.info(job_id)
            message = self.effects.progress_of(job_id)[1]
            if view.state in (jobs.State.FAILED, jobs.State.CANCELLED):
                message = view.error
            elif view.state is jobs.State.SUCCEEDED:
                message = "succeeded"
            elif not message:
                message = view.state.value.lower()
            seen = (view.state, round(view.progress, 2), message, view.delivery)
            if seen != last:
                last = seen
                yield JobUpdate(view, message)
            if view.state in _ENDED:
                return
            await self.effects.wait_change(1.0)

    async def list(self, subscriber: str, *, states=(), since: float = 0.0,
                   until: float = 0.0, operation: str = "", label: str = "",
                   page_size: int = 0, page_token: str = "") -> JobPage:
        """A page of the subscriber's jobs, newest first (``page_token``: the
        ``next_page_token`` of the page before)."""
        limit = max(1, min(page_size or 50, 1000))
        after = None
        if page_token:
            try:
                at, _, last = page_token.partition(":")
                after = (float(at), last)
            except ValueError:
                raise InvalidArgument("expected a next_page_token of an earlier reply",
                                      "page_token") from None
        rows = await self.catalog.list_jobs(
            subscriber, states=[s.value for s in states], since=since, until=until,
            operation=operation, label=label, limit=limit, after=after)
        views = [job_view(job, req, delivery, self.effects.progress_of(job.id)[0])
                 for job, req, delivery in rows]
        token = f"{rows[-1][0].created_at!r}:{rows[-1][0].id}" if len(rows) == limit else ""
        return JobPage(views, token)

    async def fetch(self, job_id: str, subscriber: str, roles) -> StoredResult:
        """A job's result, ready to be sent (to its subscriber, or to the recipient of
        its delivery when ``roles`` has ``receive``)."""
        job = await self.owned(job_id, subscriber, recipient_ok="receive" in roles)
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
        header = request["result_header"]
        info = self.codec.result_info(header)
        return StoredResult(header, path, info.compression, info.itemsize, info.file_sizes,
                            recipient)

    async def fetched(self, job_id: str) -> None:
        try:
            await self.catalog.mark_fetched(job_id)
        except Exception as exc:
            if storage_fault(exc) is None:
                raise
            # The result was sent: a full disk must not turn the fetch into an error.
            log.warning("job %s: its fetch could not be recorded (%s)", job_id, exc)
        await self.effects.notify()

    # -- inbox --------------------------------------------------------------------------
    @staticmethod
    def delivery_view(row: dict) -> DeliveryView:
        record = json.loads(row["record"])
        return DeliveryView(
            seq=row["seq"], job_id=row["job_id"], sender=row["sender"],
            operations=tuple(record.get("operations", [])), label=row["label"] or "",
            delivered_at=row["delivered_at"], fetched_at=row["fetched_at"] or 0.0,
            result_header=row["result_header"] or b"")

    async def inbox(self, recipient: str, *, after_seq: int = 0, unfetched_only: bool = False,
                    page_size: int = 0) -> list[DeliveryView]:
        limit = max(1, min(page_size or 100, 1000))
        rows = await self.catalog.inbox(recipient, after_seq=after_seq,
                                        unfetched_only=unfetched_only, limit=limit)
        return [self.delivery_view(r) for r in rows]

    async def watch_inbox(self, recipient: str, *, after_seq: int = 0,
                          new_only: bool = False) -> AsyncIterator[DeliveryView]:
        after = await self.catalog.last_delivery_seq() if new_only else after_seq
        while True:
            for row in await self.catalog.inbox(recipient, after_seq=after, limit=100):
                after = row["seq"]
                yield self.delivery_view(row)
            await self.effects.wait_delivery(1.0)

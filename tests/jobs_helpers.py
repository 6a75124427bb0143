"""What the asynchronous layer of jobs/ needs of the processing service, without Dask."""

from __future__ import annotations

from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.pipeline import Pipeline


class FakeService:
    """Records ends in the real catalog (``finish``), as the processing service does: the
    typed usage record stored as its dict."""

    def __init__(self, catalog: Catalog, error: BaseException | None = None):
        self.catalog = catalog
        self.error = error
        self.unrecorded: dict[str, tuple] = {}
        self.finished: list[tuple] = []

    async def finish(self, job, usage, extra=None) -> bool:
        if self.error is not None:
            raise self.error
        self.finished.append((job, usage))
        return await self.catalog.finish_job(job, usage.as_dict(), extra)

    #: The processing service's own: finish, or keep the end in ``unrecorded``.
    record_end = Pipeline.record_end

    async def record_unrecorded(self) -> int:
        return len(self.unrecorded)


def new_job(job_id="j1", subscriber="s", destination=None):
    return jobs.new_job(subscriber=subscriber, operations=["gaussian"],
                        inputs=["inline:8", "inline:8"], device="cpu", created_at=10.0,
                        job_id=job_id, destination=destination)


async def submitted(catalog: Catalog, job_id="j1", *, queued=True, bytes_in=16, label="",
                    destination=None, subscriber="s"):
    """An asynchronous job with its request row, RECEIVING or QUEUED."""
    job = new_job(job_id, subscriber, destination)
    job, _ = await catalog.create_request(job, {
        "idempotency_key": None, "request_sha256": "0" * 64, "header": b"request",
        "label": label, "destination": destination or ""})
    if queued:
        job = jobs.apply(job, jobs.InputsReceived(11.0))
        await catalog.queue(job, bytes_in)
    return job

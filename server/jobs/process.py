"""The processing service: one request becomes one job, run on a Dask worker.

Domain code: it takes a :class:`~medcompute.server.jobs.requests.ProcessRequest` and the
images' payloads as they arrive, and returns a
:class:`~medcompute.server.jobs.results.JobResult`. The job's phases are those of
:class:`~medcompute.server.jobs.pipeline.Pipeline`. It raises domain errors, their
fields relative to the request; the servicer places them and maps them to status codes.
"""

from __future__ import annotations

from medcompute.server.jobs import derived
from medcompute.server.jobs.pipeline import Payloads, Pipeline
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.jobs.results import JobResult

__all__ = ["ProcessingService"]


class ProcessingService(Pipeline):
    """The synchronous call, and the phases every other kind of job goes through."""

    async def process(self, request: ProcessRequest, payloads: Payloads, *, subscriber: str,
                      on_job=None) -> JobResult:
        """Receive the inputs, run the pipeline on a worker, record the job and its usage."""
        request = await self.prepare(request, subscriber=subscriber)
        self.check_space(request, "spool")
        reused = await derived.reuse(self, request, subscriber=subscriber)
        if reused is not None:
            return reused
        job = self.new_job(request, subscriber=subscriber)
        await self.catalog.put_job(job)
        if on_job is not None:
            on_job(job.id)
        return await self.run(job, request, self.place(request), payloads=payloads)

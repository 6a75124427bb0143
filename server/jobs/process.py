"""The processing service: one request becomes one job, run on a Dask worker.

Domain code: it takes a :class:`~medcompute.server.jobs.requests.ProcessRequest` and the
images' payloads as they arrive, and returns a
:class:`~medcompute.server.jobs.results.JobResult`. The job's phases are those of
:class:`~medcompute.server.jobs.pipeline.Pipeline`. It raises domain errors, their
fields relative to the request; the servicer places them and maps them to status codes.
"""

from __future__ import annotations

from medcompute.server.jobs import derived, validate
from medcompute.server.jobs.pipeline import Payloads, Pipeline
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.jobs.results import JobResult

__all__ = ["ProcessingService"]


class ProcessingService(Pipeline):
    """The synchronous call, and the phases every other kind of job goes through."""

    async def process(self, request: ProcessRequest, payloads: Payloads, *, subscriber: str,
                      on_job=None) -> JobResult:
        """Receive the inputs, run the pipeline on a worker, record the job and its usage.

        A request that names shared-memory regions (regions.py) is checked against them
        before its job: the worker then reads its input from, or writes its result
        into, the client's region."""
        request = await self.prepare(request, subscriber=subscriber)
        request = self.admit_regions(request, subscriber=subscriber)
        if request.input_region is not None:
            payloads = None             # the worker reads the input from the region
        self.check_space(request, "spool")
        reused = await derived.reuse(self, request, subscriber=subscriber)
        if reused is not None:
            return reused
        job = self.new_job(request, subscriber=subscriber)
        await self.catalog.put_job(job)
        if on_job is not None:
            on_job(job.id)
        return await self.run(job, request, self.place(request), payloads=payloads,
                              bytes_in=request.input_region.length
                              if request.input_region is not None else 0)

    def admit_regions(self, request: ProcessRequest, *, subscriber: str) -> ProcessRequest:
        """A request that names shared-memory regions, with their objects looked up
        (NotFound: not the subscriber's) and checked against them (validate.py), before
        its job; any other request as it is."""
        if request.input_region is None and request.output_region is None:
            return request
        request, input_size, output_size = self.regions.resolve(request, subscriber)
        validate.check_regions(request, input_size=input_size, output_size=output_size)
        return request

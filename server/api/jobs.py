"""The JobsService: asynchronous jobs, the inbox, usage and invoices. Translation only.

The runner answers with plain values (jobs/views.py); this module turns them into
messages, maps job states to and from the JobState enum, and lends the runner the
:class:`JobCodec` that reads and writes the stored SubmitHeader and ResultHeader bytes.
"""

from __future__ import annotations

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2, jobs_pb2, jobs_pb2_grpc, processing_pb2
from medcompute.server.api import billing as billing_api
from medcompute.server.api.guard import Guard, rpc
from medcompute.server.api.processing import result_header, stored_submit
from medcompute.server.api.requests import HEADER, submit_request
from medcompute.server.api.transport import header_and_chunks, image_payloads, result_chunks
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.jobs.runner import JobRunner
from medcompute.server.jobs.states import State
from medcompute.server.jobs.views import (
    DeliveryState,
    DeliveryView,
    JobPage,
    JobUpdate,
    JobView,
    ResultInfo,
)

__all__ = ["JobsServicer", "ProtoJobCodec", "job_info", "job_state",
           "domain_state", "delivery_message"]

_STATES = {s: jobs_pb2.JobState.Value(f"JOB_STATE_{s.value}") for s in State}
_DOMAIN_STATES = {number: state for state, number in _STATES.items()}
_DELIVERY = {d: jobs_pb2.DeliveryState.Value(f"DELIVERY_STATE_{d.value}")
             for d in DeliveryState}


def job_state(state: State) -> int:
    """The JobState number of a job state."""
    return _STATES[state]


def domain_state(number: int, field: str = "states") -> State:
    """The job state a JobState number names; InvalidArgument for UNSPECIFIED or unknown."""
    state = _DOMAIN_STATES.get(number)
    if state is None:
        raise InvalidArgument(wire.enum_choices(jobs_pb2.JobState, number), field)
    return state


def job_info(view: JobView) -> jobs_pb2.JobInfo:
    return jobs_pb2.JobInfo(
        job_id=view.job_id, subscriber=view.subscriber, state=_STATES[view.state],
        operations=view.operations, destination=view.destination,
        delivery=_DELIVERY[view.delivery], label=view.label,
        idempotency_key=view.idempotency_key, created_at=view.created_at,
        queued_at=view.queued_at, started_at=view.started_at, finished_at=view.finished_at,
        delivered_at=view.delivered_at, fetched_at=view.fetched_at, worker=view.worker,
        error=view.error, error_code=view.error_code, platform_fault=view.platform_fault,
        progress=view.progress, result_available=view.result_available,
        asynchronous=view.asynchronous)


def watch_response(update: JobUpdate) -> jobs_pb2.WatchJobResponse:
    return jobs_pb2.WatchJobResponse(job=job_info(update.job), message=update.message)


def list_response(page: JobPage) -> jobs_pb2.ListJobsResponse:
    return jobs_pb2.ListJobsResponse(jobs=[job_info(v) for v in page.jobs],
                                     next_page_token=page.next_page_token)


def delivery_message(view: DeliveryView) -> jobs_pb2.Delivery:
    header = processing_pb2.ResultHeader.FromString(view.result_header)
    return jobs_pb2.Delivery(
        seq=view.seq, job_id=view.job_id, sender=view.sender, operations=view.operations,
        label=view.label, delivered_at=view.delivered_at, fetched_at=view.fetched_at,
        output=header.output)


class ProtoJobCodec:
    """The stored forms of an asynchronous job's request (a SubmitRequest, or the
    SubmitHeader an earlier version kept) and result (a ResultHeader), as the catalog keeps
    them; the runner's
    :class:`~medcompute.server.jobs.views.JobCodec`."""

    @staticmethod
    def process_header(stored: bytes) -> ProcessRequest:
        return stored_submit(stored).process

    @staticmethod
    def result_header(outcome, stored: bytes) -> bytes:
        compression = stored_submit(stored).process.result_compression
        return result_header(outcome, compression).SerializeToString()

    @staticmethod
    def result_info(header: bytes) -> ResultInfo:
        output = processing_pb2.ResultHeader.FromString(header).output
        # An array's chunks are shuffled by its voxel size, as a Process reply's are;
        # DICOM files byte by byte.
        itemsize = (wire.DTYPES[output.dtype].itemsize
                    if output.encoding != image_pb2.ENCODING_DICOM and output.dtype else 1)
        return ResultInfo(output.compression, itemsize, tuple(output.file_sizes))


class JobsServicer(jobs_pb2_grpc.JobsServiceServicer):
    def __init__(self, runner: JobRunner, guard: Guard, billing=None):
        self.runner = runner
        self.guard = guard
        self.billing = billing

    @rpc("jobs.submit", "process")
    async def Submit(self, request_iterator, context, call):
        header, chunks = await header_and_chunks(request_iterator)
        with HEADER.placed():
            submit = submit_request(header, max_image_bytes=self.runner.config.max_image_bytes)
            view, existing = await self.runner.submit(
                submit, image_payloads(chunks, submit.process.expected),
                subscriber=call.principal.subscriber, on_job=call.runs)
        if existing:
            call.detail = "idempotency key: the existing job"
        return jobs_pb2.SubmitResponse(job=job_info(view), existing=existing)

    @rpc("jobs.get", "process")
    async def GetJob(self, request, context, call):
        call.object_id = request.job_id
        return jobs_pb2.GetJobResponse(
            job=job_info(await self.runner.get(request.job_id, call.principal.subscriber)))

    @rpc("jobs.watch", "process")
    async def WatchJob(self, request, context, call):
        call.object_id = request.job_id
        async for update in self.runner.watch(request.job_id, call.principal.subscriber):
            yield watch_response(update)

    @rpc("jobs.fetch", ("process", "receive"))
    async def Fetch(self, request, context, call):
        call.object_id = request.job_id
        result = await self.runner.fetch(request.job_id, call.principal.subscriber,
                                         call.principal.roles)
        yield jobs_pb2.FetchResponse(header=processing_pb2.ResultHeader.FromString(result.header))
        for payload in result_chunks(result.path, compression=result.compression,
                                     itemsize=result.itemsize):
            yield wire.chunk_message(jobs_pb2.FetchResponse, payload)
        if result.recipient:
            await self.runner.fetched(request.job_id)

    @rpc("jobs.cancel", "process")
    async def CancelJob(self, request, context, call):
        call.object_id = request.job_id
        return jobs_pb2.CancelJobResponse(
            job=job_info(await self.runner.cancel(request.job_id, call.principal.subscriber)))

    @rpc("jobs.list", "process")
    async def ListJobs(self, request, context, call):
        subscriber = call.principal.subscriber
        if request.subscriber and request.subscriber != subscriber:
            self.guard.authorize(call.principal, "admin")
            subscriber = request.subscriber
        states = [domain_state(s) for s in request.states]
        return list_response(await self.runner.list(
            subscriber, states=states, since=request.since, until=request.until,
            operation=request.operation, label=request.label, page_size=request.page_size,
            page_token=request.page_token))

    @rpc("inbox.list", "receive")
    async def ListInbox(self, request, context, call):
        deliveries = await self.runner.inbox(
            call.principal.subscriber, after_seq=request.after_seq,
            unfetched_only=request.unfetched_only, page_size=request.page_size)
        return jobs_pb2.ListInboxResponse(deliveries=[delivery_message(d) for d in deliveries])

    @rpc("inbox.watch", "receive")
    async def WatchInbox(self, request, context, call):
        async for delivery in self.runner.watch_inbox(
                call.principal.subscriber, after_seq=request.after_seq,
                new_only=request.new_only):
            yield jobs_pb2.WatchInboxResponse(delivery=delivery_message(delivery))

    @rpc("usage.get", None)
    async def GetUsage(self, request, context, call):
        return await billing_api.get_usage(self.billing, request, call.principal)

    @rpc("usage.invoice", None)
    async def GetInvoice(self, request, context, call):
        return jobs_pb2.GetInvoiceResponse(
            invoice=await billing_api.get_invoice(self.billing, request, call.principal))

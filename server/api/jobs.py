"""The JobsService: asynchronous jobs, the inbox, usage and invoices. Translation only."""

from __future__ import annotations

from medcompute.proto import wire
from medcompute.proto.v1 import jobs_pb2, jobs_pb2_grpc
from medcompute.server.api.guard import Guard, rpc
from medcompute.server.api.requests import HEADER, submit_request
from medcompute.server.api.transport import header_and_chunks, image_payloads, result_chunks
from medcompute.server.jobs.runner import JobRunner

__all__ = ["JobsServicer"]


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
            info, existing = await self.runner.submit(
                submit, image_payloads(chunks, submit.process.expected),
                subscriber=call.principal.subscriber, on_job=call.runs)
        if existing:
            call.detail = "idempotency key: the existing job"
        return jobs_pb2.SubmitResponse(job=info, existing=existing)

    @rpc("jobs.get", "process")
    async def GetJob(self, request, context, call):
        call.object_id = request.job_id
        return jobs_pb2.GetJobResponse(
            job=await self.runner.get(request.job_id, call.principal.subscriber))

    @rpc("jobs.watch", "process")
    async def WatchJob(self, request, context, call):
        call.object_id = request.job_id
        async for event in self.runner.watch(request.job_id, call.principal.subscriber):
            yield event

    @rpc("jobs.fetch", ("process", "receive"))
    async def Fetch(self, request, context, call):
        call.object_id = request.job_id
        header, path, compression, itemsize, recipient = await self.runner.fetch(
            request.job_id, call.principal.subscriber, call.principal.roles)
        yield jobs_pb2.FetchResponse(header=header)
        for payload in result_chunks(path, compression=compression, itemsize=itemsize):
            yield wire.chunk_message(jobs_pb2.FetchResponse, payload)
        if recipient:
            await self.runner.fetched(request.job_id)

    @rpc("jobs.cancel", "process")
    async def CancelJob(self, request, context, call):
        call.object_id = request.job_id
        return jobs_pb2.CancelJobResponse(
            job=await self.runner.cancel(request.job_id, call.principal.subscriber))

    @rpc("jobs.list", "process")
    async def ListJobs(self, request, context, call):
        subscriber = call.principal.subscriber
        if request.subscriber and request.subscriber != subscriber:
            self.guard.authorize(call.principal, "admin")
            subscriber = request.subscriber
        return await self.runner.list(subscriber, request)

    @rpc("inbox.list", "receive")
    async def ListInbox(self, request, context, call):
        return await self.runner.inbox(call.principal.subscriber, request)

    @rpc("inbox.watch", "receive")
    async def WatchInbox(self, request, context, call):
        async for delivery in self.runner.watch_inbox(call.principal.subscriber, request):
            yield jobs_pb2.WatchInboxResponse(delivery=delivery)

    @rpc("usage.get", None)
    async def GetUsage(self, request, context, call):
        return await self.billing.get_usage(request, call.principal)

    @rpc("usage.invoice", None)
    async def GetInvoice(self, request, context, call):
        return jobs_pb2.GetInvoiceResponse(
            invoice=await self.billing.get_invoice(request, call.principal))

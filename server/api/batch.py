"""The BatchService: many images, one pipeline, one call. Translation only."""

from __future__ import annotations

from medcompute.proto import wire
from medcompute.proto.v1 import batch_pb2, batch_pb2_grpc
from medcompute.server.api.guard import Guard, rpc
from medcompute.server.api.processing import result_header
from medcompute.server.api.status import status_of
from medcompute.server.api.transport import header_and_chunks, result_payloads
from medcompute.server.jobs.batch import BatchProcessing
from medcompute.server.jobs.batch_submit import BatchSubmit

__all__ = ["BatchServicer"]


def _failure(index: int, job_id: str, error: BaseException) -> batch_pb2.BatchItemFailure:
    code, details = status_of(error)
    return batch_pb2.BatchItemFailure(item=index, job_id=job_id, code=code.name,
                                      message=details, field=getattr(error, "field", None) or "")


class BatchServicer(batch_pb2_grpc.BatchServiceServicer):
    def __init__(self, batch: BatchProcessing, guard: Guard, submitter: BatchSubmit | None = None):
        self.batch = batch
        self.guard = guard
        self.submitter = submitter

    @rpc("jobs.submit_batch", "process")
    async def SubmitBatch(self, request_iterator, context, call):
        header, chunks = await header_and_chunks(request_iterator)
        job_ids = []

        call.per_job = True

        def on_job(job_id):
            job_ids.append(job_id)
            call.runs(job_id)
            call.detail = f"batch of {len(header.inputs)} images, {len(job_ids)} job(s)"

        items = await self.submitter.submit(header, chunks,
                                            subscriber=call.principal.subscriber,
                                            on_job=on_job)
        return batch_pb2.SubmitBatchResponse(items=[batch_pb2.SubmitBatchItem(
            item=s.index, job=s.job, existing=s.existing,
            failure=_failure(s.index, s.job.job_id if s.job else "", s.error)
            if s.error is not None else None) for s in items])

    @rpc("process.batch", "process", job=True)
    async def ProcessBatch(self, request_iterator, context, call):
        header, chunks = await header_and_chunks(request_iterator)

        call.per_job = True

        def on_jobs(job_ids):
            call.runs(*job_ids)
            call.detail = f"batch of {len(header.inputs)} images, jobs {job_ids[0]} ..."

        compression = header.process.result_compression
        service = self.batch.service
        async for item in self.batch.run(header, chunks,
                                         subscriber=call.principal.subscriber,
                                         on_job=on_jobs, cancelled=context.cancelled):
            if item.outcome is None:
                yield batch_pb2.ProcessBatchResponse(
                    failure=_failure(item.index, item.job_id, item.error))
                continue
            outcome = item.outcome
            try:
                yield batch_pb2.ProcessBatchResponse(result=batch_pb2.BatchItemResult(
                    item=item.index, header=result_header(outcome, compression)))
                itemsize = wire.DTYPES[wire.dtype_to_proto(outcome.result.dtype)].itemsize \
                    if outcome.output_format == "raw" else 1
                for payload in result_payloads(outcome.result, compression=compression,
                                               itemsize=itemsize):
                    yield wire.chunk_message(batch_pb2.ProcessBatchResponse, payload,
                                             item=item.index)
            finally:
                service.release(outcome)


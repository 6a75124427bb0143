"""The BatchService: many images, one pipeline, one call. Translation only."""

from __future__ import annotations

from medcompute.proto import wire
from medcompute.proto.v1 import batch_pb2, batch_pb2_grpc, image_pb2
from medcompute.server.batch import BatchProcessing
from medcompute.server.guard import Guard, rpc
from medcompute.server.servicer import result_header
from medcompute.server.status import status_of
from medcompute.server.transport import header_and_chunks, result_chunks

__all__ = ["BatchServicer"]


def failure_message(item) -> batch_pb2.BatchItemFailure:
    code, details = status_of(item.error)
    return batch_pb2.BatchItemFailure(item=item.index, job_id=item.job_id, code=code.name,
                                      message=details,
                                      field=getattr(item.error, "field", None) or "")


class BatchServicer(batch_pb2_grpc.BatchServiceServicer):
    def __init__(self, batch: BatchProcessing, guard: Guard):
        self.batch = batch
        self.guard = guard

    @rpc("process.batch", "process", job=True)
    async def ProcessBatch(self, request_iterator, context, call):
        header, chunks = await header_and_chunks(request_iterator)

        def on_jobs(job_ids):
            call.object_id = job_ids[0]
            call.detail = f"batch of {len(header.inputs)} images, jobs {job_ids[0]} ..."

        compression = header.process.result_compression
        service = self.batch.service
        async for item in self.batch.run(header, chunks,
                                         subscriber=call.principal.subscriber,
                                         on_job=on_jobs):
            if item.outcome is None:
                yield batch_pb2.ProcessBatchResponse(failure=failure_message(item))
                continue
            outcome = item.outcome
            try:
                yield batch_pb2.ProcessBatchResponse(result=batch_pb2.BatchItemResult(
                    item=item.index, header=result_header(outcome, compression)))
                itemsize = wire.DTYPES[wire.dtype_to_proto(outcome.result.dtype)].itemsize \
                    if outcome.output_format == "raw" else 1
                for payload in result_chunks(outcome.result.out_path, compression=compression,
                                             itemsize=itemsize):
                    yield batch_pb2.ProcessBatchResponse(chunk=batch_pb2.BatchChunk(
                        item=item.index, chunk=image_pb2.Chunk(data=payload)))
            finally:
                service.release(outcome)


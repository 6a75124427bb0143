"""The BatchService: many images, one pipeline, one call. Translation only."""

from __future__ import annotations

from medcompute.proto import wire
from medcompute.proto.v1 import batch_pb2, batch_pb2_grpc
from medcompute.server.api.guard import Guard, rpc
from medcompute.server.api.jobs import job_info
from medcompute.server.api.processing import result_header
from medcompute.server.api.requests import (
    BATCH,
    SUBMIT_BATCH,
    Fields,
    image_source,
    process_request,
    region_refs,
    submit_request,
)
from medcompute.server.api.status import status_of
from medcompute.server.api.transport import batch_payloads, header_and_chunks, result_payloads
from medcompute.server.errors import InvalidArgument, named
from medcompute.server.jobs.batch import BatchProcessing, image_moves
from medcompute.server.jobs.batch_submit import BatchSubmit

__all__ = ["BatchServicer"]


def _failure(index: int, job_id: str, error: BaseException,
             fields: Fields) -> batch_pb2.BatchItemFailure:
    code, details = status_of(fields.place(error))
    return batch_pb2.BatchItemFailure(item=index, job_id=job_id, code=code.name,
                                      message=details, field=getattr(error, "field", None) or "")


def _images(inputs, *, max_image_bytes: int) -> list:
    """The batch's images (``header.inputs``), each as its own request's input."""
    images = []
    for i, source in enumerate(inputs):
        with named(moves=image_moves(i)):
            images.append(image_source(source, "input", max_bytes=max_image_bytes))
    return images


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

        limit = self.batch.service.config.max_image_bytes
        with SUBMIT_BATCH.placed():
            template = submit_request(header.submit, max_image_bytes=limit, template=True)
            with named("process"):
                _no_input(header.submit.process)
            images = _images(header.inputs, max_image_bytes=limit)
            items = await self.submitter.submit(
                template, images, batch_payloads(chunks, images),
                subscriber=call.principal.subscriber, on_job=on_job)
        return batch_pb2.SubmitBatchResponse(items=[batch_pb2.SubmitBatchItem(
            item=s.index, job=job_info(s.job) if s.job is not None else None,
            existing=s.existing,
            failure=_failure(s.index, s.job.job_id if s.job else "", s.error, SUBMIT_BATCH)
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
        limit = service.config.max_image_bytes
        with BATCH.placed():
            _no_input(header.process)
            template = process_request(header.process, max_image_bytes=limit, template=True)
            images = _images(header.inputs, max_image_bytes=limit)
            n = len(header.inputs)
            inputs = region_refs(header.input_regions, "input_regions", n)
            outputs = region_refs(header.output_regions, "output_regions", n)
            items = self.batch.run(template, images, batch_payloads(chunks, images, inputs),
                                   subscriber=call.principal.subscriber, on_job=on_jobs,
                                   cancelled=context.cancelled, input_regions=inputs,
                                   output_regions=outputs)
            async for item in items:
                if item.result is None:
                    yield batch_pb2.ProcessBatchResponse(
                        failure=_failure(item.index, item.job_id, item.error, BATCH))
                    continue
                ended = item.result
                try:
                    yield batch_pb2.ProcessBatchResponse(result=batch_pb2.BatchItemResult(
                        item=item.index, header=result_header(ended, compression)))
                    if outputs[item.index] is not None:
                        continue        # the result is in the client's region
                    itemsize = wire.DTYPES[wire.dtype_to_proto(ended.result.dtype)].itemsize \
                        if ended.output_format == "raw" else 1
                    for payload in result_payloads(ended.result, compression=compression,
                                                   itemsize=itemsize):
                        yield wire.chunk_message(batch_pb2.ProcessBatchResponse, payload,
                                                 item=item.index)
                finally:
                    service.release(ended)



def _no_input(process) -> None:
    if process.HasField("input"):
        raise InvalidArgument("leave it unset in a batch: the images are in header.inputs",
                              "input")

"""gRPC servicers: translation only. Unpack the proto, await the domain, pack the reply."""

from __future__ import annotations

import asyncio

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2, jobs_pb2, processing_pb2, processing_pb2_grpc
from medcompute.server.api.guard import Guard, rpc
from medcompute.server.api.operations import OPERATIONS
from medcompute.server.api.requests import HEADER, process_request, submit_request
from medcompute.server.api.transport import header_and_chunks, image_payloads, result_payloads
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs import batcher as batching
from medcompute.server.jobs.metering import Usage
from medcompute.server.jobs.process import ProcessingService
from medcompute.server.jobs.requests import SubmitRequest
from medcompute.server.jobs.results import JobResult
from medcompute.server.software.catalog import APPROVED

__all__ = ["ProcessingServicer", "result_header", "usage_message", "stored_submit"]


def usage_message(usage: Usage) -> processing_pb2.UsageRecord:
    return processing_pb2.UsageRecord(**usage.as_dict())


def result_header(ended: JobResult, compression: int) -> processing_pb2.ResultHeader:
    r = ended.result
    if ended.output_format == "raw":
        output = image_pb2.ImageDescriptor(
            encoding=image_pb2.ENCODING_RAW, shape=r.shape, dtype=wire.dtype_to_proto(r.dtype),
            spacing_mm=ended.spacing or (), size=r.nbytes, crc32=r.crc32,
            compression=compression)
    else:
        output = image_pb2.ImageDescriptor(
            encoding=image_pb2.ENCODING_DICOM, file_sizes=r.file_sizes, size=r.nbytes,
            crc32=r.crc32,
            shape=r.shape, dtype=wire.dtype_to_proto(r.dtype), spacing_mm=ended.spacing or (),
            compression=compression)
    applied = [
        processing_pb2.AppliedOperation(
            name=op.name, summary=op.summary,
            parameters=[processing_pb2.Parameter(name=p.name, values=p.values, text=p.text,
                                                 unit=p.unit) for p in op.params])
        for op in ended.ops
    ]
    return processing_pb2.ResultHeader(
        job_id=ended.job.id, output=output, applied=applied, backend=r.backend,
        device=r.device, worker=r.worker,
        fallback=processing_pb2.Fallback(happened=bool(ended.fallback_reason),
                                         reason=ended.fallback_reason),
        versions=r.versions, usage=usage_message(ended.usage), slabs=ended.slabs,
        workers=ended.workers or [w for w in (r.worker,) if w],
        stored_image_id=ended.stored_image_id, reused=ended.reused, placement=ended.placement)


def stored_submit(blob: bytes) -> SubmitRequest:
    """An asynchronous job's request as its record keeps it (SubmitRequest.encode), or as
    earlier versions kept it: the SubmitHeader message (its limits were checked when it
    was accepted)."""
    if blob.startswith(b"{"):
        return SubmitRequest.decode(blob)
    return submit_request(jobs_pb2.SubmitHeader.FromString(blob), max_image_bytes=1 << 62)


def _package_specs() -> list[processing_pb2.OperationSpec]:
    """The operations of the approved software packages, each with its package."""
    specs = []
    for row in APPROVED.approved():
        for op in row.operations:
            specs.append(processing_pb2.OperationSpec(
                name=op["name"], summary=op["summary"], package=row.name,
                version=row.version, sha256=row.sha256,
                parameters=[processing_pb2.ParameterSpec(
                    name=p["name"], type="float", unit=p["unit"], default=f"{p['default']:g}",
                    description=p["description"]) for p in op["parameters"]]))
    return specs


def operations_message() -> processing_pb2.ListOperationsResponse:
    specs = []
    for spec in OPERATIONS.values():
        specs.append(processing_pb2.OperationSpec(
            name=spec.name, summary=spec.summary,
            parameters=[processing_pb2.ParameterSpec(
                name=p.name, type=p.type, per_axis=p.per_axis, unit=p.unit, default=p.default,
                choices=p.choices, description=p.description) for p in spec.params]))
    return processing_pb2.ListOperationsResponse(operations=specs + _package_specs())


#: ProcessHeader.priority, as the batcher orders its queue.
PRIORITIES = {processing_pb2.PRIORITY_UNSPECIFIED: batching.NORMAL,
              processing_pb2.PRIORITY_LOW: batching.LOW,
              processing_pb2.PRIORITY_NORMAL: batching.NORMAL,
              processing_pb2.PRIORITY_HIGH: batching.HIGH}


def priority(header: processing_pb2.ProcessHeader) -> int:
    level = PRIORITIES.get(header.priority)
    if level is None:
        raise InvalidArgument(wire.enum_choices(processing_pb2.Priority, header.priority),
                              "priority")
    return level


class ProcessingServicer(processing_pb2_grpc.ProcessingServiceServicer):
    def __init__(self, service: ProcessingService, guard: Guard,
                 batcher: batching.DynamicBatcher | None = None):
        self.service = service
        self.guard = guard
        #: Joins concurrent single-image calls into stacks (serve --batch-delay).
        self.batcher = batcher or batching.DynamicBatcher(service)

    @rpc("process", "process", job=True)
    async def Process(self, request_iterator, context, call):
        header, chunks = await header_and_chunks(request_iterator)
        with HEADER.placed():
            request = process_request(header, max_image_bytes=self.service.config.max_image_bytes,
                                      regions=True)
            level = priority(header)
            ended = await self.batcher.process(
                request, image_payloads(chunks, request.expected),
                subscriber=call.principal.subscriber, on_job=call.runs, priority=level)
        try:
            compression = header.result_compression
            yield processing_pb2.ProcessResponse(header=result_header(ended, compression))
            if request.output_region is not None:
                return                  # the result is in the client's region
            itemsize = wire.DTYPES[wire.dtype_to_proto(ended.result.dtype)].itemsize \
                if ended.output_format == "raw" else 1
            for payload in result_payloads(ended.result, compression=compression,
                                           itemsize=itemsize):
                yield wire.chunk_message(processing_pb2.ProcessResponse, payload)
        finally:
            self.service.release(ended)

    @rpc("region.register", "process")
    async def RegisterRegion(self, request, context, call):
        region = self.service.regions.register(call.principal.subscriber, request.name,
                                               request.size)
        return processing_pb2.RegisterRegionResponse(region_id=region.id)

    @rpc("region.unregister", "process")
    async def UnregisterRegion(self, request, context, call):
        self.service.regions.unregister(call.principal.subscriber, request.region_id)
        return processing_pb2.UnregisterRegionResponse()

    @rpc("operations.list", None, audit=False)
    async def ListOperations(self, request, context, call):
        return await asyncio.to_thread(operations_message)     # reads the approved packages

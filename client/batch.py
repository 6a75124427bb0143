"""Batch requests from the client: many images, one pipeline, results as each finishes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc

from medcompute.client.calls import (
    Result,
    ServiceError,
    _Assembly,
    _payload,
    _progress,
    _source,
)
from medcompute.client.request import _header, _read
from medcompute.client.shm import batch_shared
from medcompute.proto import wire
from medcompute.proto.v1 import batch_pb2, batch_pb2_grpc, jobs_pb2

__all__ = ["BatchItem", "process_many", "submit_many"]


@dataclass
class BatchItem:
    """One image of a batch: its ``result`` (``process_many``) or its queued ``job``
    (``submit_many``), or the ``error`` its job ended with."""

    index: int
    result: Result | None = None
    error: ServiceError | None = None
    job_id: str = ""
    job: jobs_pb2.JobInfo | None = None
    existing: bool = False       # submit_many: the idempotency key named an existing job

    @property
    def ok(self) -> bool:
        return self.error is None


def _messages(header, images, indices, codec: int, sent):
    yield batch_pb2.ProcessBatchRequest(header=header)
    for item, img in zip(indices, images):
        if isinstance(img, str):
            continue          # a stored image: the server has it
        for payload in _payload(img, codec):
            yield wire.chunk_message(batch_pb2.ProcessBatchRequest, payload, item=item)
            if sent is not None:
                sent.update(min(len(payload), wire.CHUNK_SIZE))


def _error(f: batch_pb2.BatchItemFailure) -> ServiceError:
    code = grpc.StatusCode[f.code] if f.code in grpc.StatusCode.__members__ \
        else grpc.StatusCode.UNKNOWN
    return ServiceError(code, f.message, [(f.field, f.message)] if f.field else [])


def _items(responses, offset: int) -> Iterator[BatchItem]:
    """The BatchItems of one ProcessBatch response stream (indices shifted by ``offset``)."""
    current = None                    # (index, _Assembly) of the result being received
    for message in responses:
        kind = message.WhichOneof("msg")
        if kind == "chunk":
            if current is None or message.chunk.item != current[0]:
                raise ServiceError(grpc.StatusCode.INTERNAL, "the server sent a chunk for "
                                   f"image {message.chunk.item} outside its result")
            current[1].add(message.chunk.chunk.data)
            continue
        if current is not None:
            yield BatchItem(current[0] + offset, current[1].result(),
                            job_id=current[1].header.job_id)
            current = None
        if kind == "result":
            current = (message.result.item, _Assembly(message.result.header))
        elif kind == "failure":
            f = message.failure
            yield BatchItem(f.item + offset, error=_error(f), job_id=f.job_id)
    if current is not None:
        yield BatchItem(current[0] + offset, current[1].result(),
                        job_id=current[1].header.job_id)


def process_many(client, images: Sequence, ops: Sequence, *, streams: int = 1,
                 timeout: float | None = None, progress: bool = False,
                 spacing=None, shared_memory: bool | None = None,
                 **options) -> Iterator[BatchItem]:
    """See :meth:`medcompute.client.Client.process_many`."""
    images = list(images)
    if not images:
        raise ValueError("images: expected at least one image")
    if streams < 1:
        raise ValueError(f"streams: expected >= 1, got {streams}")
    template, _ = _header(images[0], ops, spacing=spacing, **options)
    codec = template.result_compression
    template.ClearField("input")
    read = [_read(image, spacing) for image in images]
    stub = batch_pb2_grpc.BatchServiceStub(client._channel)
    if (client.shared_memory if shared_memory is None else shared_memory) and streams == 1 \
            and options.get("output", "array") == "array" and not options.get("store_result") \
            and not options.get("operands") \
            and all(not isinstance(i, str) and i.array is not None for i in read):
        done = yield from _process_shared(client, stub, template, read,
                                          timeout or client.timeout)
        if done:
            return
    streams = min(streams, len(images))
    size = -(-len(images) // streams)
    parts = [(at, read[at:at + size]) for at in range(0, len(images), size)]
    sent = _progress(sum(i.nbytes for i in read if not isinstance(i, str)), "upload", progress)

    def call(offset: int, part):
        header = batch_pb2.ProcessBatchHeader(process=template,
                                              inputs=[_source(i, codec) for i in part])
        return stub.ProcessBatch(_messages(header, part, range(len(part)), codec, sent),
                                 timeout=timeout or client.timeout)

    if len(parts) == 1:
        responses = call(*parts[0])
        try:
            yield from _items(responses, 0)
        except grpc.RpcError as exc:
            raise ServiceError.from_rpc(exc) from None
        finally:
            responses.cancel()
            if sent is not None:
                sent.close()
        return
    # Several calls at once: on a round-robin channel each goes to the next server.
    done = object()
    out: queue.Queue = queue.Queue()
    calls = [call(offset, part) for offset, part in parts]

    def drain(responses, offset):
        try:
            for item in _items(responses, offset):
                out.put(item)
            out.put(done)
        except grpc.RpcError as exc:
            out.put(ServiceError.from_rpc(exc))
        except BaseException as exc:  # handed to the caller's thread
            out.put(exc)

    threads = [threading.Thread(target=drain, args=(r, offset), daemon=True)
               for r, (offset, _) in zip(calls, parts)]
    for t in threads:
        t.start()
    try:
        remaining = len(threads)
        while remaining:
            got = out.get()
            if got is done:
                remaining -= 1
            elif isinstance(got, BaseException):
                raise got
            else:
                yield got
    finally:
        for r in calls:
            r.cancel()
        for t in threads:
            t.join(timeout=5)
        if sent is not None:
            sent.close()


def _process_shared(client, stub, template, read, timeout: float):
    """The batch over the client's shared-memory region (see client/shm.py); False when
    the server cannot use it (chunks from then on), before any item."""
    with client._arena() as arena:
        items = batch_shared(arena, stub, template, [i.array for i in read],
                             [_source(i, 0) for i in read], timeout=timeout)
        if items is None:
            client.shared_memory = False
            return False
        for index, got in items:
            if isinstance(got, Result):
                yield BatchItem(index, got, job_id=got.job_id)
            else:
                yield BatchItem(index, error=_error(got), job_id=got.job_id)
    return True


def submit_many(client, images: Sequence, ops: Sequence, *, idempotency_key: str = "",
                destination: str = "", label: str = "", timeout: float | None = None,
                progress: bool = False, spacing=None, **options) -> list[BatchItem]:
    """See :meth:`medcompute.client.Client.submit_many`."""
    images = list(images)
    if not images:
        raise ValueError("images: expected at least one image")
    template, _ = _header(images[0], ops, spacing=spacing, **options)
    codec = template.result_compression
    template.ClearField("input")
    read = [_read(image, spacing) for image in images]
    header = batch_pb2.SubmitBatchHeader(
        submit=jobs_pb2.SubmitHeader(process=template, idempotency_key=idempotency_key,
                                     destination=destination, label=label),
        inputs=[_source(i, codec) for i in read])
    sent = _progress(sum(i.nbytes for i in read if not isinstance(i, str)), "upload", progress)
    stub = batch_pb2_grpc.BatchServiceStub(client._channel)

    def messages():
        first = True
        for m in _messages(None, read, range(len(read)), codec, sent):
            if first:        # the process batch header: replaced by the submit's
                first = False
                yield batch_pb2.SubmitBatchRequest(header=header)
            else:
                yield batch_pb2.SubmitBatchRequest(chunk=m.chunk)

    try:
        reply = client._call(stub.SubmitBatch, messages(), timeout=timeout or client.timeout)
    finally:
        if sent is not None:
            sent.close()
    return [BatchItem(item.item, job=item.job if item.HasField("job") else None,
                      job_id=item.job.job_id, existing=item.existing,
                      error=_error(item.failure) if item.HasField("failure") else None)
            for item in reply.items]

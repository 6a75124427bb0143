"""Shared memory with a server on the same host: what ``Client.process`` uses by itself
when the server's address is a loopback or a unix socket.

The client creates one POSIX shared-memory object, registers it with the server
(RegisterRegion) and grows it when a call needs more. A call copies its image into the
object and names it in ``ProcessHeader.input_region``, and names the space after it as
``output_region``: the server's worker reads the image and writes the result there, and
the reply is the result's header alone. No pixel travels through gRPC.

The object is unregistered and unlinked when the client closes, when it is garbage
collected, and at interpreter exit (``weakref.finalize``); when the process is killed,
Python's resource tracker unlinks it, and the server drops the registration once the
object is gone.
"""

from __future__ import annotations

import ipaddress
import weakref
from multiprocessing import shared_memory

import grpc
import numpy as np

from medcompute.client.calls import Result, ServiceError, call
from medcompute.proto import wire
from medcompute.proto.v1 import batch_pb2, processing_pb2

__all__ = ["is_local", "SharedArena", "process_shared", "batch_shared"]

#: A new object holds at least this much; it is page-aligned anyway.
MIN_SIZE = 1 << 20
ALIGN = 4096


def is_local(address: str) -> bool:
    """Whether ``address`` (``HOST:PORT``, ``unix:PATH``) is a server on this host."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    if "," in address:                          # several servers: not one host's memory
        return False
    for prefix in ("ipv4:", "ipv6:", "dns:///", "dns:"):
        if address.startswith(prefix):
            address = address[len(prefix):]
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or "]" in address \
        else address
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _drop(shm: shared_memory.SharedMemory) -> None:
    """Close and unlink ``shm`` (once; it may be gone already)."""
    try:
        shm.close()
    except BufferError:        # a view of it still lives: the unlink frees it later
        pass
    try:
        shm.unlink()
    except FileNotFoundError:
        pass


class SharedArena:
    """One shared-memory object of a client, registered with its server."""

    def __init__(self, stub, timeout: float):
        self.stub = stub
        self.timeout = timeout
        self.shm: shared_memory.SharedMemory | None = None
        self.region_id = ""
        self._finalizer = None

    def ensure(self, nbytes: int) -> None:
        """An object of at least ``nbytes``, registered (a larger one replaces a smaller
        one); ServiceError when the server refuses it."""
        if self.shm is not None and self.shm.size >= nbytes:
            return
        self.release()
        shm = shared_memory.SharedMemory(create=True, size=_align(max(nbytes, MIN_SIZE)))
        finalizer = weakref.finalize(self, _drop, shm)
        try:
            reply = call(self.stub.RegisterRegion, processing_pb2.RegisterRegionRequest(
                name=shm.name, size=shm.size), timeout=self.timeout)
        except BaseException:
            finalizer()
            raise
        self.shm, self.region_id, self._finalizer = shm, reply.region_id, finalizer

    def release(self) -> None:
        """Unregister the object (if the server still answers) and unlink it."""
        if self.shm is None:
            return
        try:
            self.stub.UnregisterRegion(processing_pb2.UnregisterRegionRequest(
                region_id=self.region_id), timeout=min(self.timeout, 5.0))
        except grpc.RpcError:
            pass                  # the server forgets it once the object is gone
        self._finalizer()
        self.shm, self.region_id, self._finalizer = None, "", None

    def region(self, offset: int, length: int) -> processing_pb2.SharedRegion:
        return processing_pb2.SharedRegion(region_id=self.region_id, offset=offset,
                                           length=length)


def _ensure(arena: SharedArena, nbytes: int) -> bool:
    """``arena.ensure(nbytes)``; False when the server cannot use this host's shared
    memory (FAILED_PRECONDITION at registration: it is on another machine;
    UNIMPLEMENTED: an older server)."""
    try:
        arena.ensure(nbytes)
    except ServiceError as exc:
        if exc.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED):
            return False
        raise
    return True


def again_if_forgotten(arena: SharedArena, attempt):
    """``attempt()`` (a call over ``arena``'s region), once more after releasing the
    arena when the server forgot the region (it restarted: NOT_FOUND naming the region),
    so that the attempt registers it again."""
    try:
        return attempt()
    except ServiceError as exc:
        if exc.code != grpc.StatusCode.NOT_FOUND or "region" not in exc.details:
            raise
    arena.release()
    return attempt()


def _copied_out(arena: SharedArena, out, offset: int) -> np.ndarray:
    """A copy of the result ``out`` (its ImageDescriptor) the server wrote at ``offset``."""
    dtype = wire.dtype_from_proto(out.dtype, "result.dtype")
    shape = tuple(out.shape)
    view = np.frombuffer(arena.shm.buf, dtype=dtype, count=int(np.prod(shape)),
                         offset=offset)
    result = view.reshape(shape).copy()
    del view
    return result


def process_shared(arena: SharedArena, stub, header: processing_pb2.ProcessHeader,
                   array: np.ndarray, *, timeout: float) -> Result | None:
    """One Process call over ``arena``: the image copied in, the result copied out;
    None when the server cannot use this host's shared memory (FAILED_PRECONDITION at
    registration: it is on another machine; UNIMPLEMENTED: an older server).

    The output part is sized for a result of the input's voxels in the output dtype
    (every operation keeps or reduces the voxels); the server refuses a part too small
    for the result before any job (INVALID_ARGUMENT, output_region.length)."""
    array = np.ascontiguousarray(array)
    out_dtype = wire.dtype_from_proto(header.output_dtype, "output_dtype")
    in_len, out_at = array.nbytes, _align(array.nbytes)
    out_len = array.size * out_dtype.itemsize
    if not _ensure(arena, out_at + out_len):
        return None
    target = np.frombuffer(arena.shm.buf, dtype=array.dtype, count=array.size)
    target[...] = array.reshape(-1)
    del target
    header = header_with(header, arena.region(0, in_len), arena.region(out_at, out_len))
    first = _first(stub, header, timeout)
    return Result(first, array=_copied_out(arena, first.output, out_at))


def batch_shared(arena: SharedArena, stub, template: processing_pb2.ProcessHeader,
                 arrays: list[np.ndarray], sources, *, timeout: float):
    """One ProcessBatch call over ``arena``: every image copied in, each result copied out
    as it ends. Yields ``(index, Result)`` or ``(index, BatchItemFailure)``; returns
    None before the call when the server cannot use this host's shared memory (as
    :func:`process_shared`).

    Each image's output part is sized as :func:`process_shared` sizes it."""
    out_dtype = wire.dtype_from_proto(template.output_dtype, "output_dtype")
    arrays = [np.ascontiguousarray(a) for a in arrays]
    layout, at = [], 0
    for a in arrays:
        in_at, at = at, _align(at + a.nbytes)
        out_at, at = at, _align(at + a.size * out_dtype.itemsize)
        layout.append((in_at, a.nbytes, out_at, a.size * out_dtype.itemsize))
    if not _ensure(arena, at):
        return None
    buf = arena.shm.buf
    for a, (in_at, in_len, _, _) in zip(arrays, layout):
        target = np.frombuffer(buf, dtype=np.uint8, count=in_len, offset=in_at)
        target[...] = a.reshape(-1).view(np.uint8)
        del target
    header = batch_pb2.ProcessBatchHeader(
        process=template, inputs=sources,
        input_regions=[arena.region(i, n) for i, n, _, _ in layout],
        output_regions=[arena.region(o, n) for _, _, o, n in layout])
    return _batch_items(stub, header, arena, layout, timeout)


def _batch_items(stub, header, arena: SharedArena, layout, timeout: float):
    responses = stub.ProcessBatch(iter([batch_pb2.ProcessBatchRequest(header=header)]),
                                  timeout=timeout)
    try:
        for message in responses:
            kind = message.WhichOneof("msg")
            if kind == "failure":
                yield message.failure.item, message.failure
                continue
            if kind != "result":
                raise ServiceError(grpc.StatusCode.INTERNAL, "the server sent chunks of a "
                                   "result it was to write into the region")
            item, first = message.result.item, message.result.header
            yield item, Result(first, array=_copied_out(arena, first.output,
                                                        layout[item][2]))
    except grpc.RpcError as exc:
        raise ServiceError.from_rpc(exc) from None
    finally:
        responses.cancel()


def header_with(header, input_region, output_region) -> processing_pb2.ProcessHeader:
    out = processing_pb2.ProcessHeader()
    out.CopyFrom(header)
    out.input_region.CopyFrom(input_region)
    out.output_region.CopyFrom(output_region)
    return out


def _first(stub, header, timeout) -> processing_pb2.ResultHeader:
    """The result header of a Process call whose result is in a region: its one reply,
    read to the end of the call (the call then ends OK on the server too, never
    cancelled by the client going on)."""
    try:
        responses = stub.Process(iter([processing_pb2.ProcessRequest(header=header)]),
                                 timeout=timeout)
        replies = list(responses)
    except grpc.RpcError as exc:
        raise ServiceError.from_rpc(exc) from None
    if not replies or replies[0].WhichOneof("msg") != "header":
        raise ServiceError(grpc.StatusCode.INTERNAL, "the server sent no result header")
    if len(replies) > 1:
        raise ServiceError(grpc.StatusCode.INTERNAL, "the server sent chunks of a result "
                           "it was to write into the region")
    return replies[0].header

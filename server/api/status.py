"""The one place where domain errors become gRPC status codes.

A :class:`MedcomputeError` becomes its code and details; a full or failing disk met
anyway (``OSError`` ENOSPC/EIO, SQLite's "database or disk is full") becomes
RESOURCE_EXHAUSTED or UNAVAILABLE through :func:`~medcompute.server.storage.space.storage_fault`
(logged, not INTERNAL); anything unexpected is logged
with its traceback and answered INTERNAL with a reference, never with the traceback
itself. Servicer methods reach this through :func:`medcompute.server.api.guard.rpc`.
Details are cut to :data:`MAX_DETAILS` characters, so that a message repeating a long
value never costs the caller its status (gRPC's metadata limit).

An INVALID_ARGUMENT also carries the standard rich status (``grpc-status-details-bin``
trailer: a ``google.rpc.Status`` whose details hold a ``google.rpc.BadRequest`` with one
field violation, the field and what was expected), so that clients in any language read
the field without parsing the message.
"""

from __future__ import annotations

import inspect
import logging
import uuid

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from medcompute.server.errors import MedcomputeError
from medcompute.server.storage.space import storage_fault

__all__ = ["status_of", "rich_status", "UndecodableRequests", "MAX_DETAILS"]

log = logging.getLogger(__name__)


#: The longest message a caller gets: a status travels in gRPC's metadata (8 KiB by
#: default), so a message repeating a long value the caller sent is cut, with "…".
MAX_DETAILS = 1024


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DETAILS else text[:MAX_DETAILS - 1] + "…"


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and details a caller gets for ``exc``."""
    if isinstance(exc, MedcomputeError):
        return grpc.StatusCode[exc.code_name], _cut(exc.details)
    fault = storage_fault(exc)
    if fault is not None:
        log.warning("storage fault: %s (%s: %s)", fault.code_name, type(exc).__name__, exc)
        return grpc.StatusCode[fault.code_name], fault.details
    if isinstance(exc, DecodeError):
        # Raised by gRPC while it reads a request stream (no server code parses protobuf
        # itself): the caller sent bytes that are not a message of the call's type.
        return grpc.StatusCode.INVALID_ARGUMENT, (
            f"request: a message could not be parsed ({exc}); send messages encoded as the "
            "API's .proto files define them")
    ref = uuid.uuid4().hex[:12]
    log.error("internal error, reference %s", ref, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (reference {ref}; see the server log)"


def rich_status(exc: BaseException) -> tuple[grpc.StatusCode, str, tuple]:
    """``status_of(exc)`` and the trailing metadata that carries its google.rpc details."""
    code, details = status_of(exc)
    if isinstance(exc, MedcomputeError):
        field, description = exc.field, _cut(exc.message)
    elif isinstance(exc, DecodeError):
        field, description = "request", details
    else:
        field = description = None
    if code is not grpc.StatusCode.INVALID_ARGUMENT or not field:
        return code, details, ()
    violation = error_details_pb2.BadRequest.FieldViolation(field=field,
                                                            description=description)
    status = status_pb2.Status(code=code.value[0], message=details)
    status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return code, details, tuple(rpc_status.to_status(status).trailing_metadata)


class _Undecodable:
    """Stands in for a unary request whose bytes did not parse."""

    def __init__(self, error: DecodeError):
        self.error = error


async def _abort(context, error: DecodeError):
    code, details, trailers = rich_status(error)
    await context.abort(code, details, trailing_metadata=trailers)


class UndecodableRequests(grpc.aio.ServerInterceptor):
    """Answers a unary request that does not parse with INVALID_ARGUMENT.

    gRPC decodes a unary request before the method runs, so no error mapping around the
    method sees the failure, and gRPC itself would answer INTERNAL. This interceptor lets
    the decoding failure through as a value and aborts the call with the caller's status.
    (Requests of client-streaming calls are decoded as the method reads them, where
    :func:`status_of` maps the error.)
    """

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer

        def deserializer(data):
            try:
                return decode(data)
            except DecodeError as exc:
                return _Undecodable(exc)

        if handler.response_streaming:
            inner_stream = handler.unary_stream
            if inspect.isasyncgenfunction(inner_stream):
                async def streamed(request, context):
                    if isinstance(request, _Undecodable):
                        await _abort(context, request.error)
                    async for item in inner_stream(request, context):
                        yield item
            else:  # a method that sends its responses with context.write (health's Watch)
                async def streamed(request, context):
                    if isinstance(request, _Undecodable):
                        await _abort(context, request.error)
                    return await inner_stream(request, context)

            return grpc.unary_stream_rpc_method_handler(
                streamed, request_deserializer=deserializer,
                response_serializer=handler.response_serializer)

        inner = handler.unary_unary

        async def unary(request, context):
            if isinstance(request, _Undecodable):
                await _abort(context, request.error)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=deserializer,
            response_serializer=handler.response_serializer)

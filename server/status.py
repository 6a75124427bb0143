"""The one place where domain errors become gRPC status codes.

Servicer methods are wrapped with :func:`maps_errors`: a :class:`MedcomputeError`
aborts the call with its code and details; anything unexpected is logged with its
traceback and answered INTERNAL with a reference, never with the traceback itself.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import uuid

import grpc
from google.protobuf.message import DecodeError

from medcompute.server.errors import MedcomputeError

__all__ = ["maps_errors", "status_of"]

log = logging.getLogger(__name__)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and details a caller gets for ``exc``."""
    if isinstance(exc, MedcomputeError):
        return grpc.StatusCode[exc.code_name], exc.details
    if isinstance(exc, DecodeError):
        # Raised by gRPC while it reads a request stream (no server code parses protobuf
        # itself): the caller sent bytes that are not a message of the call's type.
        return grpc.StatusCode.INVALID_ARGUMENT, (
            f"request: a message could not be parsed ({exc}); send messages encoded as the "
            "API's .proto files define them")
    ref = uuid.uuid4().hex[:12]
    log.error("internal error, reference %s", ref, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (reference {ref}; see the server log)"


def maps_errors(method):
    """Wrap a unary or server-streaming servicer method with the error mapping."""
    if inspect.isasyncgenfunction(method):
        @functools.wraps(method)
        async def stream(self, request, context):
            try:
                async for item in method(self, request, context):
                    yield item
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                code, details = status_of(exc)
                await context.abort(code, details)
        return stream

    @functools.wraps(method)
    async def unary(self, request, context):
        try:
            return await method(self, request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            code, details = status_of(exc)
            await context.abort(code, details)
    return unary

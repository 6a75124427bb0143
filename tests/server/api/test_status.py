"""Error mapping: domain errors and undecodable requests become precise status codes."""

import grpc
import pytest

from medcompute.proto.v1 import processing_pb2, processing_pb2_grpc, store_pb2, store_pb2_grpc
from medcompute.server.api.guard import Guard, rpc
from medcompute.server.api.status import UndecodableRequests
from medcompute.server.config import ServerConfig
from medcompute.server.errors import NotFound
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.keys import KeyStore

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

CORRUPT = b"\x12\xff\xff\xff\xff\x0f"  # a length-delimited field longer than the message


class _Processing(processing_pb2_grpc.ProcessingServiceServicer):
    def __init__(self, guard):
        self.guard = guard

    @rpc("operations.list", None, audit=False)
    async def ListOperations(self, request, context, call):
        return processing_pb2.ListOperationsResponse()


class _Store(store_pb2_grpc.StoreServiceServicer):
    def __init__(self, guard):
        self.guard = guard

    @rpc("store.get", None)
    async def Get(self, request, context, call):
        if request.image_id != "known":
            raise NotFound("no such image", "image_id")
        yield store_pb2.GetResponse(header=store_pb2.GetHeader())


async def _serve(data_dir):
    # The servicers' own error mapping, as in the server: the guard of a data directory
    # without keys (every call is the local subscriber).
    guard = Guard(ServerConfig(data_dir=data_dir), KeyStore(data_dir), AuditLog(data_dir))
    server = grpc.aio.server(interceptors=[UndecodableRequests()])
    processing_pb2_grpc.add_ProcessingServiceServicer_to_server(_Processing(guard), server)
    store_pb2_grpc.add_StoreServiceServicer_to_server(_Store(guard), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_an_undecodable_unary_request_is_invalid_argument(tmp_path):
    server, address = await _serve(tmp_path)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            identity = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
            ops = channel.unary_unary("/medcompute.v1.ProcessingService/ListOperations", **identity)
            get = channel.unary_stream("/medcompute.v1.StoreService/Get", **identity)
            for call in (lambda: ops(CORRUPT), lambda: _drain(get(CORRUPT))):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call()
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "could not be parsed" in info.value.details()
            # Valid requests still reach the methods, and their own errors still map.
            assert await ops(b"") == b""
            known = store_pb2.GetRequest(image_id="known").SerializeToString()
            assert len(await _drain(get(known))) == 1
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _drain(get(store_pb2.GetRequest(image_id="x").SerializeToString()))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(None)


async def _drain(call):
    return [item async for item in call]


async def test_a_streaming_method_that_writes_its_responses_still_works():
    # The health service's Watch sends with context.write instead of yielding.
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.aio.server(interceptors=[UndecodableRequests()])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()
    finally:
        await server.stop(None)


async def test_a_long_message_is_cut_so_the_status_fits_in_metadata():
    from medcompute.server.api.status import MAX_DETAILS, rich_status, status_of
    from medcompute.server.errors import InvalidArgument

    exc = InvalidArgument(f"no such role {'x' * 100_000!r}", "roles")
    code, details = status_of(exc)
    assert len(details) == MAX_DETAILS and details.endswith("…")
    _, _, trailers = rich_status(exc)
    assert sum(len(v) for _, v in trailers) < 4 * MAX_DETAILS

"""The servicer table: every medcompute service, the health service and reflection on one
gRPC server."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from medcompute.server.api.registry import (
    ADMINISTRATION_SERVICES,
    WORKER_SERVICES,
    Components,
    add_servicers,
)


def _unused_components() -> Components:
    """Stand-ins for the domain parts: registering calls none of them."""
    unused = {name: object() for name in Components.__dataclass_fields__}
    unused["store"] = SimpleNamespace(catalog=object())
    unused["service"] = SimpleNamespace(regions=object())
    return Components(**unused)


def test_every_service_is_served_listed_and_the_administration_ones_are_serving():
    async def main():
        server = grpc.aio.server()
        parts = _unused_components()
        servicers = await add_servicers(server, parts)
        assert servicers.dicom.node is None and servicers.dicom.sources is parts.sources
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for name in ADMINISTRATION_SERVICES:
                    reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
                # The worker services are unknown until the health watch sets them.
                for name in WORKER_SERVICES[1:]:
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await health.Check(health_pb2.HealthCheckRequest(service=name))
                    assert err.value.code() == grpc.StatusCode.NOT_FOUND
                await servicers.publish()(WORKER_SERVICES[1], False)
                reply = await health.Check(
                    health_pb2.HealthCheckRequest(service=WORKER_SERVICES[1]))
                assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING

                reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
                replies = reflection.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
                listed = {s.name async for r in replies
                          for s in r.list_services_response.service}
            assert {*WORKER_SERVICES[1:], *ADMINISTRATION_SERVICES,
                    "grpc.health.v1.Health"} <= listed
        finally:
            await server.stop(None)
    asyncio.run(asyncio.wait_for(main(), 30))

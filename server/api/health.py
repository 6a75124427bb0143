"""The standard gRPC health service (``grpc.health.v1.Health``) of the server.

What serves is decided by monitoring/health.py; :func:`publisher` turns its
``publish(name, serving)`` into the health service's SERVING / NOT_SERVING.
"""

from __future__ import annotations

from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from medcompute.server.monitoring.health import Publish

__all__ = ["SERVICE_NAME", "add_health", "publisher"]

#: The health service's own full name (listed by reflection).
SERVICE_NAME = health.SERVICE_NAME


def publisher(servicer: health.aio.HealthServicer) -> Publish:
    """``publish(name, serving)`` onto ``servicer``."""
    async def publish(name: str, serving: bool) -> None:
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING if serving
                           else health_pb2.HealthCheckResponse.NOT_SERVING)
    return publish


def add_health(server) -> health.aio.HealthServicer:
    """Serve the health service on ``server``; return its servicer (every name unknown
    until set)."""
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer

"""Start the service: the data directory, the Dask cluster, the gRPC server.

:func:`start` returns a :class:`Running` with the port it bound (tests bind
port 0); :meth:`Running.stop` stops it gracefully. :func:`serve` runs until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from medcompute.proto import wire
from medcompute.proto.v1 import processing_pb2, processing_pb2_grpc
from medcompute.server.catalog import Catalog
from medcompute.server.config import ServerConfig
from medcompute.server.dispatch import Dispatcher
from medcompute.server.errors import FailedPrecondition
from medcompute.server.service import ProcessingService
from medcompute.server.servicer import ProcessingServicer
from medcompute.server.transport import Spool

__all__ = ["Running", "start", "serve", "SERVICE_NAME", "check_address"]

log = logging.getLogger(__name__)

SERVICE_NAME = processing_pb2.DESCRIPTOR.services_by_name["Processing"].full_name
#: Message size limit on both ends: a chunk plus its envelope.
MESSAGE_LIMIT = wire.MAX_MESSAGE_BYTES + (64 << 10)
HEALTH_INTERVAL = 1.0


def _host(address: str) -> str:
    host, sep, _ = address.rpartition(":")
    if not sep:
        raise FailedPrecondition(f"expected HOST:PORT, got {address!r}", "--address")
    return host.strip("[]")


def check_address(address: str) -> None:
    """Refuse a non-loopback address: this server has no TLS or API keys to offer there."""
    host = _host(address)
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise FailedPrecondition(
            f"refusing to listen on {host}: only loopback addresses are served (without TLS "
            "and API keys a remote caller would be unauthenticated); use 127.0.0.1", "--address")


@dataclass
class Running:
    server: grpc.aio.Server
    port: int
    address: str
    dispatcher: Dispatcher
    catalog: Catalog
    health: health.aio.HealthServicer
    _watch: asyncio.Task

    async def stop(self, grace: float | None = 5.0) -> None:
        self._watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watch
        await self.server.stop(grace)
        await self.dispatcher.close()
        self.catalog.close()


async def _watch_health(dispatcher: Dispatcher, servicer) -> None:
    serving = None
    while True:
        ok = await dispatcher.worker_count() > 0
        if ok != serving:
            status = (health_pb2.HealthCheckResponse.SERVING if ok
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for name in ("", SERVICE_NAME):
                await servicer.set(name, status)
            log.info("health: %s", "SERVING" if ok else "NOT_SERVING (no Dask worker)")
            serving = ok
        await asyncio.sleep(HEALTH_INTERVAL)


async def start(config: ServerConfig) -> Running:
    """Start everything; return once the server accepts calls."""
    check_address(config.address)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(config.data_dir)
    spool = Spool(config.data_dir)
    spool.clear()
    dispatcher = Dispatcher(config)
    try:
        await dispatcher.start()
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", MESSAGE_LIMIT),
            ("grpc.max_send_message_length", MESSAGE_LIMIT),
        ])
        service = ProcessingService(config, catalog, dispatcher, spool)
        processing_pb2_grpc.add_ProcessingServicer_to_server(
            ProcessingServicer(service, config.subscriber), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        port = server.add_insecure_port(config.address)
        await server.start()
    except BaseException:
        await dispatcher.close()
        catalog.close()
        raise
    watch = asyncio.create_task(_watch_health(dispatcher, health_servicer))
    address = f"{_host(config.address)}:{port}"
    log.info("medcompute serving on %s (data in %s)", address, config.data_dir)
    return Running(server, port, address, dispatcher, catalog, health_servicer, watch)


async def serve(config: ServerConfig) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully."""
    running = await start(config)
    print(f"medcompute serving on {running.address} (data directory {config.data_dir}, "
          f"Dask scheduler {running.dispatcher.scheduler_address}); Ctrl-C stops", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await running.stop(config.grace)

"""Start the service: the data directory, the Dask cluster, the gRPC server.

:func:`start` returns a :class:`Running` with the port it bound (tests bind
port 0); :meth:`Running.stop` stops it gracefully. :func:`serve` runs until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import signal
import uuid
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from medcompute.proto import wire
from medcompute.proto.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    batch_pb2,
    batch_pb2_grpc,
    capacity_pb2,
    capacity_pb2_grpc,
    dicom_pb2,
    dicom_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    processing_pb2,
    processing_pb2_grpc,
    store_pb2,
    store_pb2_grpc,
    studies_pb2,
    studies_pb2_grpc,
    tiers_pb2,
    tiers_pb2_grpc,
)
from medcompute.server.api import reflection
from medcompute.server.api.admin import AdminServicer
from medcompute.server.api.batch import BatchServicer
from medcompute.server.api.capacity import CapacityServicer
from medcompute.server.api.dicom import DicomServicer, legacy_rule
from medcompute.server.api.guard import Guard, job_audit
from medcompute.server.api.jobs import JobsServicer
from medcompute.server.api.processing import ProcessingServicer
from medcompute.server.api.status import UndecodableRequests
from medcompute.server.api.store import StoreServicer
from medcompute.server.api.studies import StudyServicer
from medcompute.server.api.tiers import TierServicer
from medcompute.server.billing.service import BillingService
from medcompute.server.billing.tariff import TariffError, load_tariff
from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.collect import SourceBook
from medcompute.server.dicomnet.node import DicomNode
from medcompute.server.dicomnet.push import PushBook
from medcompute.server.dicomnet.registry import NodeRegistry
from medcompute.server.dicomnet.routing import RuleBook
from medcompute.server.dispatch.dispatcher import Dispatcher
from medcompute.server.errors import FailedPrecondition
from medcompute.server.jobs.batch import BatchProcessing
from medcompute.server.jobs.batch_submit import BatchSubmit
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.process import ProcessingService
from medcompute.server.jobs.runner import JobRunner
from medcompute.server.monitoring.metrics import Metrics
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.keys import KeyStore
from medcompute.server.storage.space import FreeSpaceReserve
from medcompute.server.storage.spool import Spool
from medcompute.server.store.admin import maintain
from medcompute.server.store.images import ImageStore

__all__ = ["Running", "start", "serve", "SERVICE_NAME", "check_address"]

log = logging.getLogger(__name__)

SERVICE_NAME = processing_pb2.DESCRIPTOR.services_by_name["ProcessingService"].full_name
STORE_SERVICE_NAME = store_pb2.DESCRIPTOR.services_by_name["StoreService"].full_name
ADMIN_SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
JOBS_SERVICE_NAME = jobs_pb2.DESCRIPTOR.services_by_name["JobsService"].full_name
DICOM_SERVICE_NAME = dicom_pb2.DESCRIPTOR.services_by_name["DicomService"].full_name
CAPACITY_SERVICE_NAME = capacity_pb2.DESCRIPTOR.services_by_name["CapacityService"].full_name
TIER_SERVICE_NAME = tiers_pb2.DESCRIPTOR.services_by_name["TierService"].full_name
STUDY_SERVICE_NAME = studies_pb2.DESCRIPTOR.services_by_name["StudyService"].full_name
#: The services whose health follows the Dask workers (none: NOT_SERVING), and the
#: server as a whole (""). The administration services (AdminService, DicomService,
#: CapacityService, TierService, StudyService) need no worker: they are SERVING while the
#: server runs.
ADMINISTRATION_SERVICES = (ADMIN_SERVICE_NAME, DICOM_SERVICE_NAME, CAPACITY_SERVICE_NAME,
                           TIER_SERVICE_NAME, STUDY_SERVICE_NAME)
BATCH_SERVICE_NAME = batch_pb2.DESCRIPTOR.services_by_name["BatchService"].full_name
WORKER_SERVICES = ("", SERVICE_NAME, STORE_SERVICE_NAME, JOBS_SERVICE_NAME, BATCH_SERVICE_NAME)
#: Message size limit on both ends: a chunk plus its envelope.
MESSAGE_LIMIT = wire.MAX_MESSAGE_BYTES + (64 << 10)
HEALTH_INTERVAL = 1.0
#: The health service's name for the data directory's storage: NOT_SERVING while a
#: location is below its free-space reserve (writes refused, reads still served).
STORAGE_HEALTH_NAME = "medcompute.storage"


def _host(address: str) -> str:
    host, sep, _ = address.rpartition(":")
    if not sep:
        raise FailedPrecondition(f"expected HOST:PORT, got {address!r}", "--address")
    return host.strip("[]")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(config: ServerConfig) -> None:
    """Secure by default: a non-loopback address needs TLS and API keys, or --insecure."""
    host = _host(config.address)
    if bool(config.tls_cert) != bool(config.tls_key):
        raise FailedPrecondition("give both --tls-cert and --tls-key", "--tls-cert")
    if config.client_ca and not config.tls_cert:
        raise FailedPrecondition("--client-ca (mTLS) needs --tls-cert and --tls-key",
                                 "--client-ca")
    if (config.metrics_port is not None and not _loopback(config.metrics_address)
            and not config.insecure):
        raise FailedPrecondition(
            f"refusing to serve metrics on {config.metrics_address}: the endpoint has no TLS "
            "or keys; keep it on 127.0.0.1 behind a scraping proxy, or use --insecure on a "
            "closed monitoring network", "--metrics-address")
    if config.dicom_port is not None and (config.dicom_tls_cert or config.dicom_tls_key
                                          or config.dicom_tls_ca):
        from medcompute.server.dicomnet.tls import listener_context

        listener_context(config.dicom_tls_cert, config.dicom_tls_key, config.dicom_tls_ca)
    if (config.dicom_port is not None and not _loopback(config.dicom_address)
            and not config.dicom_tls_cert and not config.insecure):
        raise FailedPrecondition(
            f"refusing to accept DICOM on {config.dicom_address} without TLS: give "
            "--dicom-tls-cert and --dicom-tls-key (and --dicom-tls-ca to require callers' "
            "certificates), or use --insecure on a closed imaging network (calling AE titles "
            "are still checked against their hosts)", "--dicom-address")
    if _loopback(host):
        return
    if config.insecure:
        log.warning("INSECURE: listening on %s%s%s because --insecure was given", host,
                    "" if config.tls_cert else " without TLS",
                    "" if config.require_keys else " (API keys are required only once one "
                    "exists)")
        return
    if not config.tls_cert or not config.require_keys:
        raise FailedPrecondition(
            f"refusing to listen on {host}: a non-loopback address needs TLS (--tls-cert, "
            "--tls-key) and API keys (--require-keys); or use 127.0.0.1, or --insecure to "
            "accept the risk", "--address")


def _bind(server: grpc.aio.Server, config: ServerConfig) -> int:
    if not config.tls_cert:
        return server.add_insecure_port(config.address)
    credentials = grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=config.client_ca.read_bytes() if config.client_ca else None,
        require_client_auth=config.client_ca is not None)
    return server.add_secure_port(config.address, credentials)


@dataclass
class Running:
    server: grpc.aio.Server
    port: int
    address: str
    dispatcher: Dispatcher
    catalog: Catalog
    health: health.aio.HealthServicer
    _watch: asyncio.Task
    store: ImageStore | None = None
    _maintain: asyncio.Task | None = None
    guard: Guard | None = None
    runner: JobRunner | None = None
    metrics: Metrics | None = None
    #: The port of the Prometheus endpoint; 0 when it is off.
    metrics_port: int = 0
    billing: BillingService | None = None
    dicom: DicomNode | None = None
    dicom_servicer: DicomServicer | None = None

    @property
    def dicom_port(self) -> int:
        """The DICOM port; 0 when it is off."""
        return self.dicom.port if self.dicom is not None else 0

    async def stop(self, grace: float | None = 5.0) -> None:
        for task in (self._watch, self._maintain):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.dicom is not None:
            await self.dicom.stop()
        await self.server.stop(grace)
        if self.runner is not None:
            await self.runner.stop()
        await self.dispatcher.close()
        if self.metrics is not None:
            self.metrics.stop()
        if self.billing is not None:
            self.billing.close()
        if self.dicom_servicer is not None:
            self.dicom_servicer.close()
        self.catalog.close()
        if self.store is not None:
            self.store.close()
        if self.guard is not None:
            self.guard.keys.close()
            self.guard.audit.close()


async def _watch_storage(space: FreeSpaceReserve, servicer, was: bool | None) -> bool:
    try:
        below = await asyncio.to_thread(space.below)
    except OSError as exc:
        log.warning("health: cannot read the data directory's free space (%s)", exc)
        below = ["catalog"]
    ok = not below
    if ok != was:
        await servicer.set(STORAGE_HEALTH_NAME, health_pb2.HealthCheckResponse.SERVING if ok
                           else health_pb2.HealthCheckResponse.NOT_SERVING)
        if ok:
            log.info("health: storage SERVING (every location above its free-space reserve)")
        else:
            log.warning("health: storage NOT_SERVING: %s below the free-space reserve "
                        "(--min-free %s); writes are refused until space is freed",
                        ", ".join(below), space.min_free)
    return ok


async def _watch_health(dispatcher: Dispatcher, servicer, metrics: Metrics | None = None,
                        space: FreeSpaceReserve | None = None):
    serving = storage = None
    while True:
        if space is not None:
            storage = await _watch_storage(space, servicer, storage)
        cpu, gpu = await dispatcher.worker_kinds()
        if metrics is not None:
            metrics.set_workers(cpu, gpu)
        ok = cpu + gpu > 0
        if ok != serving:
            status = (health_pb2.HealthCheckResponse.SERVING if ok
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for name in WORKER_SERVICES:
                await servicer.set(name, status)
            log.info("health: %s", "SERVING" if ok else "NOT_SERVING (no Dask worker)")
            serving = ok
        await asyncio.sleep(HEALTH_INTERVAL)


async def start(config: ServerConfig) -> Running:
    """Start everything; return once the server accepts calls."""
    check_address(config)
    try:
        tariff = load_tariff(config.tariff)
    except TariffError as exc:
        raise FailedPrecondition(str(exc), "--tariff") from None
    config.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(config.data_dir, runner=uuid.uuid4().hex,
                      lease_seconds=config.job_lease_seconds)
    spool = Spool(config.data_dir, config.spool_name)
    spool.clear()
    dispatcher = Dispatcher(config)
    space = FreeSpaceReserve.from_config(config)
    store = ImageStore(config, dispatcher.call, space)
    metrics = Metrics()
    metrics.set_storage_source(space.status)
    metrics.set_reads_source(lambda: dict(store.tiers.reads))
    billing = BillingService(config.data_dir, tariff)
    runner = None
    dicom = None
    dicom_servicer = None
    server = keys = audit = None
    try:
        if config.sweep_store:
            await store.open()
        await dispatcher.start()
        server = grpc.aio.server(interceptors=[UndecodableRequests()], options=[
            ("grpc.max_receive_message_length", MESSAGE_LIMIT),
            ("grpc.max_send_message_length", MESSAGE_LIMIT),
            # Several server processes may listen on one address (serve --processes).
            ("grpc.so_reuseport", 1),
        ])
        service = ProcessingService(config, catalog, dispatcher, spool, store, metrics=metrics,
                                    space=space, job_audit=job_audit)
        keys, audit = KeyStore(config.data_dir), AuditLog(config.data_dir, writer=catalog)
        guard = Guard(config, keys, audit)
        runner = JobRunner(config, service, catalog, keys)
        metrics.set_queue_depth_source(lambda: guard.counters.jobs + runner.active())
        processing_pb2_grpc.add_ProcessingServiceServicer_to_server(
            ProcessingServicer(service, guard), server)
        batch = BatchProcessing(service)
        batch_pb2_grpc.add_BatchServiceServicer_to_server(
            BatchServicer(batch, guard, BatchSubmit(batch, runner)), server)
        jobs_pb2_grpc.add_JobsServiceServicer_to_server(JobsServicer(runner, guard, billing),
                                                        server)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(guard, keys, audit, catalog), server)
        store_pb2_grpc.add_StoreServiceServicer_to_server(StoreServicer(store, guard), server)
        rules = RuleBook(config.data_dir)
        try:        # rules an earlier version kept as RoutingRule messages
            await rules.upgrade(functools.partial(legacy_rule,
                                                  max_image_bytes=config.max_image_bytes))
        except BaseException:
            rules.close()
            raise
        dicom_servicer = DicomServicer(guard, NodeRegistry(config.data_dir), rules,
                                       PushBook(config.data_dir), SourceBook(config.data_dir))
        dicom_pb2_grpc.add_DicomServiceServicer_to_server(dicom_servicer, server)
        capacity_pb2_grpc.add_CapacityServiceServicer_to_server(
            CapacityServicer(store.catalog, guard), server)
        tiers_pb2_grpc.add_TierServiceServicer_to_server(TierServicer(store, guard), server)
        studies_pb2_grpc.add_StudyServiceServicer_to_server(StudyServicer(store, guard), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for name in ADMINISTRATION_SERVICES:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable((SERVICE_NAME, STORE_SERVICE_NAME, JOBS_SERVICE_NAME,
                           BATCH_SERVICE_NAME, *ADMINISTRATION_SERVICES, health.SERVICE_NAME),
                          server)
        port = _bind(server, config)
        await runner.start()
        await server.start()
        if config.dicom_port is not None:
            node = DicomNode(config, store, runner)
            await node.start()          # stops what it started if it cannot listen
            dicom = dicom_servicer.node = node
        metrics_port = 0
        if config.metrics_port is not None:
            metrics_port = metrics.start_http(config.metrics_address, config.metrics_port)
    except BaseException:
        # Whatever was started before the failure stops, the gRPC port included.
        if server is not None:
            await server.stop(None)
        if dicom is not None:
            await dicom.stop()
        if dicom_servicer is not None:
            dicom_servicer.close()
        if runner is not None:
            await runner.stop()
        if keys is not None:
            keys.close()
        if audit is not None:
            audit.close()
        await dispatcher.close()
        metrics.stop()
        billing.close()
        catalog.close()
        store.close()
        raise
    watch = asyncio.create_task(_watch_health(dispatcher, health_servicer, metrics, space))
    upkeep = asyncio.create_task(maintain(store, config.purge_interval))
    address = f"{_host(config.address)}:{port}"
    log.info("medcompute serving on %s (data in %s)", address, config.data_dir)
    return Running(server, port, address, dispatcher, catalog, health_servicer, watch,
                   store=store, _maintain=upkeep, guard=guard, runner=runner, metrics=metrics,
                   metrics_port=metrics_port, billing=billing, dicom=dicom,
                   dicom_servicer=dicom_servicer)


async def serve(config: ServerConfig, ready=None) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully. With ``config.processes`` > 1,
    start the other server processes on the same address once this one serves.
    ``ready``: an event set once serving (an extra process), instead of the printed line."""
    from medcompute.server.dispatch.allocator import keep_large_buffers
    from medcompute.server.front_ends import FrontEnds

    keep_large_buffers()          # this process; the embedded workers: cluster.py
    running = await start(config)
    extra = FrontEnds(config, running.address, running.dispatcher.scheduler_address)
    try:
        await extra.start()
    except BaseException:
        await extra.stop()
        await running.stop(config.grace)
        raise
    metrics = (f", Prometheus metrics on http://{config.metrics_address}:{running.metrics_port}"
               "/metrics" if running.metrics_port else "")
    dicom = (f", DICOM AE {config.dicom_ae_title} on {config.dicom_address}:"
             f"{running.dicom_port}"
             f"{' (TLS)' if running.dicom.tls is not None else ''}"
             if running.dicom is not None else "")
    processes = f", {config.processes} server processes" if config.processes > 1 else ""
    if ready is not None:
        ready.set()
    else:
        print(f"medcompute serving on {running.address} (data directory {config.data_dir}, "
              f"Dask scheduler {running.dispatcher.scheduler_address}{metrics}{dicom}"
              f"{processes}); Ctrl-C stops", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await extra.stop()
        await running.stop(config.grace)

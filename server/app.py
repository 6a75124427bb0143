"""The composition root: build every part of the server, and close it again.

:func:`start` builds the parts (the data directory's catalog, the Dask cluster, the
store, the gRPC server, the DICOM node, ...) one after the other; each part, once
built, hands its close to one :class:`contextlib.AsyncExitStack`. So there is one
teardown, in the reverse order of construction: at once when a part fails to start
(what was built before it is closed, and the error raised), or by
:meth:`Running.stop`. Whoever builds a part closes it; no part closes another.

A server starts only on a free address (:func:`check_free`): the processes of one
``serve --processes N`` share theirs (SO_REUSEPORT), no one else does.

:func:`start` returns a :class:`Running` with the port it bound (tests bind port 0);
:meth:`Running.stop` stops it gracefully. :func:`serve` runs until SIGINT or SIGTERM,
with the extra server processes of ``--processes`` (front_ends.py).

Which servicer serves which service is api/registry.py's; what the health service
says, monitoring/health.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import signal
import socket
import uuid
from dataclasses import dataclass, field

import grpc

from medcompute.proto import wire
from medcompute.server.api.dicom import legacy_rule
from medcompute.server.api.guard import Guard, job_audit
from medcompute.server.api.jobs import ProtoJobCodec
from medcompute.server.api.registry import (
    SERVICE_NAME,
    WORKER_SERVICES,
    Components,
    add_servicers,
)
from medcompute.server.api.status import UndecodableRequests
from medcompute.server.billing.service import BillingService
from medcompute.server.billing.tariff import TariffError, load_tariff
from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.collect import SourceBook
from medcompute.server.dicomnet.node import DicomNode
from medcompute.server.dicomnet.printing import Printing
from medcompute.server.dicomnet.push import PushBook
from medcompute.server.dicomnet.registry import NodeRegistry
from medcompute.server.dicomnet.routing import RuleBook
from medcompute.server.dicomweb.listener import HttpListener
from medcompute.server.dicomweb.web import http_door
from medcompute.server.dispatch.dispatcher import Dispatcher
from medcompute.server.errors import FailedPrecondition
from medcompute.server.front_ends import FrontEnds
from medcompute.server.jobs.batch import BatchProcessing
from medcompute.server.jobs.batch_submit import BatchSubmit
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.process import ProcessingService
from medcompute.server.jobs.regions import sweep_every
from medcompute.server.jobs.runner import JobRunner
from medcompute.server.logs import install as install_log_redaction
from medcompute.server.monitoring.health import watch_health
from medcompute.server.monitoring.metrics import Metrics
from medcompute.server.software.catalog import Limits
from medcompute.server.software.registry import SoftwareRegistry
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.db import Database
from medcompute.server.storage.keys import KeyStore
from medcompute.server.storage.space import FreeSpaceReserve
from medcompute.server.storage.spool import Spool
from medcompute.server.store.admin import maintain
from medcompute.server.store.images import ImageStore

__all__ = ["Running", "start", "serve", "SERVICE_NAME", "check_address", "check_free"]

log = logging.getLogger(__name__)

#: Message size limit on both ends: a chunk plus its envelope.
MESSAGE_LIMIT = wire.MAX_MESSAGE_BYTES + (64 << 10)


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
    if (config.http_port is not None and not _loopback(config.http_address)
            and not config.insecure and (not config.tls_cert or not config.require_keys)):
        raise FailedPrecondition(
            f"refusing to serve HTTP on {config.http_address}: a non-loopback address needs "
            "TLS (--tls-cert, --tls-key) and API keys (--require-keys); or use 127.0.0.1, or "
            "--insecure to accept the risk", "--http-address")
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


def _in_use(address: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"address {address} is in use: another server (or program) listens on it; stop it, "
        "or choose another --address (only the processes of one `serve --processes N` share "
        "an address)", "--address")


def check_free(config: ServerConfig) -> None:
    """FailedPrecondition naming the address when something already listens on it.

    A bind without SO_REUSEPORT (with SO_REUSEADDR, as gRPC binds) fails on an address any
    socket holds, with or without SO_REUSEPORT: so a server started on a taken address stops
    here, before it builds anything, even when it would bind with SO_REUSEPORT itself (the
    first process of ``--processes N``). Port 0 (any free port) is always free; an
    address this host cannot bind is left to the gRPC bind to report."""
    host, _, port = config.address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return
    try:
        candidates = socket.getaddrinfo(host.strip("[]") or None, int(port),
                                        type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return
    for family, kind, proto, _, where in candidates:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise _in_use(config.address) from None


def _bind(server: grpc.aio.Server, config: ServerConfig) -> int:
    try:
        if not config.tls_cert:
            return server.add_insecure_port(config.address)
        credentials = grpc.ssl_server_credentials(
            [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
            root_certificates=config.client_ca.read_bytes() if config.client_ca else None,
            require_client_auth=config.client_ca is not None)
        return server.add_secure_port(config.address, credentials)
    except RuntimeError:        # grpc: "Failed to bind to address ..."
        raise _in_use(config.address) from None


def _grpc_server(share_address: bool = False) -> grpc.aio.Server:
    """The gRPC server; ``share_address``: the processes of one ``serve --processes N``
    listen on its address together (SO_REUSEPORT), no other server."""
    return grpc.aio.server(interceptors=[UndecodableRequests()], options=[
        ("grpc.max_receive_message_length", MESSAGE_LIMIT),
        ("grpc.max_send_message_length", MESSAGE_LIMIT),
        ("grpc.so_reuseport", 1 if share_address else 0),
    ])


class _Grace:
    """The grace the gRPC server stops with: none (at once) when a start fails
    half-way, the caller's on :meth:`Running.stop`."""

    seconds: float | None = None


def _closing(stack: contextlib.AsyncExitStack, part):
    """``part``, its ``close()`` put on the stack."""
    stack.callback(part.close)
    return part


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _background(stack: contextlib.AsyncExitStack, coro) -> asyncio.Task:
    """Run ``coro`` as a task that the stack cancels."""
    task = asyncio.create_task(coro)
    stack.push_async_callback(_cancel, task)
    return task


@dataclass
class Running:
    """A started server: the parts the callers and the tests look at, and the one stack
    that closes them all."""

    server: grpc.aio.Server
    port: int
    address: str
    dispatcher: Dispatcher
    catalog: Catalog
    store: ImageStore
    guard: Guard
    runner: JobRunner
    metrics: Metrics
    billing: BillingService
    #: The standard gRPC health service's servicer.
    health: object
    #: The DicomService's servicer.
    dicom_servicer: object
    #: The port of the Prometheus endpoint; 0 when it is off.
    metrics_port: int = 0
    dicom: DicomNode | None = None
    #: The HTTP door (DICOMweb, the console); None when it is off.
    http: HttpListener | None = None
    #: The catalog file's one Database (connection) that every store of the server holds.
    db: Database | None = None
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack,
                                              repr=False)
    _grace: _Grace = field(default_factory=_Grace, repr=False)

    @property
    def http_port(self) -> int:
        """The HTTP port; 0 when it is off."""
        return self.http.port if self.http is not None else 0

    @property
    def dicom_port(self) -> int:
        """The DICOM port; 0 when it is off."""
        return self.dicom.port if self.dicom is not None else 0

    async def stop(self, grace: float | None = 5.0) -> None:
        """Close every part, in the reverse order of :func:`start`; the gRPC server lets
        the calls in progress end within ``grace`` seconds. A second stop does nothing."""
        self._grace.seconds = grace
        await self._stack.aclose()


async def start(config: ServerConfig) -> Running:
    """Start everything; return once the server accepts calls.

    Each part registers its close on one exit stack as soon as it is built: when a part
    fails to start, those built before it close in reverse order and the error is
    raised (a taken ``--dicom-port`` leaves the gRPC port closed again)."""
    install_log_redaction()      # first: no patient data in this process's or a worker's log
    check_address(config)
    if not config.joins_group:
        check_free(config)
    try:
        tariff = load_tariff(config.tariff)
    except TariffError as exc:
        raise FailedPrecondition(str(exc), "--tariff") from None
    config.data_dir.mkdir(parents=True, exist_ok=True)
    grace = _Grace()
    async with contextlib.AsyncExitStack() as stack:
        # THE catalog of this process: every store below holds this one Database (one
        # connection or pool, one group commit across all their tables).
        db = _closing(stack, Database.open(config.catalog or None, config.data_dir,
                                           timeout=config.catalog_timeout))
        catalog = _closing(stack, Catalog(db, runner=uuid.uuid4().hex,
                                          lease_seconds=config.job_lease_seconds))
        spool = Spool(config.data_dir, config.spool_name)
        spool.clear()
        dispatcher = Dispatcher(config)
        stack.push_async_callback(dispatcher.close)
        space = FreeSpaceReserve.from_config(config)
        store = _closing(stack, ImageStore(config, dispatcher.call, space, db=db,
                                           workers=dispatcher.cpu_workers))
        metrics = Metrics()
        stack.callback(metrics.stop)            # and its HTTP endpoint, once started
        metrics.set_storage_source(space.status)
        metrics.set_catalog(db.kind, db.backend.stats)
        db.backend.latency = metrics.catalog_call
        metrics.set_reads_source(lambda: dict(store.tiers.reads))
        billing = _closing(stack, BillingService(db, tariff))
        if config.sweep_store:
            await store.open()
        await dispatcher.start()
        service = ProcessingService(config, catalog, dispatcher, spool, store, metrics=metrics,
                                    space=space, job_audit=job_audit)
        keys = _closing(stack, KeyStore(db))
        audit = _closing(stack, AuditLog(db))
        guard = Guard(config, keys, audit)
        stack.push_async_callback(guard.close)  # the counted refusals' summaries written
        runner = JobRunner(config, service, catalog, keys, codec=ProtoJobCodec(),
                           audit=job_audit)
        stack.push_async_callback(runner.stop)  # after the gRPC server: built before it
        metrics.set_queue_depth_source(lambda: guard.counters.jobs + runner.active())
        nodes, rules, pushes, sources = (_closing(stack, book(db)) for book in
                                         (NodeRegistry, RuleBook, PushBook, SourceBook))
        software = _closing(stack, SoftwareRegistry(
            db, config.data_dir, dispatcher,
            Limits(config.software_memory_bytes, config.software_seconds)))
        await software.start()
        printing = _closing(stack, Printing(db, store, pushes, own_ae=config.dicom_ae_title))
        batch = BatchProcessing(service)
        # Rules an earlier version kept as RoutingRule messages, in today's form.
        await rules.upgrade(functools.partial(legacy_rule,
                                              max_image_bytes=config.max_image_bytes))
        server = _grpc_server(share_address=config.processes > 1 or config.joins_group)
        stack.push_async_callback(lambda: server.stop(grace.seconds))
        servicers = await add_servicers(server, Components(
            guard=guard, service=service, batch=batch,
            batch_submit=BatchSubmit(batch, runner),
            runner=runner, billing=billing, keys=keys, audit=audit, catalog=catalog,
            store=store, nodes=nodes, rules=rules, pushes=pushes, sources=sources,
            software=software, printing=printing))
        port = _bind(server, config)
        await runner.start()
        await server.start()
        dicom = None
        if config.dicom_port is not None:
            dicom = DicomNode(config, store, runner, db=db)
            await dicom.start()          # stops what it started if it cannot listen
            stack.push_async_callback(dicom.stop)
            servicers.dicom.node = dicom
        http = None
        if config.http_port is not None:
            if dicom is None:       # STOW-RS receives as the DICOM port does
                dicom = DicomNode(config, store, runner, db=db)
                await dicom.start(listen=False)
                stack.push_async_callback(dicom.stop)
                servicers.dicom.node = dicom
            http = http_door(config, store, keys, audit, ingress=dicom.ingress, runner=runner,
                             billing=billing, pushes=dicom.pushes)
            stack.push_async_callback(http.stop)
            await http.start()
        metrics_port = 0
        if config.metrics_port is not None:
            metrics_port = metrics.start_http(config.metrics_address, config.metrics_port)
        _background(stack, watch_health(dispatcher, servicers.publish(), WORKER_SERVICES,
                                        metrics, space, db=db,
                                        gpu_states=lambda: dispatcher.gpu_kernels()))
        _background(stack, maintain(store, config.purge_interval))
        _background(stack, sweep_every(service.regions))
        address = f"{_host(config.address)}:{port}"
        running = Running(server, port, address, dispatcher, catalog, store, guard, runner,
                          metrics, billing, servicers.health, servicers.dicom,
                          metrics_port=metrics_port, dicom=dicom, http=http, db=db,
                          _stack=stack.pop_all(), _grace=grace)
    log.info("medcompute serving on %s (data in %s, catalog %s)", address, config.data_dir,
             db.describe())
    return running


async def serve(config: ServerConfig, ready=None) -> int:
    """Run until SIGINT or SIGTERM, then stop gracefully; return the port it served on.
    With ``config.processes`` > 1, start the other server processes on the same address
    once this one serves. ``ready``: an event set once serving (an extra process),
    instead of the printed line."""
    from medcompute.server.dispatch.allocator import keep_large_buffers

    keep_large_buffers()          # this process; the embedded workers: cluster.py
    async with contextlib.AsyncExitStack() as stack:
        running = await start(config)
        stack.push_async_callback(running.stop, config.grace)
        extra = FrontEnds(config, running.address, running.dispatcher.scheduler_address,
                          serve)
        stack.push_async_callback(extra.stop)
        await extra.start()
        metrics = (f", Prometheus metrics on http://{config.metrics_address}:"
                   f"{running.metrics_port}/metrics" if running.metrics_port else "")
        dicom = (f", DICOM AE {config.dicom_ae_title} on {config.dicom_address}:"
                 f"{running.dicom_port}"
                 f"{' (TLS)' if running.dicom.tls is not None else ''}"
                 if running.dicom is not None and running.dicom_port else "")
        web = (f", DICOMweb on http{'s' if running.http.tls else ''}://"
               f"{config.http_address}:{running.http_port}/dicomweb"
               if running.http is not None else "")
        processes = f", {config.processes} server processes" if config.processes > 1 else ""
        if ready is not None:
            ready.set()
        else:
            print(f"medcompute serving on {running.address} (data directory "
                  f"{config.data_dir}, Dask scheduler {running.dispatcher.scheduler_address}"
                  f"{metrics}{dicom}{web}{processes}); Ctrl-C stops", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return running.port

"""The DICOM node of one server: the registry, the ingress, the routing and the storage SCP
together."""

from __future__ import annotations

import asyncio
import logging

from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.access import Access, Retrievals, unusable
from medcompute.server.dicomnet.collect import Collector, SourceBook
from medcompute.server.dicomnet.commit import Commitments
from medcompute.server.dicomnet.ingress import Ingress
from medcompute.server.dicomnet.listener import Limits
from medcompute.server.dicomnet.push import PushBook
from medcompute.server.dicomnet.pusher import Pusher
from medcompute.server.dicomnet.qr import StoreIndex
from medcompute.server.dicomnet.registry import NodeRegistry, check_ae_title
from medcompute.server.dicomnet.routing import Router, RuleBook
from medcompute.server.dicomnet.scp import StorageSCP
from medcompute.server.dicomnet.tls import listener_context
from medcompute.server.errors import FailedPrecondition, InvalidArgument
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.db import Database
from medcompute.server.store.images import ImageStore

__all__ = ["DicomNode", "limits_of", "MIN_PDU", "MAX_PDU"]

log = logging.getLogger(__name__)

#: The range of --dicom-max-pdu.
MIN_PDU, MAX_PDU = 4 << 10, 1 << 30


def limits_of(config: ServerConfig) -> Limits:
    """The DICOM port's listener limits of ``config``, checked (FailedPrecondition naming
    the option)."""
    if not 0 < config.dicom_pending_timeout <= 3600:
        raise FailedPrecondition("expected seconds above 0, at most 3600, got "
                                 f"{config.dicom_pending_timeout:g}", "--dicom-pending-timeout")
    if not MIN_PDU <= config.dicom_max_pdu <= MAX_PDU:
        raise FailedPrecondition(f"expected {MIN_PDU} bytes (4KiB) to {MAX_PDU} bytes (1GiB), "
                                 f"got {config.dicom_max_pdu}", "--dicom-max-pdu")
    if config.dicom_max_per_host < 1:
        raise FailedPrecondition(f"expected at least 1, got {config.dicom_max_per_host}",
                                 "--dicom-max-per-host")
    return Limits(config.dicom_pending_timeout, config.dicom_max_pdu, config.dicom_max_per_host)


class DicomNode:
    def __init__(self, config: ServerConfig, store: ImageStore, runner,
                 db: Database | None = None):
        """``db``: the server's shared catalog Database, which its books use; without
        one they open their own on ``config.data_dir``."""
        try:
            title = check_ae_title(config.dicom_ae_title, "--ae-title")
        except InvalidArgument as exc:
            raise FailedPrecondition(exc.message, exc.field) from None
        try:
            aliases = tuple(check_ae_title(a, "--dicom-ae-alias")
                            for a in config.dicom_ae_aliases)
        except InvalidArgument as exc:
            raise FailedPrecondition(exc.message, exc.field) from None
        if config.dicom_max_associations < 1:
            raise FailedPrecondition("expected at least 1", "--max-associations")
        limits = limits_of(config)
        #: DICOM TLS on the port (``serve --dicom-tls-cert/--dicom-tls-key``); None: off.
        self.tls = None
        if config.dicom_tls_cert or config.dicom_tls_key or config.dicom_tls_ca:
            self.tls = listener_context(config.dicom_tls_cert, config.dicom_tls_key,
                                        config.dicom_tls_ca)
        self.config = config
        tables = db if db is not None else Database(config.data_dir)
        self._own_db = None if db is not None else tables
        self.registry = NodeRegistry(tables)
        self.ingress = Ingress(store, self.registry, quiet=config.dicom_quiet_seconds,
                               on_release=config.dicom_complete_on_release)
        self.rules = RuleBook(tables)
        self.pushes = PushBook(tables)
        self.commitments = Commitments()
        self.pusher = Pusher(self.pushes, runner, own_ae=title,
                             max_attempts=config.dicom_push_attempts,
                             backoff=config.dicom_push_backoff,
                             commitments=self.commitments,
                             commit_timeout=config.dicom_commit_timeout,
                             associations=config.dicom_push_associations)
        self.audit = AuditLog(tables)
        self.router = Router(self.rules, store, runner, self.registry, self.pushes,
                             audit=self.audit)
        self.ingress.on_series.append(self.router.route)
        self.sources = SourceBook(tables)
        retrievals = Retrievals()
        #: Who may call the DICOM port (the one place that decides).
        self.access = Access(self.registry, own_ae=title, aliases=aliases,
                             retrievals=retrievals, commitments=self.commitments)
        self.collector = Collector(self.sources, self.ingress, retrievals, own_ae=title)
        self.scp = StorageSCP(self.ingress, self.access, ae_title=title,
                              max_associations=config.dicom_max_associations,
                              max_instance_bytes=config.dicom_max_instance_bytes,
                              index=StoreIndex(store), pushes=self.pushes,
                              commitments=self.commitments,
                              limits=limits)
        self.port = 0
        #: Whether start was asked to listen on the DICOM port (stop then stops the SCP).
        self._listens = False

    async def start(self, *, listen: bool = True) -> None:
        """Start the node; ``listen``: also on its DICOM port (without: the ingress, the
        routing and the pushes only, for instances received by another door, STOW-RS)."""
        for ae in unusable(await self.registry.list_aes()):
            log.warning("dicom: the calling AE %r (subscriber %s) is registered from host %r, "
                        "which no caller matches: register it again with its address, "
                        "network or host name", ae.ae_title, ae.subscriber, ae.host)
        await self.collector.start()
        await self.router.recover()
        await self.pusher.start()
        await self.ingress.start()
        if not listen:
            return
        self._listens = True
        try:
            self.port = self.scp.start(self.config.dicom_address, self.config.dicom_port or 0,
                                       self.tls)
        except OSError as exc:
            await self.stop()
            raise FailedPrecondition(f"cannot listen on {self.config.dicom_address}:"
                                     f"{self.config.dicom_port}: {exc.strerror}",
                                     "--dicom-port") from None

    async def stop(self) -> None:
        # pynetdicom's shutdown blocks until its threads notice: not on the event loop.
        if self._listens:
            await asyncio.to_thread(self.scp.stop)
        await self.ingress.stop()
        await self.pusher.stop()
        await self.collector.stop()
        self.registry.close()
        self.rules.close()
        self.pushes.close()
        self.sources.close()
        self.audit.close()
        if self._own_db is not None:
            self._own_db.close()

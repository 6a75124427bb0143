"""Which servicer serves which gRPC service: the one table of the server's services.

:func:`add_servicers` puts a servicer for every medcompute service on a gRPC server,
over the domain components that app.py built (:class:`Components`), and adds the
standard health service and server reflection. It builds only servicers: the
components are created, and closed, by app.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from grpc_health.v1 import health

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
    print_pb2,
    print_pb2_grpc,
    processing_pb2,
    processing_pb2_grpc,
    software_pb2,
    software_pb2_grpc,
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
from medcompute.server.api.dicom import DicomServicer
from medcompute.server.api.guard import Guard
from medcompute.server.api.health import SERVICE_NAME as HEALTH_SERVICE_NAME
from medcompute.server.api.health import add_health, publisher
from medcompute.server.api.jobs import JobsServicer
from medcompute.server.api.printing import PrintServicer
from medcompute.server.api.processing import ProcessingServicer
from medcompute.server.api.software import SoftwareServicer
from medcompute.server.api.store import StoreServicer
from medcompute.server.api.studies import StudyServicer
from medcompute.server.api.tiers import TierServicer

__all__ = ["ADMINISTRATION_SERVICES", "Components", "Servicers", "SERVICE_NAME",
           "WORKER_SERVICES", "add_servicers"]

SERVICE_NAME = processing_pb2.DESCRIPTOR.services_by_name["ProcessingService"].full_name
STORE_SERVICE_NAME = store_pb2.DESCRIPTOR.services_by_name["StoreService"].full_name
ADMIN_SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
JOBS_SERVICE_NAME = jobs_pb2.DESCRIPTOR.services_by_name["JobsService"].full_name
DICOM_SERVICE_NAME = dicom_pb2.DESCRIPTOR.services_by_name["DicomService"].full_name
CAPACITY_SERVICE_NAME = capacity_pb2.DESCRIPTOR.services_by_name["CapacityService"].full_name
TIER_SERVICE_NAME = tiers_pb2.DESCRIPTOR.services_by_name["TierService"].full_name
STUDY_SERVICE_NAME = studies_pb2.DESCRIPTOR.services_by_name["StudyService"].full_name
SOFTWARE_SERVICE_NAME = software_pb2.DESCRIPTOR.services_by_name["SoftwareService"].full_name
PRINT_SERVICE_NAME = print_pb2.DESCRIPTOR.services_by_name["PrintService"].full_name
BATCH_SERVICE_NAME = batch_pb2.DESCRIPTOR.services_by_name["BatchService"].full_name
#: The services whose health follows the Dask workers (none: NOT_SERVING), and the
#: server as a whole (""). The administration services (AdminService, DicomService,
#: CapacityService, TierService, StudyService, SoftwareService, PrintService) need no
#: worker: they are SERVING while the server runs.
ADMINISTRATION_SERVICES = (ADMIN_SERVICE_NAME, DICOM_SERVICE_NAME, CAPACITY_SERVICE_NAME,
                           TIER_SERVICE_NAME, STUDY_SERVICE_NAME, SOFTWARE_SERVICE_NAME,
                           PRINT_SERVICE_NAME)
WORKER_SERVICES = ("", SERVICE_NAME, STORE_SERVICE_NAME, JOBS_SERVICE_NAME, BATCH_SERVICE_NAME)


@dataclass(frozen=True)
class Components:
    """The domain components the servicers serve (built and closed by app.py)."""

    guard: Guard
    #: jobs.process.ProcessingService
    service: object
    #: jobs.batch.BatchProcessing and jobs.batch_submit.BatchSubmit
    batch: object
    batch_submit: object
    #: jobs.runner.JobRunner
    runner: object
    #: billing.service.BillingService
    billing: object
    #: storage.keys.KeyStore, storage.audit.AuditLog, jobs.catalog.Catalog
    keys: object
    audit: object
    catalog: object
    #: store.images.ImageStore
    store: object
    #: dicomnet's NodeRegistry, RuleBook, PushBook and SourceBook
    nodes: object
    rules: object
    pushes: object
    sources: object
    #: software.registry.SoftwareRegistry
    software: object = None
    #: dicomnet.printing.Printing
    printing: object = None


@dataclass(frozen=True)
class Servicers:
    """What app.py still needs of the servicers once they are registered."""

    #: Its ``node`` is set once the DICOM node listens.
    dicom: DicomServicer
    health: health.aio.HealthServicer

    def publish(self):
        """``publish(name, serving)`` onto the health service (monitoring/health.py)."""
        return publisher(self.health)


async def add_servicers(server, parts: Components) -> Servicers:
    """Serve every medcompute service on ``server`` (not started yet), the health service
    (the administration services SERVING, the others unknown until the health watch sets
    them) and reflection of them all."""
    guard = parts.guard
    processing_pb2_grpc.add_ProcessingServiceServicer_to_server(
        ProcessingServicer(parts.service, guard), server)
    batch_pb2_grpc.add_BatchServiceServicer_to_server(
        BatchServicer(parts.batch, guard, parts.batch_submit), server)
    jobs_pb2_grpc.add_JobsServiceServicer_to_server(
        JobsServicer(parts.runner, guard, parts.billing), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(guard, parts.keys, parts.audit, parts.catalog), server)
    store_pb2_grpc.add_StoreServiceServicer_to_server(
        StoreServicer(parts.store, guard, parts.service.regions), server)
    dicom = DicomServicer(guard, parts.nodes, parts.rules, parts.pushes, parts.sources)
    dicom_pb2_grpc.add_DicomServiceServicer_to_server(dicom, server)
    capacity_pb2_grpc.add_CapacityServiceServicer_to_server(
        CapacityServicer(parts.store.catalog, guard), server)
    tiers_pb2_grpc.add_TierServiceServicer_to_server(TierServicer(parts.store, guard), server)
    studies_pb2_grpc.add_StudyServiceServicer_to_server(StudyServicer(parts.store, guard),
                                                        server)
    software_pb2_grpc.add_SoftwareServiceServicer_to_server(
        SoftwareServicer(parts.software, guard), server)
    print_pb2_grpc.add_PrintServiceServicer_to_server(PrintServicer(parts.printing, guard),
                                                      server)
    health_servicer = add_health(server)
    publish = publisher(health_servicer)
    for name in ADMINISTRATION_SERVICES:
        await publish(name, True)
    reflection.enable((SERVICE_NAME, STORE_SERVICE_NAME, JOBS_SERVICE_NAME, BATCH_SERVICE_NAME,
                       *ADMINISTRATION_SERVICES, HEALTH_SERVICE_NAME), server)
    return Servicers(dicom, health_servicer)

"""The Software servicer: translation only. The registry of processing packages."""

from __future__ import annotations

from medcompute.proto.v1 import software_pb2, software_pb2_grpc
from medcompute.server.api.guard import Guard, rpc
from medcompute.server.storage.software import PackageRow

__all__ = ["SoftwareServicer", "package_message"]


def package_message(row: PackageRow) -> software_pb2.PackageInfo:
    return software_pb2.PackageInfo(
        name=row.name, version=row.version, sha256=row.sha256, vendor=row.vendor,
        licence=row.licence, fee_per_use=row.fee_per_use, status=row.status,
        publisher=row.publisher, size=row.size, filename=row.filename, added_at=row.added_at,
        operations=[software_pb2.PackageOperation(
            name=o["name"], summary=o["summary"], doc=o["doc"],
            parameters=[software_pb2.PackageParameter(**p) for p in o["parameters"]])
            for o in row.operations])


class SoftwareServicer(software_pb2_grpc.SoftwareServiceServicer):
    def __init__(self, registry, guard: Guard):
        self.registry = registry          # software.registry.SoftwareRegistry
        self.guard = guard

    @rpc("software.add", "publisher")
    async def AddPackage(self, request, context, call):
        row = await self.registry.add(call.principal, request.filename, request.wheel,
                                      vendor=request.vendor, licence=request.licence,
                                      fee_per_use=request.fee_per_use)
        call.object_id = f"{row.name}=={row.version}"
        call.detail = row.sha256
        return software_pb2.AddPackageResponse(package=package_message(row))

    @rpc("software.list", None, audit=False)
    async def ListPackages(self, request, context, call):
        rows = await self.registry.list(call.principal, request.name)
        return software_pb2.ListPackagesResponse(packages=[package_message(r) for r in rows])

    @rpc("software.info", None, audit=False)
    async def GetPackageInfo(self, request, context, call):
        row = await self.registry.info(call.principal, request.name, request.version)
        return software_pb2.GetPackageInfoResponse(package=package_message(row))

    @rpc("software.approve", "admin")
    async def ApprovePackage(self, request, context, call):
        call.object_id = f"{request.name}=={request.version}"
        row = await self.registry.approve(request.name, request.version)
        return software_pb2.ApprovePackageResponse(package=package_message(row))

    @rpc("software.retire", "admin")
    async def RetirePackage(self, request, context, call):
        call.object_id = f"{request.name}=={request.version}"
        row = await self.registry.retire(request.name, request.version)
        return software_pb2.RetirePackageResponse(package=package_message(row))

    @rpc("software.grant", ("publisher", "admin"))
    async def GrantPackage(self, request, context, call):
        call.object_id, call.detail = request.name, f"to {request.subscriber}"
        await self.registry.grant(call.principal, request.name, request.subscriber)
        return software_pb2.GrantPackageResponse()

    @rpc("software.download", None)
    async def DownloadPackage(self, request, context, call):
        call.object_id = f"{request.name}=={request.version}"
        row, data = await self.registry.download(call.principal, request.name, request.version)
        return software_pb2.DownloadPackageResponse(package=package_message(row), wheel=data)

    @rpc("software.uses", ("publisher", "admin"), audit=False)
    async def PackageUses(self, request, context, call):
        rows = await self.registry.uses(call.principal)
        return software_pb2.PackageUsesResponse(packages=[
            software_pb2.PackageUse(name=n, version=v, uses=u, downloads=d, fees=f)
            for n, v, u, d, f in rows])

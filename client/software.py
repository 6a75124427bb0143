"""The SoftwareService of a medcompute server (also ``Client.software``): register,
approve, retire, grant and download processing packages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc

from medcompute.client.calls import DEFAULT_SERVER, ServiceError, call
from medcompute.client.channel import open_channel
from medcompute.proto.v1 import software_pb2, software_pb2_grpc

__all__ = ["SoftwareClient", "split_spec"]


def split_spec(text: str) -> tuple[str, str]:
    """``NAME==VERSION`` (or ``NAME``) as (name, version); ValueError otherwise."""
    name, sep, version = text.partition("==")
    if not name.strip() or (sep and not version.strip()):
        raise ValueError(f"expected NAME==VERSION, got {text!r}")
    return name.strip(), version.strip()


class SoftwareClient:
    """Parameters as for ``StoreClient``: an address or a shared ``channel``."""

    def __init__(self, address: str = DEFAULT_SERVER, *, timeout: float = 600.0,
                 channel: grpc.Channel | None = None, **connection):
        self.timeout = timeout
        self._own = channel is None
        self._channel = channel or open_channel(address, **connection)
        self._stub = software_pb2_grpc.SoftwareServiceStub(self._channel)

    def close(self) -> None:
        if self._own:
            self._channel.close()

    def __enter__(self) -> SoftwareClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _do(self, method, request):
        return call(method, request, timeout=self.timeout)

    def add(self, wheel: str | Path, *, vendor: str, licence: str = "",
            fee_per_use: float = 0.0):
        """Register a wheel (publisher role); its PackageInfo, pending approval."""
        path = Path(wheel)
        return self._do(self._stub.AddPackage, software_pb2.AddPackageRequest(
            filename=path.name, wheel=path.read_bytes(), vendor=vendor, licence=licence,
            fee_per_use=fee_per_use)).package

    def list(self, name: str = ""):
        return list(self._do(self._stub.ListPackages,
                             software_pb2.ListPackagesRequest(name=name)).packages)

    def info(self, name: str, version: str = ""):
        return self._do(self._stub.GetPackageInfo, software_pb2.GetPackageInfoRequest(
            name=name, version=version)).package

    def approve(self, name: str, version: str):
        return self._do(self._stub.ApprovePackage, software_pb2.ApprovePackageRequest(
            name=name, version=version)).package

    def retire(self, name: str, version: str):
        return self._do(self._stub.RetirePackage, software_pb2.RetirePackageRequest(
            name=name, version=version)).package

    def grant(self, name: str, subscriber: str) -> None:
        self._do(self._stub.GrantPackage, software_pb2.GrantPackageRequest(
            name=name, subscriber=subscriber))

    def download(self, name: str, version: str, folder: str | Path) -> Path:
        """Write the wheel into ``folder`` under its file name, once its SHA-256 matches
        the registered one; its path."""
        reply = self._do(self._stub.DownloadPackage, software_pb2.DownloadPackageRequest(
            name=name, version=version))
        digest = hashlib.sha256(reply.wheel).hexdigest()
        if digest != reply.package.sha256:
            raise ServiceError(grpc.StatusCode.DATA_LOSS,
                               f"the wheel's SHA-256 {digest} is not the registered "
                               f"{reply.package.sha256}")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Path(reply.package.filename).name
        path.write_bytes(reply.wheel)
        return path

    def uses(self):
        return list(self._do(self._stub.PackageUses,
                             software_pb2.PackageUsesRequest()).packages)

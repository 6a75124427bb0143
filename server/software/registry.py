"""The software registry: add, list, show, approve, retire, grant, deliver, count.

A publisher adds a version of a package as a wheel; the registry reads its name and
version from the wheel's metadata, keeps the file under its SHA-256, loads it once in a
sandbox to read the operations it declares (entry point group ``medcompute.operations``)
and records it as pending. An administrator approves it (its plug-in is then installed
on every Dask worker and its operations run) or retires it (they no longer run, nor is
it delivered). Its publisher grants subscribers the right to download it.
"""

from __future__ import annotations

import asyncio
import email.parser
import hashlib
import io
import math
import re
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

from medcompute.server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    StorageFailure,
    shown_id,
)
from medcompute.server.software.catalog import APPROVED, Limits, version_key
from medcompute.server.storage import software as table
from medcompute.server.storage.db import Database
from medcompute.server.storage.keys import Principal, check_subscriber
from medcompute.server.storage.software import PackageRow, SoftwareBook
from medcompute.server.worker import packages

__all__ = ["MAX_WHEEL_BYTES", "SoftwareRegistry", "normalise", "wheel_metadata"]

#: A wheel travels in one message (a gRPC message carries at most 4 MiB).
MAX_WHEEL_BYTES = 3 << 20
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,62}[a-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}$")


def normalise(name: str) -> str:
    """A package name as PEP 503 compares them: lower case, runs of ``-_.`` as ``-``."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def wheel_metadata(data: bytes) -> tuple[str, str, str]:
    """(name, version, licence) from a wheel's ``*.dist-info/METADATA``; InvalidArgument
    naming ``wheel`` when it is not a wheel."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [n for n in z.namelist()
                     if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise InvalidArgument("expected a wheel with one *.dist-info/METADATA, found "
                                      f"{len(names)}", "wheel")
            meta = email.parser.Parser().parsestr(z.read(names[0]).decode("utf-8", "replace"))
    except zipfile.BadZipFile:
        raise InvalidArgument("expected a wheel (a zip file); this is not one", "wheel") from None
    name, version = normalise(meta.get("Name", "")), (meta.get("Version") or "").strip()
    if not _NAME.match(name):
        raise InvalidArgument(f"the wheel's metadata names the package {shown_id(name)}; "
                              "expected letters, digits, '.', '-' or '_'", "wheel")
    if not _VERSION.match(version):
        raise InvalidArgument(f"the wheel's metadata gives the version {shown_id(version)}",
                              "wheel")
    return name, version, (meta.get("License") or "").strip()


def _fee(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"expected a fee >= 0, got {value:g}", "fee_per_use")
    return float(value)


def _text(value: str, field: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidArgument("required", field)
    if len(value) > 200:
        raise InvalidArgument(f"at most 200 characters, got {len(value)}", field)
    return value


class SoftwareRegistry:
    """The registry's operations, for the servicer and the resolver (catalog.APPROVED)."""

    def __init__(self, db: Database, data_dir: str | Path, dispatcher=None,
                 limits: Limits | None = None):
        self.book = SoftwareBook(db)
        self.db = db
        self.data_dir = Path(data_dir)
        self.dispatcher = dispatcher            # installs the approved versions' plug-ins
        self.limits = limits = limits or Limits()
        self._binding = APPROVED.bind(lambda name: db.run(table.versions, name),
                                      lambda sha: str(table.wheel_path(self.data_dir, sha)),
                                      limits)

    def close(self) -> None:
        APPROVED.unbind(self._binding)
        self.book.close()

    async def start(self) -> None:
        """Install every approved version on the workers (a restarted server's too)."""
        for row in await self.db.read(table.versions, ""):
            if row.status == "approved":
                await self._install(row)

    async def _install(self, row: PackageRow) -> None:
        if self.dispatcher is None:
            return
        data = await asyncio.to_thread(table.wheel_path(self.data_dir, row.sha256).read_bytes)
        plugin = packages.software_plugin(row.name, row.version, row.sha256, row.filename,
                                          data)
        await self.dispatcher.install_plugin(plugin, packages.plugin_name(row.name, row.version))

    # -- publishing ------------------------------------------------------------------

    async def add(self, principal: Principal, filename: str, wheel: bytes, *, vendor: str,
                  licence: str, fee_per_use: float) -> PackageRow:
        if len(wheel) > MAX_WHEEL_BYTES:
            raise ResourceExhausted(f"the wheel has {len(wheel)} bytes; at most "
                                    f"{MAX_WHEEL_BYTES} are accepted", "wheel")
        if not wheel:
            raise InvalidArgument("required: the wheel's bytes", "wheel")
        filename = Path(filename or "").name
        if not filename.endswith(".whl") or filename.count("-") < 4:
            raise InvalidArgument("expected a wheel's file name, NAME-VERSION-PY-ABI-"
                                  "PLATFORM.whl", "filename")
        vendor = _text(vendor, "vendor")
        name, version, declared = wheel_metadata(wheel)
        licence = _text(licence or declared, "licence")
        fee = _fee(fee_per_use)
        if normalise(filename.split("-")[0]) != name:
            raise InvalidArgument(f"the file name does not name the package {name!r} the "
                                  "wheel's metadata names", "filename")
        sha = hashlib.sha256(wheel).hexdigest()
        if await self.db.read(table.get, name, version) is not None:
            raise AlreadyExists(f"{name} {version} is registered; a new wheel needs a new "
                                "version", "wheel")
        operations = await asyncio.to_thread(self._describe, filename, wheel)
        if not operations:
            raise InvalidArgument(f"the wheel declares no operations: expected entry points "
                                  f"in the group {packages.GROUP!r}", "wheel")
        await asyncio.to_thread(table.write_wheel, self.data_dir, sha, wheel)
        row = PackageRow(name, version, sha, filename, len(wheel), vendor, licence, fee,
                         principal.subscriber, "pending", operations, time.time())
        try:
            await self.db.write(table.insert, row)
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise AlreadyExists(f"{name} {version} is registered", "wheel") from None
            raise
        APPROVED.forget(name)
        return row

    def _describe(self, filename: str, wheel: bytes) -> list[dict]:
        with tempfile.TemporaryDirectory(prefix="medcompute-wheel-") as tmp:
            path = Path(tmp) / filename
            path.write_bytes(wheel)
            try:
                folder = packages.install(path, Path(tmp) / "installed")
            except FailedPrecondition as exc:
                raise InvalidArgument(exc.message, "wheel") from None
            try:
                return packages.describe(folder, memory_bytes=self.limits.memory_bytes,
                                         seconds=self.limits.seconds)
            except FailedPrecondition as exc:
                raise InvalidArgument(exc.message, "wheel") from None

    # -- reading ---------------------------------------------------------------------

    @staticmethod
    def _sees(principal: Principal, row: PackageRow) -> bool:
        return ("admin" in principal.roles or row.publisher == principal.subscriber
                or row.status == "approved")

    async def list(self, principal: Principal, name: str = "") -> list[PackageRow]:
        rows = await self.db.read(table.versions, normalise(name) if name else "")
        return [r for r in rows if self._sees(principal, r)]

    async def info(self, principal: Principal, name: str, version: str = "") -> PackageRow:
        rows = await self.list(principal, _text(name, "name"))
        if version:
            rows = [r for r in rows if r.version == version]
        if not rows:
            what = f"version {shown_id(version)} of " if version else ""
            raise NotFound(f"no {what}package {shown_id(name)} you may see",
                           "version" if version else "name")
        return max(rows, key=lambda r: version_key(r.version))

    async def _get(self, name: str, version: str) -> PackageRow:
        name, version = normalise(_text(name, "name")), _text(version, "version")
        row = await self.db.read(table.get, name, version)
        if row is None:
            raise NotFound(f"no version {shown_id(version)} of package {shown_id(name)}",
                           "version")
        return row

    # -- administration --------------------------------------------------------------

    async def approve(self, name: str, version: str) -> PackageRow:
        row = await self._get(name, version)
        if row.status == "retired":
            raise FailedPrecondition(f"{row.name} {row.version} is retired; register a new "
                                     "version instead", "version")
        if row.status != "approved":
            await self._install(row)           # on every worker, before it may run
            await self.db.write(table.set_status, row.name, row.version, "approved",
                                time.time())
        APPROVED.forget(row.name)
        return replace(row, status="approved")

    async def retire(self, name: str, version: str) -> PackageRow:
        row = await self._get(name, version)
        await self.db.write(table.set_status, row.name, row.version, "retired", time.time())
        APPROVED.forget(row.name)
        return replace(row, status="retired")

    # -- delivery --------------------------------------------------------------------

    async def grant(self, principal: Principal, name: str, subscriber: str) -> None:
        name = normalise(_text(name, "name"))
        check_subscriber(subscriber)
        rows = await self.db.read(table.versions, name)
        mine = [r for r in rows if r.publisher == principal.subscriber]
        if not mine and "admin" not in principal.roles:
            if not [r for r in rows if self._sees(principal, r)]:
                raise NotFound(f"no package {shown_id(name)} you may see", "name")
            raise PermissionDenied(f"only the publisher of {shown_id(name)} grants it")
        if not rows:
            raise NotFound(f"no package {shown_id(name)}", "name")
        await self.db.write(table.grant, name, subscriber, time.time())

    async def download(self, principal: Principal, name: str, version: str
                       ) -> tuple[PackageRow, bytes]:
        row = await self._get(name, version)
        own = row.publisher == principal.subscriber or "admin" in principal.roles
        entitled = own or await self.db.read(table.granted, row.name, principal.subscriber)
        if not entitled and not self._sees(principal, row):
            raise NotFound(f"no version {shown_id(version)} of package {shown_id(name)}",
                           "version")
        if row.status != "approved":
            raise FailedPrecondition(f"{row.name} {row.version} is {row.status}; only "
                                     "approved versions are delivered", "version")
        if not entitled:
            raise PermissionDenied(f"{row.name} is not granted to this subscriber; its "
                                   "publisher grants it (`medcompute software grant`)")
        data = await asyncio.to_thread(table.wheel_path(self.data_dir, row.sha256).read_bytes)
        if hashlib.sha256(data).hexdigest() != row.sha256:
            raise StorageFailure(f"the stored wheel of {row.name} {row.version} does not match "
                                 "its SHA-256")
        await self.db.write(table.add_event, row.name, row.version, principal.subscriber,
                            "download", 0.0, time.time())
        return row, data

    async def uses(self, principal: Principal) -> list[tuple]:
        """(name, version, uses, downloads, fees) of the caller's packages (all: admin)."""
        who = None if "admin" in principal.roles else principal.subscriber
        return await self.db.read(table.counts, who)

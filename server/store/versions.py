"""Stored versions of an image: the original, a lossless and lossy JPEG 2000 copies.

Domain code. The operator configures the versions (``ServerConfig.versions``): each
has a name, a purpose and, for a lossy one, a compression ratio. A version is asked
for by its name or its purpose (``original`` or nothing: the files as registered).
The first request for a version of an image makes it on a Dask worker
(``version_tasks.make_version``), once: the result is kept as one more blob of the
image (role ``version:<name>``) with what was measured (ratio, maximum error, PSNR,
resolution levels) in the blob's facts, and counted in the image's stored bytes. Later
requests are served from that blob. A version can be sent cut to a lower resolution
level: the image reduced by 2**level per axis, from only the bytes it needs (``j2k.reduced``).

Versions are DICOM files. An image registered as a raw array (or derived from one) gets
them too, made of its voxels: one multi-frame secondary-capture file, each slice a
frame (``version_tasks.raw_dataset``; 8- and 16-bit integer dtypes only, others are
refused with FailedPrecondition naming the dtype); processing takes versions of DICOM
images only. Processing always reads the stored voxels, decoded from the original
(lossless), unless the request names a version.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from medcompute.proto import wire
from medcompute.server.config import VersionSpec
from medcompute.server.dicom import j2k
from medcompute.server.errors import FailedPrecondition, InvalidArgument
from medcompute.server.storage.images import BlobRef, ImageRecord
from medcompute.server.store.blob_streams import file_chunks, prefetched
from medcompute.server.store.coding import DICOM, Coder, StreamInfo
from medcompute.server.worker.version_tasks import (
    LOSSLESS_SYNTAX,
    LOSSY_SYNTAX,
    RAW_DTYPES,
    at_level,
    make_raw_version,
    make_version,
)

__all__ = ["VersionSpec", "Version", "Versions", "parse_version",
           "versions_of", "ORIGINAL", "ROLE_PREFIX"]

log = logging.getLogger(__name__)

ORIGINAL = "original"
ROLE_PREFIX = "version:"


def parse_version(text: str) -> VersionSpec:
    """``NAME=RATIO[:PURPOSE]`` (a lossy version; the purpose defaults to the name) or
    ``NAME=lossless[:PURPOSE]``; ValueError naming what is wrong."""
    name, sep, rest = text.partition("=")
    value, _, purpose = rest.partition(":")
    name, value, purpose = name.strip(), value.strip(), purpose.strip() or name.strip()
    if not sep or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"expected NAME=RATIO[:PURPOSE] (e.g. review=10), got {text!r}")
    if name == ORIGINAL:
        raise ValueError("'original' names the files as registered; choose another name")
    if value == "lossless":
        return VersionSpec(name, purpose)
    try:
        ratio = float(value)
    except ValueError:
        raise ValueError(f"expected a compression ratio (a number > 1) or 'lossless', got "
                         f"{value!r}") from None
    if not 1.0 < ratio <= 1000.0:
        raise ValueError(f"a compression ratio is > 1 and at most 1000, got {ratio}")
    return VersionSpec(name, purpose, ratio)


@dataclass(frozen=True)
class Version:
    """A version that was made: its spec and what was measured."""

    name: str
    purpose: str
    lossless: bool
    transfer_syntax: str
    configured_ratio: float | None
    ratio: float                          # uncompressed / coded pixel bytes
    max_error: float
    psnr_db: float | None
    resolutions: int
    stored_bytes: int
    file_sizes: tuple[int, ...]
    crc32: int
    digest: str


def _version(blob: BlobRef) -> Version:
    f = json.loads(blob.info)
    return Version(f["name"], f["purpose"], f["lossless"], f["syntax"], f["configured_ratio"],
                   f["ratio"], f["max_error"], f["psnr_db"], f["resolutions"], blob.size,
                   tuple(f["file_sizes"]), f["crc32"], blob.digest)


def versions_of(record: ImageRecord) -> list[Version]:
    """The versions made of an image so far, by name."""
    return sorted((_version(b) for b in record.blobs if b.role.startswith(ROLE_PREFIX)),
                  key=lambda v: v.name)


class Versions:
    """The versions of one store's images (``store.versions``)."""

    def __init__(self, store, specs: tuple[VersionSpec, ...]):
        self.store = store
        self.specs = tuple(specs)
        self._making: dict[tuple[str, str], asyncio.Lock] = {}
        self._background: set[asyncio.Task] = set()

    def make_soon(self, record: ImageRecord) -> None:
        """Make every configured version of a newly registered image in the background
        (``--make-versions``); a version that cannot be made is logged and left to be
        made (or refused) on its first request."""
        if not self.specs or (record.blob("dicom") is None
                              and record.dtype not in RAW_DTYPES):
            return
        task = asyncio.get_running_loop().create_task(self._make_all(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _make_all(self, record: ImageRecord) -> None:
        for spec in self.specs:
            try:
                await self.get(record, spec)
            except Exception as exc:
                log.warning("versions: the %s version of a new image was not made (%s)",
                            spec.name, getattr(exc, "details", type(exc).__name__))

    async def wait_background(self) -> None:
        """Until the versions `make_soon` started are made (or given up)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def resolve(self, asked: str, field: str = "version") -> VersionSpec | None:
        """The spec named (by name, else by purpose); None for the original."""
        if not asked or asked == ORIGINAL:
            return None
        for spec in self.specs:
            if spec.name == asked:
                return spec
        for spec in self.specs:
            if spec.purpose == asked:
                return spec
        names = ", ".join([ORIGINAL] + [s.name for s in self.specs])
        purposes = ", ".join(sorted({s.purpose for s in self.specs}))
        raise InvalidArgument(f"expected a version ({names}) or a purpose ({purposes}); got "
                              f"{asked[:64]!r}", field)

    async def get(self, record: ImageRecord, spec: VersionSpec) -> Version:
        """The version of ``record``, made now (on a worker) unless it was made before."""
        role = ROLE_PREFIX + spec.name
        blob = record.blob(role)
        if blob is not None:
            return _version(blob)
        dicom = record.blob("dicom")
        source = dicom or record.blob("voxels")
        if dicom is None and record.dtype not in RAW_DTYPES:
            raise FailedPrecondition(
                f"versions of a raw array are made of 8- or 16-bit integers (uint8, int8, "
                f"uint16, int16); this image's dtype is {np.dtype(record.dtype).name}: ask "
                "for the original", "version")
        why = j2k.refusal(*record.shape[-2:]) if len(record.shape) >= 2 else None
        if why:                      # known from the catalog: no task for a worker
            raise FailedPrecondition(why, "version")
        key = (record.id, spec.name)
        lock = self._making.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                fresh = await self.store.get(record.id, owner=record.owner)
                if fresh.blob(role) is not None:
                    return _version(fresh.blob(role))
                self.store.space.check("blobs", "catalog", incoming=source.size)
                blob = await self._make(record, spec, dicom)
        finally:
            if not lock.locked():       # nobody else is waiting on it
                self._making.pop(key, None)
        return _version(blob)

    async def _make(self, record: ImageRecord, spec: VersionSpec, dicom: BlobRef | None
                    ) -> BlobRef:
        store = self.store
        tmp = store.blobs.new_tmp()
        try:
            if dicom is not None:
                made = await store.runner(make_version, str(store.blobs.path(dicom.digest)),
                                          record.file_sizes, str(tmp), name=spec.name,
                                          ratio=spec.ratio)
            else:
                voxels = record.blob("voxels")
                made = await store.runner(make_raw_version, str(store.blobs.path(voxels.digest)),
                                          str(tmp), name=spec.name, ratio=spec.ratio,
                                          uid_source=f"{record.id}:{voxels.digest}")
            info = json.dumps({
                "name": spec.name, "purpose": spec.purpose, "lossless": spec.lossless,
                "syntax": LOSSLESS_SYNTAX if spec.lossless else LOSSY_SYNTAX,
                "configured_ratio": spec.ratio, "ratio": made["ratio"],
                "max_error": made["max_error"], "psnr_db": made["psnr_db"],
                "resolutions": made["resolutions"], "file_sizes": made["file_sizes"],
                "crc32": made["crc32"]}, sort_keys=True)
            if "refused" in made:     # the worker's answer for this image (version_tasks)
                raise FailedPrecondition(made["refused"], made["field"])
            blob = BlobRef(ROLE_PREFIX + spec.name, made["digest"], made["size"], info)
            await store.catalog.add_blob(record.id, blob,
                                         lambda: store.blobs.install(tmp, made["digest"]),
                                         field="version")
            return blob
        finally:
            tmp.unlink(missing_ok=True)

    async def fetch(self, record: ImageRecord, spec: VersionSpec, level: int, coder: Coder
                    ) -> tuple[Version, StreamInfo, AsyncIterator[bytes]]:
        """What Get sends of a version: the version (made now if it was not), a
        description of the stream and its chunk payloads."""
        version = await self.get(record, spec)
        sizes, size, crc, payloads = await self.stream(version, level, coder)
        return version, StreamInfo(DICOM, size, crc, coder.compression, sizes), payloads

    async def stream(self, version: Version, level: int, coder: Coder
                     ) -> tuple[tuple[int, ...], int, int, AsyncIterator[bytes]]:
        """The version's files (cut to resolution ``level``): (file sizes, size, crc32,
        chunk payloads)."""

        if level >= max(version.resolutions, 1):
            raise InvalidArgument(f"this version has resolution levels 0 to "
                                  f"{version.resolutions - 1}; got {level}", "resolution_level")
        path = self.store.present(BlobRef(ROLE_PREFIX + version.name, version.digest,
                                           version.stored_bytes))
        if level == 0:
            return (version.file_sizes, version.stored_bytes, version.crc32,
                    prefetched(file_chunks(path, coder, version.file_sizes)))

        def cut() -> list[bytes]:
            data, at, files = path.read_bytes(), 0, []
            for n in version.file_sizes:
                files.append(data[at:at + n])
                at += n
            return at_level(files, level, name=version.name)
        files = await asyncio.to_thread(cut)
        blob = b"".join(files)

        async def payloads():
            for payload in coder.chunks(blob):
                yield payload
        return tuple(len(f) for f in files), len(blob), wire.crc32(blob), payloads()


"""The image store: register images once, then find, fetch, preview and delete them by id.

Domain code. An image is a catalog row (``image_catalog``) and content-addressed
blobs (``blobs``): the voxels, losslessly compressed; the original DICOM files as
they arrived (or a derived image's DICOM series); a cached preview. A call is
acknowledged only after its blobs are synced and renamed into place and its row is
committed. DICOM files are checked first by the instance validator every door shares
(``dicom.instance``: UIDs, geometry, pixel data), so what it refuses is never stored.
Pixel work (decoding DICOM, rendering previews, keeping processing results) runs on
Dask workers, which read and write the blob files themselves.

Every image belongs to the subscriber that registered it; an id owned by another
subscriber is answered like an unknown id (NotFound). Patient ids and UIDs are kept
in the catalog and never written to logs or error messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from medcompute.proto import wire
from medcompute.server.config import ServerConfig
from medcompute.server.dicom.meta import check_uid, normalise_date
from medcompute.server.errors import (
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    shown_id,
)
from medcompute.server.storage.blobs import BlobWriter, TieredBlobStore, VoxelWriter
from medcompute.server.storage.db import Database
from medcompute.server.storage.fetches import FetchLog, examination_of
from medcompute.server.storage.images import (
    PAGE_MAX,
    BlobRef,
    FindFilter,
    ImageCatalog,
    ImageRecord,
    decode_token,
)
from medcompute.server.storage.space import FreeSpaceReserve
from medcompute.server.storage.spool import ExpectedImage
from medcompute.server.storage.studies import StatusRules, StudyStatuses
from medcompute.server.store.blob_streams import file_chunks, prefetched, voxel_payloads
from medcompute.server.store.coding import DICOM, RAW, Coder, StreamInfo
from medcompute.server.store.stages import ThreadStage
from medcompute.server.store.tiers import TierMover
from medcompute.server.store.versions import Versions
from medcompute.server.worker import preview
from medcompute.server.worker.store_tasks import (
    Written,
    ingest_dicom,
    ingest_dicom_share,
    join_shares,
    render_preview,
)

__all__ = ["ImageStore", "Runner", "new_image_id", "METADATA_TEXT_FIELDS"]

log = logging.getLogger(__name__)

#: Runs ``fn(*args, **kwargs)`` on a worker and returns its result.
Runner = Callable[..., Awaitable]
METADATA_TEXT_FIELDS = ("modality", "patient_id", "study_instance_uid", "series_instance_uid",
                        "acquisition_date", "manufacturer", "device_model", "description")
_MAX_TEXT = 256
_DEFAULT_PAGE = 100
#: A series is decoded in shares (one per CPU worker) when each gets this many files.
SHARE_FILES = 16


def _require_id(image_id: str, field: str) -> None:
    if not image_id:
        raise InvalidArgument("required: the id of a stored image, as Register returned it; "
                              "got an empty string", field)


def new_image_id() -> str:
    return uuid.uuid4().hex


def _check_metadata(meta: dict, *, raw: bool) -> dict:
    """Validate a caller's metadata (field names as in RegisterHeader.metadata)."""
    out = dict(meta)
    for name in METADATA_TEXT_FIELDS:
        value = out.get(name, "")
        if len(value) > _MAX_TEXT:
            raise InvalidArgument(f"at most {_MAX_TEXT} characters", f"header.metadata.{name}")
    if out.get("acquisition_date"):
        try:
            out["acquisition_date"] = normalise_date(out["acquisition_date"])
        except ValueError as exc:
            raise InvalidArgument(str(exc), "header.metadata.acquisition_date") from None
    sops = list(out.get("sop_instance_uids", []))
    if raw and len(sops) > 1:
        raise InvalidArgument("a raw array is one instance: give at most one UID",
                              "header.metadata.sop_instance_uids")
    for i, uid in enumerate(sops):
        try:
            check_uid(uid)
        except ValueError as exc:
            raise InvalidArgument(str(exc), f"header.metadata.sop_instance_uids[{i}]") from None
    for name in ("study_instance_uid", "series_instance_uid"):
        if out.get(name):
            try:
                check_uid(out[name])
            except ValueError as exc:
                raise InvalidArgument(str(exc), f"header.metadata.{name}") from None
    for name, value in out.get("conditions", {}).items():
        if name != "other" and not math.isfinite(value):
            raise InvalidArgument("must be a finite number", f"header.metadata.conditions.{name}")
    for key in ("window_center", "window_width"):
        if key in out and not math.isfinite(out[key]):
            raise InvalidArgument("must be a finite number", f"header.metadata.{key}")
    return out


def differing_fields(kept: dict, sent: dict) -> list[str]:
    """The metadata fields (``metadata.NAME``, ``metadata.conditions.NAME``) that ``sent``
    gives a value other than ``kept``'s; a field ``sent`` leaves empty is not compared."""
    out = []
    for name in sorted(set(kept) | set(sent)):
        if name == "conditions":
            a, b = kept.get(name) or {}, sent.get(name) or {}
            out += [f"metadata.conditions.{k}" for k in sorted(b) if b[k] != a.get(k)]
        elif sent.get(name) not in (None, "", [], ()) and sent.get(name) != kept.get(name):
            out.append(f"metadata.{name}")
    return out


def _merge(from_files: dict, given: dict) -> dict:
    """Metadata of DICOM files, with the caller's values only where the files have none
    (UIDs always come from the files)."""
    out = dict(from_files)
    for key, value in given.items():
        if key in ("sop_instance_uids", "study_instance_uid", "series_instance_uid"):
            continue
        if key == "conditions":
            merged = dict(value)
            merged.update(out.get("conditions", {}))
            out["conditions"] = merged
        elif value not in ("", None) and not out.get(key):
            out[key] = value
    return out


class ImageStore:
    """The images of one data directory.

    Parameters
    ----------
    config : ServerConfig
        ``data_dir`` and the limits (``max_image_bytes``, ``max_voxels``).
    runner : callable
        ``await runner(fn, *args, **kwargs)`` runs ``fn`` on a Dask worker
        (``Dispatcher.call``).
    space : FreeSpaceReserve, optional
        The free-space reserve; default: the one ``config`` describes.
    db : Database, optional
        The server's shared catalog Database; default: one of its own on ``data_dir``.
    workers : async callable, optional
        The number of CPU workers (``Dispatcher.cpu_workers``): a series of many files
        is decoded in that many shares at once.
    """

    def __init__(self, config: ServerConfig, runner: Runner,
                 space: FreeSpaceReserve | None = None, db: Database | None = None,
                 workers: Callable[[], Awaitable[int]] | None = None):
        self.config = config
        self.runner = runner
        #: How many CPU workers there are now (awaited): a large series is decoded in
        #: that many shares at once (None: in one task).
        self.workers = workers
        #: The free-space reserve checked before every write (space.py).
        self.space = space if space is not None else FreeSpaceReserve.from_config(config)
        self.blobs = TieredBlobStore(Path(config.data_dir) / "blobs",
                                     None if config.cold_dir is None
                                     else Path(config.cold_dir) / "blobs")
        #: The catalog file: ``db`` (the server's shared Database) or, without one, its
        #: own opened on the data directory.
        tables = db if db is not None else config.data_dir
        self.catalog = ImageCatalog(tables)
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._receiving = asyncio.Event()
        self._backups = 0
        self._deferred: set[str] = set()
        #: The compressed versions of the images (versions.py).
        self.versions = Versions(self, config.versions)
        #: Moves between the hot and the cold tier (tiers.py).
        self.tiers = TierMover(self)
        #: Examinations fetched, for the data fee (fetches.py).
        self.fetches = FetchLog(self.catalog.db)
        #: Reading status of studies and the versions each may serve (studies.py).
        self.studies = StudyStatuses(self.catalog.db,
                                     StatusRules(tuple(config.statuses), dict(config.status_rules)))

    # -- life-cycle -----------------------------------------------------------------
    async def open(self) -> None:
        """Settle interrupted tier moves; remove what interrupted writes left: temporary
        files, blobs without a row."""
        await asyncio.to_thread(self.tiers.recover)
        stale = await asyncio.to_thread(self.blobs.clear_stale)
        orphans = await self.catalog.sweep(self.blobs.digests, self.blobs.remove)
        if stale or orphans:
            log.info("store: removed %d unfinished temporary file(s) and %d blob(s) no image "
                     "refers to", stale, orphans)

    def close(self) -> None:
        self.catalog.close()
        self.studies.close()
        self.fetches.close()

    @contextlib.contextmanager
    def _activity(self):
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()
                self._receiving.clear()

    async def wait_idle(self) -> None:
        """Until no registration is in progress (each has cleaned up after itself)."""
        await self._idle.wait()

    async def wait_receiving(self) -> None:
        """Until a registration has written its first bytes."""
        await self._receiving.wait()

    def _check_voxels(self, shape, field: str) -> None:
        voxels = math.prod(shape)
        if voxels > self.config.max_voxels:
            raise ResourceExhausted(f"the image has {voxels} voxels; this server accepts at "
                                    f"most {self.config.max_voxels}", field)

    async def add(self, record: ImageRecord, install, field: str = "header.image"
                  ) -> tuple[ImageRecord, bool]:
        """``catalog.add``; when it fails (a full disk at COMMIT), the blobs it installed
        that no row refers to are removed again: no row without its blobs, and no blob
        left taking space without its row."""
        try:
            return await self.catalog.add(record, install, field)
        except BaseException:
            with contextlib.suppress(Exception):   # else swept when the store next opens
                await asyncio.shield(self.catalog.release([b.digest for b in record.blobs],
                                                          self.blobs.remove))
            raise

    # -- register -------------------------------------------------------------------
    async def register(self, e: ExpectedImage, payloads: AsyncIterator[bytes], *, owner: str,
                       metadata: dict | None = None, retention: float = 0.0
                       ) -> tuple[ImageRecord, bool, list[str]]:
        """Receive one image (what ``e`` promises, in the chunk payloads ``payloads``
        yields) and keep it.

        Returns the stored record, whether the instance was registered before, and (when
        it was) the metadata fields this registration sent differently from the ones kept
        (``metadata.acquisition_date`` ...); the kept record is never changed.
        """
        meta = _check_metadata(metadata or {}, raw=e.encoding == RAW)
        expires = time.time() + retention if retention > 0 else None
        self.space.check("blobs", "catalog", incoming=e.size)
        with self._activity():
            if e.encoding == RAW:
                self._check_voxels(e.shape, f"{e.field}.shape")
                stored, existing, differing = await self._register_raw(e, payloads, owner,
                                                                       meta, expires)
            else:
                stored, existing, differing = await self._register_dicom(e, payloads, owner,
                                                                         meta, expires)
        if self.config.make_versions and not existing:
            self.versions.make_soon(stored)
        return stored, existing, differing

    async def _receive(self, payloads: AsyncIterator[bytes], e: ExpectedImage, sink,
                       crc_of) -> None:
        """Receive on the event loop while a thread decodes and ``sink`` takes the bytes
        (pipeline.py): the next chunk arrives while this one is decoded and compressed."""
        decoder = wire.ChunkDecoder(e.compression, f"{e.field}.compression")
        got = 0

        def step(payload):
            nonlocal got
            try:
                data = decoder.decode(payload)
            except wire.WireError as exc:
                raise InvalidArgument(exc.message, exc.field) from None
            if got + len(data) > e.size:
                raise InvalidArgument(f"more bytes arrived than the {e.size} declared",
                                      f"{e.field}.size")
            sink(data)
            got += len(data)

        stage = ThreadStage(step, name="store-receive")
        try:
            async for payload in payloads:
                await stage.feed(payload)
                self._receiving.set()
        finally:
            await stage.close()
        if got < e.size:
            raise InvalidArgument(f"the stream ended after {got} of the {e.size} bytes declared",
                                  f"{e.field}.size")
        if e.crc32 is not None and crc_of() != e.crc32:
            raise InvalidArgument(f"checksum mismatch: declared {e.crc32:#010x}, the received "
                                  f"bytes give {crc_of():#010x}", f"{e.field}.crc32")

    async def _register_raw(self, e: ExpectedImage, payloads, owner, meta, expires):
        tmp = self.blobs.new_tmp()
        writer = VoxelWriter(tmp, e.shape, e.dtype, pipelined=True)
        try:
            await self._receive(payloads, e, writer.add, lambda: writer.crc32)
            digest, size = await asyncio.to_thread(writer.finish)
            sops = meta.get("sop_instance_uids", [])
            # Without a UID, the same instance is the same voxels with the same description.
            described = json.dumps([e.dtype.str, e.shape, e.spacing, meta, digest],
                                   sort_keys=True)
            identity = (f"uid:{sops[0]}" if sops else
                        "raw:" + hashlib.sha256(described.encode()).hexdigest())
            record = ImageRecord(
                id=new_image_id(), owner=owner, identity=identity, kind="original",
                shape=e.shape, dtype=e.dtype.str, size=e.size, crc32=writer.crc32,
                created_at=time.time(), spacing=e.spacing, expires_at=expires, metadata=meta,
                blobs=(BlobRef("voxels", digest, size),))
            stored, existing = await self.add(record, lambda: self.blobs.install(tmp, digest),
                                             e.field)
            return stored, existing, differing_fields(stored.metadata, meta) if existing else []
        finally:
            writer.discard()

    async def _register_dicom(self, e: ExpectedImage, payloads, owner, meta, expires):
        tmp, voxels_tmp = self.blobs.new_tmp(), self.blobs.new_tmp()
        writer = BlobWriter(tmp, crc=True, pipelined=True)
        try:
            await self._receive(payloads, e, writer.write, lambda: writer.crc32)
            digest, size = await asyncio.to_thread(writer.finish)
            # The workers read and check the headers (the one validator of every door:
            # gRPC Register, DICOM C-STORE), describe them, and decode the voxels; a
            # refusal keeps nothing, and an instance kept before drops what they wrote.
            decoding = asyncio.ensure_future(self._decode(tmp, e, voxels_tmp, digest))
            try:
                written: Written = await asyncio.shield(decoding)
            except BaseException:
                await _settled(decoding)   # what it wrote is removed below, once it ended
                raise
            self._check_voxels(written.shape, e.field)
            spacing = e.spacing if e.spacing is not None else written.spacing
            if spacing is not None and len(spacing) != len(written.shape):
                raise InvalidArgument(f"expected {len(written.shape)} values (one per axis), "
                                      f"got {len(spacing)}", f"{e.field}.spacing_mm")
            from_files = written.metadata
            sops = from_files["sop_instance_uids"]
            identity = ("dicom:" + hashlib.sha256("\n".join(sorted(sops)).encode()).hexdigest()
                        if sops else f"dicom-bytes:{digest}")
            merged = _merge(from_files, meta)
            existing = await self.catalog.by_identity(owner, identity)
            if existing is not None:
                return existing, True, differing_fields(existing.metadata, merged)
            record = ImageRecord(
                id=new_image_id(), owner=owner, identity=identity, kind="original",
                shape=written.shape, dtype=written.dtype,
                size=math.prod(written.shape) * np.dtype(written.dtype).itemsize,
                crc32=written.crc32, created_at=time.time(), spacing=spacing,
                expires_at=expires, metadata=merged,
                file_sizes=e.file_sizes, dicom_crc32=writer.crc32,
                blobs=(BlobRef("dicom", digest, size),
                       BlobRef("voxels", written.digest, written.size)))

            def install():
                self.blobs.install(tmp, digest)
                self.blobs.install(voxels_tmp, written.digest)
            stored, existing = await self.add(record, install, e.field)
            return stored, existing, differing_fields(stored.metadata, merged) if existing else []
        finally:
            writer.discard()
            Path(voxels_tmp).unlink(missing_ok=True)

    async def _decode(self, path: Path, e: ExpectedImage, voxels_tmp, digest: str
                      ) -> Written:
        """The voxel blob of registered DICOM files (``digest``: their blob's), decoded on
        the workers: a series of many files in one share per CPU worker at once (joined
        here), else in one task. The workers keep the files' headers for the next task on
        them (worker/header_cache.py)."""
        many = len(e.file_sizes) // SHARE_FILES
        shares = min(await self.workers(), many) if self.workers and many > 1 else 1
        if shares < 2:
            return await self.runner(ingest_dicom, str(path), e.file_sizes, str(voxels_tmp),
                                     max_voxels=self.config.max_voxels, field=e.field,
                                     digest=digest)
        frames = [f"{voxels_tmp}.share{k}" for k in range(shares)]
        try:
            # Every share ends (its file written or not) before a failure is raised.
            done = await asyncio.gather(*(
                self.runner(ingest_dicom_share, str(path), e.file_sizes, frames[k], k, shares,
                            max_voxels=self.config.max_voxels, field=e.field, digest=digest)
                for k in range(shares)), return_exceptions=True)
            for outcome in done:
                if isinstance(outcome, BaseException):
                    raise outcome
            return await asyncio.to_thread(join_shares, list(done), str(voxels_tmp))
        finally:
            for f in frames:
                Path(f).unlink(missing_ok=True)

    # -- find and get ---------------------------------------------------------------
    async def get(self, image_id: str, *, owner: str, field: str = "image_id") -> ImageRecord:
        """The image; NotFound when it does not exist or belongs to another subscriber,
        InvalidArgument when ``image_id`` is empty."""
        _require_id(image_id, field)
        record = await self.catalog.get(image_id, owner)
        if record is None:
            raise NotFound(f"no stored image {shown_id(image_id)}", field)
        return record

    async def find(self, f: FindFilter, *, owner: str, page_size: int = 0,
                   page_token: str = "") -> tuple[list[ImageRecord], str]:
        """A page of the caller's images matching every filter of ``f``, and the next token."""
        if page_size > PAGE_MAX:
            raise InvalidArgument(f"at most {PAGE_MAX}, got {page_size}", "page_size")
        dates = {}
        for name in ("date_from", "date_to"):
            value = getattr(f, name)
            try:
                dates[name] = normalise_date(value) if value else ""
            except ValueError as exc:
                raise InvalidArgument(str(exc), name) from None
        try:
            after = decode_token(page_token) if page_token else None
        except ValueError as exc:
            raise InvalidArgument(f"{exc}; pass next_page_token of the previous reply",
                                  "page_token") from None
        if f.registered_by and f.registered_by != owner:
            return [], ""   # another subscriber's images are not visible
        return await self.catalog.find(replace(f, **dates), owner=owner,
                                       limit=page_size or _DEFAULT_PAGE, after=after)

    def stream(self, record: ImageRecord, fmt: str, coder: Coder
               ) -> tuple[StreamInfo, AsyncIterator[bytes]]:
        """What Get sends: a description and the chunk payloads (``fmt``: voxels | dicom),
        coded by ``coder``."""
        if fmt == "dicom":
            blob = record.blob("dicom")
            if blob is None:
                raise InvalidArgument("this image has no DICOM files (it was registered as a "
                                      "raw array, or derived from one); ask for the voxels",
                                      "format")
            info = StreamInfo(DICOM, blob.size, record.dicom_crc32, coder.compression,
                              record.file_sizes)
            return info, prefetched(file_chunks(self.present(blob), coder, record.file_sizes))
        path = self.present(record.blob("voxels"))
        itemsize = np.dtype(record.dtype).itemsize
        return (StreamInfo(RAW, record.size, record.crc32, coder.compression),
                prefetched(voxel_payloads(path, coder, itemsize)))

    async def readable(self, record: ImageRecord, version: str) -> str:
        """The status of the image's study, or FailedPrecondition when that status may not
        serve ``version`` (a version's name, or ``original``)."""
        return await self.studies.check_read(record.owner,
                                             record.metadata.get("study_instance_uid", ""),
                                             version)

    async def fetched(self, record: ImageRecord, by: str) -> None:
        """Note that ``by`` received the image's data (the invoice's data fee); a failure to
        note it is logged, never the caller's error (the data was sent)."""
        try:
            await self.fetches.add(by, record.id, examination_of(
                record.owner, record.id, record.metadata.get("study_instance_uid", "")))
        except Exception as exc:
            log.warning("store: a fetch could not be noted for the data fee (%s)",
                        type(exc).__name__)

    async def study_of(self, owner: str, image_id: str, study_uid: str) -> str:
        """The StudyInstanceUID named by an image of the study or given as it is; NotFound
        unless the caller keeps an image of that study."""
        if image_id:
            uid = (await self.get(image_id, owner=owner)).metadata.get("study_instance_uid", "")
            if not uid:
                raise FailedPrecondition("this image has no StudyInstanceUID (registered as a "
                                         "raw array without one); it belongs to no study",
                                         "image_id")
            return uid
        if not study_uid:
            raise InvalidArgument("give image_id (an image of the study) or "
                                  "study_instance_uid", "image_id")
        found, _ = await self.catalog.find(FindFilter(study_uid=study_uid), owner=owner,
                                           limit=1, after=None)
        if not found:
            raise NotFound("no stored image of this study", "study_instance_uid")
        return study_uid

    def present(self, blob: BlobRef) -> Path:
        """The file of a blob of an image; Internal when it is missing."""
        path = self.blobs.path(blob.digest)
        if not path.exists():
            raise Internal(f"the {blob.role} blob of this image is missing from the store; run "
                           "`medcompute store verify` and restore it from a backup")
        return path

    # -- delete ---------------------------------------------------------------------
    async def delete(self, image_id: str, *, owner: str) -> int:
        """`remove`; the bytes of blob files removed."""
        return (await self.remove(image_id, owner=owner))[0]

    async def remove(self, image_id: str, *, owner: str) -> tuple[int, list[str]]:
        """Remove the image, every version of it on every tier, and the images derived from
        it; the bytes of blob files removed (shared blobs stay) and the derived ids."""
        _require_id(image_id, "image_id")
        gone = await self.catalog.delete(image_id, owner)
        if not gone:
            raise NotFound(f"no stored image {shown_id(image_id)}", "image_id")
        freed, _ = await self._release([b for r in gone for b in r.blobs])
        return freed, [r.id for r in gone[1:]]

    async def remove_many(self, image_ids, *, owner: str) -> int:
        """Remove these images (and what derives from them) in one catalog transaction, the
        ones not found skipped; the bytes of blob files removed."""
        gone = await self.catalog.delete_many(image_ids, owner)
        freed, _ = await self._release([b for r in gone for b in r.blobs])
        return freed

    async def _release(self, refs) -> tuple[int, int]:
        digests = [b.digest for b in refs]
        if self._backups:
            self._deferred.update(digests)   # a backup may still copy them
            return 0, 0
        return await self.catalog.release(digests, self.blobs.remove)

    # -- preview --------------------------------------------------------------------
    async def preview(self, image_id: str, *, owner: str, max_size: int = 0,
                      center: float | None = None, width: float | None = None
                      ) -> preview.Preview:
        """A PNG preview; the default one is rendered once and kept with the image."""
        record = await self.get(image_id, owner=owner)
        max_size = max_size or preview.DEFAULT_SIZE
        if not 16 <= max_size <= preview.MAX_SIZE:
            raise InvalidArgument(f"expected 16 to {preview.MAX_SIZE} pixels, got {max_size}",
                                  "max_size")
        if (center is None) != (width is None) or (width is not None and width <= 0):
            raise InvalidArgument("give both window_center and window_width (> 0), or neither",
                                  "window_width")
        default = max_size == preview.DEFAULT_SIZE and center is None
        cached = record.blob("preview") if default else None
        if cached is not None:
            try:
                png = await asyncio.to_thread(self.blobs.path(cached.digest).read_bytes)
                facts = json.loads(cached.info)
                return preview.Preview(png, facts["width"], facts["height"], facts["rendering"])
            except (OSError, ValueError, KeyError):
                log.warning("store: the cached preview of an image is unreadable; rendering "
                            "it again")
        m = record.metadata
        window = (m["window_center"], m["window_width"]) if "window_width" in m else None
        options = {"max_size": max_size, "modality": m.get("modality", ""),
                   "original": record.kind == "original", "center": center, "width": width,
                   "image_window": window, "spacing": record.spacing}
        voxels = str(self.blobs.path(record.blob("voxels").digest))
        result: preview.Preview = await self.runner(render_preview, voxels, options)
        if default and not self.space.below():
            # A cache: kept while the disk keeps its reserve; any failure only skips it.
            try:
                await self._keep_preview(record, result)
            except Exception as exc:
                log.warning("store: the preview could not be kept (%s)", type(exc).__name__)
        return result

    async def _keep_preview(self, record: ImageRecord, result: preview.Preview) -> None:
        tmp = self.blobs.new_tmp()

        def write():
            with BlobWriter(tmp) as w:
                w.write(result.png)
                return w.finish()
        try:
            digest, size = await asyncio.to_thread(write)
            info = json.dumps({"width": result.width, "height": result.height,
                               "rendering": result.rendering})
            await self.catalog.add_blob(record.id, BlobRef("preview", digest, size, info),
                                        lambda: self.blobs.install(tmp, digest))
        finally:
            tmp.unlink(missing_ok=True)


async def _settled(task: asyncio.Future) -> None:
    """Wait for ``task`` to end, whatever its outcome (what it wrote is then removed)."""
    with contextlib.suppress(BaseException):
        await asyncio.shield(task)

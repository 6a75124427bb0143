"""The image store: register images once, then find, fetch, preview and delete them by id.

Domain code. An image is a catalog row (``image_catalog``) and content-addressed
blobs (``blobs``): the voxels, losslessly compressed; the original DICOM files as
they arrived (or a derived image's DICOM series); a cached preview. A call is
acknowledged only after its blobs are synced and renamed into place and its row is
committed. Pixel work (decoding DICOM, rendering previews, keeping processing
results) runs on Dask workers, which read and write the blob files themselves.

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
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2
from medcompute.server import blobs as blobfiles
from medcompute.server import preview
from medcompute.server.blobs import BlobStore, BlobWriter, VoxelWriter
from medcompute.server.config import ServerConfig
from medcompute.server.dicom_meta import check_uid, normalise_date
from medcompute.server.errors import Internal, InvalidArgument, NotFound, ResourceExhausted
from medcompute.server.image_catalog import (
    PAGE_MAX,
    BlobRef,
    FindFilter,
    ImageCatalog,
    ImageRecord,
    decode_token,
)
from medcompute.server.pipeline import ThreadStage
from medcompute.server.space import FreeSpaceReserve
from medcompute.server.store_tasks import Written, dicom_parts, ingest_dicom, render_preview
from medcompute.server.transport import ExpectedImage, expect_image

__all__ = ["ImageStore", "Runner", "StreamInfo", "new_image_id", "METADATA_TEXT_FIELDS"]

log = logging.getLogger(__name__)

#: Runs ``fn(*args, **kwargs)`` on a worker and returns its result.
Runner = Callable[..., Awaitable]
METADATA_TEXT_FIELDS = ("modality", "patient_id", "study_instance_uid", "series_instance_uid",
                        "acquisition_date", "manufacturer", "device_model", "description")
_MAX_TEXT = 256
_DEFAULT_PAGE = 100
_END = object()


def _require_id(image_id: str, field: str) -> None:
    if not image_id:
        raise InvalidArgument("required: the id of a stored image, as Register returned it; "
                              "got an empty string", field)


def new_image_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class StreamInfo:
    """What a Get stream carries, for its header."""

    encoding: int                   # image_pb2.ENCODING_RAW or image_pb2.ENCODING_DICOM
    size: int
    crc32: int
    compression: int
    file_sizes: tuple[int, ...] = ()


async def _prefetched(it: Iterator, depth: int = 4) -> AsyncIterator:
    """Iterate a blocking iterator (reading, decompressing) in a thread that runs up to
    ``depth`` items ahead, so the work overlaps with sending. Close it (``aclosing``)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    room = threading.Semaphore(depth)
    stop = threading.Event()

    def put(item, error=None):
        with contextlib.suppress(RuntimeError):   # the loop closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))

    def produce():
        try:
            for item in it:
                room.acquire()
                if stop.is_set():
                    return
                put(item)
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_END, exc)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    # A thread of its own: a slow reader must not hold one of the loop's executor threads.
    threading.Thread(target=produce, name="store-stream", daemon=True).start()
    try:
        while True:
            item, error = await queue.get()
            if error is not None:
                raise error
            if item is _END:
                return
            room.release()
            yield item
    finally:
        stop.set()
        room.release()


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
    """

    def __init__(self, config: ServerConfig, runner: Runner,
                 space: FreeSpaceReserve | None = None):
        self.config = config
        self.runner = runner
        #: The free-space reserve checked before every write (space.py).
        self.space = space if space is not None else FreeSpaceReserve.from_config(config)
        self.blobs = BlobStore(Path(config.data_dir) / "blobs")
        self.catalog = ImageCatalog(config.data_dir)
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._receiving = asyncio.Event()
        self._backups = 0
        self._deferred: set[str] = set()

    # -- life-cycle -----------------------------------------------------------------
    async def open(self) -> None:
        """Remove what interrupted writes left: temporary files, blobs without a row."""
        stale = await asyncio.to_thread(self.blobs.clear_stale)
        orphans = await self.catalog.sweep(self.blobs.digests, self.blobs.remove)
        if stale or orphans:
            log.info("store: removed %d unfinished temporary file(s) and %d blob(s) no image "
                     "refers to", stale, orphans)

    def close(self) -> None:
        self.catalog.close()

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

    async def add(self, record: ImageRecord, install) -> tuple[ImageRecord, bool]:
        """``catalog.add``; when it fails (a full disk at COMMIT), the blobs it installed
        that no row refers to are removed again: no row without its blobs, and no blob
        left taking space without its row."""
        try:
            return await self.catalog.add(record, install)
        except BaseException:
            with contextlib.suppress(Exception):   # else swept when the store next opens
                await asyncio.shield(self.catalog.release([b.digest for b in record.blobs],
                                                          self.blobs.remove))
            raise

    # -- register -------------------------------------------------------------------
    async def register(self, descriptor, chunks: AsyncIterator, *, owner: str,
                       metadata: dict | None = None, retention: float = 0.0
                       ) -> tuple[ImageRecord, bool, list[str]]:
        """Receive one image (``chunks`` yields (message index, Chunk)) and keep it.

        Returns the stored record, whether the instance was registered before, and (when
        it was) the metadata fields this registration sent differently from the ones kept
        (``metadata.acquisition_date`` ...); the kept record is never changed.
        """
        e = expect_image(descriptor, "header.image", max_bytes=self.config.max_image_bytes)
        meta = _check_metadata(metadata or {}, raw=e.encoding == "raw")
        expires = time.time() + retention if retention > 0 else None
        self.space.check("blobs", "catalog", incoming=e.size)
        with self._activity():
            if e.encoding == "raw":
                self._check_voxels(e.shape, "header.image.shape")
                return await self._register_raw(e, chunks, owner, meta, expires)
            return await self._register_dicom(e, chunks, owner, meta, expires)

    async def _receive(self, chunks: AsyncIterator, e: ExpectedImage, sink, crc_of) -> None:
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
            async for index, chunk in chunks:
                if chunk.HasField("operand"):
                    raise InvalidArgument(f"a registration carries one image and no operands "
                                          f"(leave operand unset); got operand {chunk.operand}",
                                          f"request[{index}].chunk.operand")
                await stage.feed(chunk.data)
                self._receiving.set()
        finally:
            await stage.close()
        if got < e.size:
            raise InvalidArgument(f"the stream ended after {got} of the {e.size} bytes declared",
                                  f"{e.field}.size")
        if e.crc32 is not None and crc_of() != e.crc32:
            raise InvalidArgument(f"checksum mismatch: declared {e.crc32:#010x}, the received "
                                  f"bytes give {crc_of():#010x}", f"{e.field}.crc32")

    async def _register_raw(self, e: ExpectedImage, chunks, owner, meta, expires):
        tmp = self.blobs.new_tmp()
        writer = VoxelWriter(tmp, e.shape, e.dtype, pipelined=True)
        try:
            await self._receive(chunks, e, writer.add, lambda: writer.crc32)
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
            stored, existing = await self.add(record, lambda: self.blobs.install(tmp, digest))
            return stored, existing, differing_fields(stored.metadata, meta) if existing else []
        finally:
            writer.discard()

    def _read_dicom(self, path: Path, e: ExpectedImage):
        from medcompute.server import dicom
        from medcompute.server.dicom_meta import describe
        from medcompute.server.tasks import request_field

        parts = dicom_parts(str(path), e.file_sizes)
        try:
            with dicom.quiet_pydicom():
                # This server's voxel limit also bounds how far a deflated file is inflated.
                volume = dicom.load(parts, max_voxels=self.config.max_voxels,
                                    field="input.dicom")
                return volume.info, describe(volume.datasets, volume.info.order)
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, request_field(exc.field, e.field)) from None

    async def _register_dicom(self, e: ExpectedImage, chunks, owner, meta, expires):
        tmp, voxels_tmp = self.blobs.new_tmp(), self.blobs.new_tmp()
        writer = BlobWriter(tmp, crc=True, pipelined=True)
        try:
            await self._receive(chunks, e, writer.write, lambda: writer.crc32)
            digest, size = await asyncio.to_thread(writer.finish)
            info, from_files = await asyncio.to_thread(self._read_dicom, tmp, e)
            self._check_voxels(info.shape, e.field)
            spacing = e.spacing if e.spacing is not None else info.spacing
            if spacing is not None and len(spacing) != len(info.shape):
                raise InvalidArgument(f"expected {len(info.shape)} values (one per axis), got "
                                      f"{len(spacing)}", f"{e.field}.spacing_mm")
            sops = from_files["sop_instance_uids"]
            identity = ("dicom:" + hashlib.sha256("\n".join(sorted(sops)).encode()).hexdigest()
                        if sops else f"dicom-bytes:{digest}")
            merged = _merge(from_files, meta)
            existing = await self.catalog.by_identity(owner, identity)
            if existing is not None:
                return existing, True, differing_fields(existing.metadata, merged)
            written: Written = await self.runner(
                ingest_dicom, str(tmp), e.file_sizes, str(voxels_tmp),
                max_voxels=self.config.max_voxels, field=e.field)
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
            stored, existing = await self.add(record, install)
            return stored, existing, differing_fields(stored.metadata, merged) if existing else []
        finally:
            writer.discard()
            Path(voxels_tmp).unlink(missing_ok=True)

    # -- find and get ---------------------------------------------------------------
    async def get(self, image_id: str, *, owner: str, field: str = "image_id") -> ImageRecord:
        """The image; NotFound when it does not exist or belongs to another subscriber,
        InvalidArgument when ``image_id`` is empty."""
        _require_id(image_id, field)
        record = await self.catalog.get(image_id, owner)
        if record is None:
            raise NotFound(f"no stored image {image_id!r}", field)
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

    def stream(self, record: ImageRecord, fmt: str, compression: int
               ) -> tuple[StreamInfo, AsyncIterator[bytes]]:
        """What Get sends: a description and the chunk payloads (``fmt``: voxels | dicom)."""
        if compression not in image_pb2.Compression.values():
            raise InvalidArgument(wire.enum_choices(image_pb2.Compression, compression),
                                  "compression")
        if fmt == "dicom":
            blob = record.blob("dicom")
            if blob is None:
                raise InvalidArgument("this image has no DICOM files (it was registered as a "
                                      "raw array, or derived from one); ask for the voxels",
                                      "format")
            info = StreamInfo(image_pb2.ENCODING_DICOM, blob.size, record.dicom_crc32, compression,
                              record.file_sizes)
            return info, _prefetched(_file_chunks(self._present(blob), compression))
        path = self._present(record.blob("voxels"))
        itemsize = np.dtype(record.dtype).itemsize
        return (StreamInfo(image_pb2.ENCODING_RAW, record.size, record.crc32, compression),
                _prefetched(_voxel_payloads(path, compression, itemsize)))

    def _present(self, blob: BlobRef) -> Path:
        path = self.blobs.path(blob.digest)
        if not path.exists():
            raise Internal(f"the {blob.role} blob of this image is missing from the store; run "
                           "`medcompute store verify` and restore it from a backup")
        return path

    # -- delete ---------------------------------------------------------------------
    async def delete(self, image_id: str, *, owner: str) -> int:
        """Remove the image; the bytes of blob files removed (shared blobs stay)."""
        _require_id(image_id, "image_id")
        record = await self.catalog.delete(image_id, owner)
        if record is None:
            raise NotFound(f"no stored image {image_id!r}", "image_id")
        freed, _ = await self._release(record.blobs)
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


def _file_chunks(path: Path, compression: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while piece := f.read(wire.CHUNK_SIZE):
            yield from wire.iter_chunks(piece, compression=compression)


def _voxel_payloads(path: Path, compression: int, itemsize: int) -> Iterator[bytes]:
    if compression == image_pb2.COMPRESSION_BLOSC:
        # The stored frames are blosc2 chunks of at most a wire chunk: sent as they are.
        yield from blobfiles.voxel_frames(path)
        return
    for data in blobfiles.voxel_chunks(path):
        yield from wire.iter_chunks(data, compression=compression, itemsize=itemsize)

"""The image store from Python: register images once, then find, fetch, preview, delete.

    with Client("127.0.0.1:50051") as c:
        ct = c.store.register("ct.dcm")                       # -> StoredImage
        r = c.process(ct, ["gaussian:sigma_mm=1"], store_result=True, output="dicom_file")
        derived = c.store.get(r.stored_image_id, dicom=True)  # the derived DICOM files
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
from google.protobuf import json_format

from medcompute.client.calls import (
    _COMPRESSION,
    DEFAULT_SERVER,
    ServiceError,
    _descriptor,
    _payload,
    _progress,
    call,
)
from medcompute.client.channel import open_channel
from medcompute.client.io import read_input
from medcompute.client.output import message_json
from medcompute.client.shm import (
    SharedArena,
    _copied_out,
    _ensure,
    again_if_forgotten,
    is_local,
)
from medcompute.proto import wire
from medcompute.proto.v1 import (
    capacity_pb2,
    capacity_pb2_grpc,
    image_pb2,
    processing_pb2_grpc,
    store_pb2,
    store_pb2_grpc,
    studies_pb2,
    studies_pb2_grpc,
    tiers_pb2,
    tiers_pb2_grpc,
)

__all__ = ["StoreClient", "StoredImage", "Fetched", "Preview", "stored_id", "KINDS"]

KINDS = {"any": store_pb2.IMAGE_KIND_UNSPECIFIED, "original": store_pb2.IMAGE_KIND_ORIGINAL,
         "derived": store_pb2.IMAGE_KIND_DERIVED}
_KIND_NAMES = {code: name for name, code in KINDS.items()}
_KIND_NAMES[store_pb2.IMAGE_KIND_UNSPECIFIED] = ""


def _dict(message) -> dict:
    return message_json(message)


def _storage(msg: capacity_pb2.SubscriberStorage) -> dict:
    return {"subscriber": msg.subscriber,
            "allocated_bytes": msg.allocated_bytes if msg.HasField("allocated_bytes") else None,
            "used_bytes": msg.used_bytes, "tiers": {t.tier: t.used_bytes for t in msg.tiers}}


@dataclass
class StoredImage:
    """An image in the store, as the server describes it (``message`` is the StoredImage)."""

    message: store_pb2.StoredImage
    #: Register only: the instance was registered before and this is its existing id.
    existing: bool = False
    #: Register only, with ``existing``: the metadata fields sent differently from the
    #: ones kept (which are unchanged), e.g. ``["metadata.acquisition_date"]``.
    differing_fields: list[str] = field(default_factory=list)

    @property
    def image_id(self) -> str:
        return self.message.image_id

    @property
    def kind(self) -> str:
        return _KIND_NAMES[self.message.kind]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.message.shape)

    @property
    def dtype(self) -> np.dtype:
        return wire.dtype_from_proto(self.message.dtype, "image.dtype")

    @property
    def spacing(self) -> tuple[float, ...] | None:
        return tuple(self.message.spacing_mm) or None

    @property
    def metadata(self) -> dict:
        """Modality, patient id, UIDs, acquisition date, device, imaging conditions."""
        return _dict(self.message.metadata)

    @property
    def conditions(self) -> dict:
        return _dict(self.message.metadata.conditions)

    @property
    def tier(self) -> str:
        """Where its original files are: "hot" or "cold"."""
        return self.message.tier or "hot"

    @property
    def versions(self) -> dict[str, dict]:
        """The compressed versions made so far, by name: purpose, lossless,
        compression_ratio, max_error, psnr_db, stored_bytes, resolution_levels ..."""
        return {v.name: _dict(v) for v in self.message.versions}

    def __repr__(self) -> str:
        return (f"StoredImage({self.image_id}, {self.kind}, shape={self.shape}, "
                f"dtype={self.dtype.name}{', existing' if self.existing else ''})")

    def to_dict(self) -> dict:
        data = _dict(self.message)
        data["kind"] = self.kind
        data["dtype"] = self.dtype.name
        if self.existing:
            data["existing"] = True
        if self.differing_fields:
            data["differing_fields"] = list(self.differing_fields)
        return data


def version_voxels(files: Sequence[bytes], shape: Sequence[int], dtype) -> np.ndarray:
    """The voxels of a raw image's version: its frames (slices, in order, JPEG 2000
    decoded by pydicom, shifted by their Rescale Intercept) as an array of the image's
    ``shape``; at a lower resolution level the frames are smaller and so are the last two
    axes."""
    import io

    import pydicom

    frames = []
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        stored = ds.pixel_array.reshape(-1, int(ds.Rows), int(ds.Columns))
        # a signed array's version stores its values shifted into the unsigned range, as
        # the secondary-capture IOD requires, with a Rescale Intercept that shifts them back
        shift = int(float(ds.get("RescaleIntercept") or 0))
        frames.append(stored.astype(np.int32) + shift if shift else stored)
    stack = np.concatenate(frames)
    out_shape = tuple(shape[:-2]) + stack.shape[1:]
    if math.prod(out_shape) != stack.size:
        raise ServiceError(grpc.StatusCode.DATA_LOSS, f"the version's {stack.shape[0]} frames "
                           f"do not make an image of shape {tuple(shape)}")
    return stack.reshape(out_shape).astype(dtype, copy=False)


@dataclass
class Fetched:
    """What Get returned: the image's description, and its voxels or its DICOM files."""

    image: StoredImage
    array: np.ndarray | None = None
    files: list[bytes] = field(default_factory=list)
    #: A version of an image registered as a raw array also comes decoded in ``array``
    #: (at a resolution level N, each of the last two axes ``ceil(n / 2**N)`` long).
    #: The version sent (name, purpose, compression_ratio, max_error ...); None: the original.
    version: dict | None = None
    resolution_level: int = 0


@dataclass
class Preview:
    png: bytes
    width: int
    height: int
    rendering: str


def stored_id(image) -> str | None:
    """The store id ``image`` names (``"id:ID"``, a StoredImage), or None for a local image."""
    if isinstance(image, StoredImage):
        return image.image_id
    if isinstance(image, store_pb2.StoredImage):
        return image.image_id
    if isinstance(image, str) and image.startswith("id:"):
        return image[3:]
    return None


def _codec(compression: str) -> int:
    if compression not in _COMPRESSION:
        raise ValueError(f"compression: expected one of {', '.join(_COMPRESSION)}, "
                         f"got {compression!r}")
    return _COMPRESSION[compression]


class StoreClient:
    """The Store service of a medcompute server (also ``Client.store``).

    Parameters
    ----------
    address : str
        ``HOST:PORT``; ignored when ``channel`` is given.
    timeout : float
        Seconds each call may take unless the call says otherwise.
    channel : grpc.Channel, optional
        An open channel to share (it is not closed by this object).
    shared_memory : bool, optional
        Fetch uncompressed images through a shared-memory region of this client's, not as
        chunks, when the server is on this host; by default, when ``address`` names this
        host (loopback, a Unix socket). A server that cannot use it gets chunks from then
        on.
    **connection
        ``api_key``, ``tls_ca``, ``tls_cert``, ``tls_key``, as for :class:`Client`.
    """

    def __init__(self, address: str = DEFAULT_SERVER, *, timeout: float = 600.0,
                 channel: grpc.Channel | None = None, shared_memory: bool | None = None,
                 **connection):
        self.timeout = timeout
        self._own = channel is None
        # connection: api_key, tls_ca, tls_cert, tls_key, as for Client.
        self._channel = channel or open_channel(address, **connection)
        self._stub = store_pb2_grpc.StoreServiceStub(self._channel)
        self.shared_memory = (is_local(address) and channel is None
                              if shared_memory is None else shared_memory)
        self._arena: SharedArena | None = None
        self._arena_lock = threading.Lock()
        self._capacity = capacity_pb2_grpc.CapacityServiceStub(self._channel)
        self._tiers = tiers_pb2_grpc.TierServiceStub(self._channel)
        self._studies = studies_pb2_grpc.StudyServiceStub(self._channel)

    def __enter__(self) -> StoreClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._arena_lock:
            arena, self._arena = self._arena, None
        if arena is not None:
            arena.release()              # unregistered and unlinked
        if self._own:
            self._channel.close()

    _call = staticmethod(call)

    # -- register -------------------------------------------------------------------
    def register(self, image, *, spacing: Sequence[float] | None = None,
                 metadata: dict | None = None, retention: float | None = None,
                 compression: str = "none", timeout: float | None = None,
                 progress: bool = False) -> StoredImage:
        """Keep an image in the store; the same instance twice gives the same id.

        Parameters
        ----------
        image : ndarray, path or list of paths
            An array; a ``.npy`` file; a DICOM file (single- or multi-frame); several
            DICOM files or a folder of them (one series, one stored volume).
        spacing : sequence of float, optional
            Voxel spacing in mm per axis (DICOM: taken from the files if absent).
        metadata : dict, optional
            ImageMetadata fields: for an array, what the catalog records (``modality``,
            ``patient_id``, ``acquisition_date``, ``sop_instance_uids``, ``conditions``
            ...); for DICOM, values the files lack.
        retention : float, optional
            Seconds until the image may be purged.
        """
        codec = _codec(compression)
        local = read_input(image, spacing)
        meta = store_pb2.ImageMetadata()
        if metadata:
            json_format.ParseDict(metadata, meta)
        header = store_pb2.RegisterHeader(image=_descriptor(local, codec), metadata=meta,
                                          retention_seconds=round(retention or 0))
        bar = _progress(local.nbytes, "upload", progress)

        def requests():
            yield store_pb2.RegisterRequest(header=header)
            for payload in _payload(local, codec):
                yield wire.chunk_message(store_pb2.RegisterRequest, payload)
                if bar is not None:
                    bar.update(min(len(payload), wire.CHUNK_SIZE))
            if bar is not None:
                bar.close()

        reply = self._call(self._stub.Register, requests(), timeout=timeout or self.timeout)
        return StoredImage(reply.image, existing=reply.existing,
                           differing_fields=list(reply.differing_fields))

    # -- find -----------------------------------------------------------------------
    def find_page(self, *, page_size: int = 0, page_token: str = "", kind: str = "any",
                  timeout: float | None = None, **filters) -> tuple[list[StoredImage], str]:
        """One page of matching images and the token of the next page ("" on the last).

        ``filters``: patient_id, study_instance_uid, series_instance_uid, modality,
        date_from, date_to (YYYYMMDD or YYYY-MM-DD, inclusive), registered_by,
        source_image_id.
        """
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        request = store_pb2.FindRequest(page_size=page_size, page_token=page_token,
                                        kind=KINDS[kind], **filters)
        reply = self._call(self._stub.Find, request, timeout=timeout or self.timeout)
        return [StoredImage(m) for m in reply.images], reply.next_page_token

    def find(self, *, limit: int | None = None, page_size: int = 0, **filters
             ) -> list[StoredImage]:
        """Every matching image (at most ``limit``), oldest first, page after page."""
        out: list[StoredImage] = []
        token = ""
        while True:
            page, token = self.find_page(page_size=page_size, page_token=token, **filters)
            out.extend(page)
            if not token or (limit is not None and len(out) >= limit):
                return out[:limit] if limit is not None else out

    # -- get, delete, preview -------------------------------------------------------
    def get(self, image_id, *, dicom: bool = False, compression: str = "none",
            timeout: float | None = None, progress: bool = False, version: str = "",
            resolution_level: int = 0) -> Fetched:
        """The voxels of a stored image, or (``dicom=True``) its DICOM files: the original
        files, or a derived image's derived series. ``version`` (a name or a purpose, e.g.
        ``"review"``) fetches that compressed version's DICOM files instead, optionally cut
        to a lower ``resolution_level``; for an image registered as a raw array they also
        come decoded, as ``array``."""
        fmt = (store_pb2.STORED_FORMAT_DICOM if dicom or version
               else store_pb2.STORED_FORMAT_VOXELS)
        request = store_pb2.GetRequest(
            image_id=stored_id(image_id) or str(image_id), compression=_codec(compression),
            format=fmt, version=version, resolution_level=resolution_level)
        if self.shared_memory and not version and request.compression in (
                image_pb2.COMPRESSION_UNSPECIFIED, image_pb2.COMPRESSION_NONE):
            fetched = self._get_shared(request, timeout or self.timeout)
            if fetched is not None:
                return fetched
        responses = self._stub.Get(request, timeout=timeout or self.timeout)
        return self._call(self._receive, responses, progress)

    def _first(self, request, timeout: float):
        """The first response of a Get that sends nothing after it (the rest cancelled)."""
        responses = self._stub.Get(request, timeout=timeout)
        try:
            return next(responses)
        finally:
            responses.cancel()

    def _get_shared(self, request, timeout: float) -> Fetched | None:
        """``get`` through this client's shared-memory region: its size from a header-only
        Get, then the bytes written there by the server; None when the server cannot use
        this host's shared memory (chunks from then on)."""
        head = self._call(self._first, store_pb2.GetRequest(
            image_id=request.image_id, format=request.format, header_only=True), timeout)
        size = head.header.data.size
        with self._arena_lock:
            if self._arena is None:
                self._arena = SharedArena(
                    processing_pb2_grpc.ProcessingServiceStub(self._channel), self.timeout)
            arena = self._arena

            def attempt() -> Fetched | None:
                if not _ensure(arena, max(size, 1)):
                    return None
                shared = store_pb2.GetRequest()
                shared.CopyFrom(request)
                shared.output_region.CopyFrom(arena.region(0, max(size, 1)))
                first = self._call(self._first, shared, timeout)
                return _from_region(first.header, arena)
            fetched = again_if_forgotten(arena, attempt)
            if fetched is None:
                self.shared_memory = False
            return fetched

    def _receive(self, responses, progress: bool) -> Fetched:
        first = next(responses, None)
        if first is None or first.WhichOneof("msg") != "header":
            raise ServiceError(grpc.StatusCode.INTERNAL, "the server sent no header")
        image, data = StoredImage(first.header.image), first.header.data
        version = _dict(first.header.version) if first.header.HasField("version") else None
        level = first.header.resolution_level
        raw = data.encoding == image_pb2.ENCODING_RAW
        # Voxels go into one writable buffer; DICOM files are kept as the pieces that
        # arrived (the server cuts chunks at file ends), so a file that came in one chunk
        # is those bytes, not a copy.
        buffer = bytearray(data.size) if raw else None
        pieces = []
        decoder = wire.ChunkDecoder(data.compression, "data")
        got = crc = 0
        bar = _progress(data.size, "download", progress)
        for message in responses:
            piece = decoder.decode(message.chunk.data)
            if got + len(piece) > data.size:
                raise ServiceError(grpc.StatusCode.DATA_LOSS, "more bytes than declared arrived")
            if raw:
                buffer[got:got + len(piece)] = piece
            else:
                pieces.append(piece)
            crc = wire.crc32(piece, crc)   # while the next chunk is on its way
            got += len(piece)
            if bar is not None:
                bar.update(len(piece))
        if bar is not None:
            bar.close()
        if got != data.size:
            raise ServiceError(grpc.StatusCode.DATA_LOSS,
                               f"the stream ended after {got} of {data.size} bytes")
        if data.HasField("crc32") and crc != data.crc32:
            raise ServiceError(grpc.StatusCode.DATA_LOSS, "the checksum does not match")
        if raw:
            dtype = wire.dtype_from_proto(data.dtype, "data.dtype")
            shape = tuple(data.shape)
            if math.prod(shape) * dtype.itemsize != got:
                raise ServiceError(grpc.StatusCode.DATA_LOSS, "the size does not match the shape")
            return Fetched(image, array=np.frombuffer(buffer, dtype=dtype).reshape(shape))
        files = _files(pieces, data.file_sizes)
        array = (version_voxels(files, image.shape, image.dtype)
                 if version is not None and not image.message.dicom_files else None)
        return Fetched(image, array=array, files=files, version=version, resolution_level=level)

    def info(self, image_id, *, timeout: float | None = None) -> StoredImage:
        """The description of one image (a Get of its header only)."""
        request = store_pb2.GetRequest(image_id=stored_id(image_id) or str(image_id),
                                       header_only=True)

        def header():
            [response] = self._stub.Get(request, timeout=timeout or self.timeout)
            return StoredImage(response.header.image)
        return self._call(header)

    # -- reading status -------------------------------------------------------------
    def set_status(self, image_id, status: str, *, study_instance_uid: str = "",
                   timeout: float | None = None) -> dict:
        """Set the reading status of an image's study (or of ``study_instance_uid``):
        {"status", "previous_status", "allowed_versions"}."""
        request = studies_pb2.SetStudyStatusRequest(
            image_id=(stored_id(image_id) or str(image_id)) if image_id else "",
            study_instance_uid=study_instance_uid, status=status)
        reply = self._call(self._studies.SetStudyStatus, request,
                           timeout=timeout or self.timeout)
        return {"status": reply.status, "previous_status": reply.previous_status,
                "allowed_versions": list(reply.allowed_versions)}

    def status(self, image_id, *, study_instance_uid: str = "",
               timeout: float | None = None) -> dict:
        """The reading status of an image's study: {"status", "changed_at", "changed_by",
        "allowed_versions", "statuses"}."""
        request = studies_pb2.GetStudyStatusRequest(
            image_id=(stored_id(image_id) or str(image_id)) if image_id else "",
            study_instance_uid=study_instance_uid)
        r = self._call(self._studies.GetStudyStatus, request, timeout=timeout or self.timeout)
        return {"status": r.status, "changed_at": r.changed_at, "changed_by": r.changed_by,
                "allowed_versions": list(r.allowed_versions), "statuses": list(r.statuses)}

    # -- tiers ----------------------------------------------------------------------
    def move(self, image_id, tier: str, *, timeout: float | None = None) -> dict:
        """Move an image to ``"cold"`` (its originals and lossless versions) or back to
        ``"hot"``: {"blobs_moved", "bytes_moved", "tier"}."""
        request = tiers_pb2.MoveImageRequest(image_id=stored_id(image_id) or str(image_id),
                                             tier=tier)
        reply = self._call(self._tiers.MoveImage, request, timeout=timeout or self.timeout)
        return {"blobs_moved": reply.blobs_moved, "bytes_moved": reply.bytes_moved,
                "tier": reply.tier}

    def apply_tier_policy(self, *, dry_run: bool = False, timeout: float | None = None
                          ) -> dict:
        """Apply the server's tier policy now (admin): {"image_ids", "blobs", "bytes"}."""
        reply = self._call(self._tiers.ApplyTierPolicy,
                           tiers_pb2.ApplyTierPolicyRequest(dry_run=dry_run),
                           timeout=timeout or self.timeout)
        return {"image_ids": list(reply.image_ids), "blobs": reply.blobs, "bytes": reply.bytes}

    # -- capacity -------------------------------------------------------------------
    def usage(self, subscriber: str = "", *, all_subscribers: bool = False,
              timeout: float | None = None) -> list[dict]:
        """Allocated and used bytes (and used bytes per tier) of the caller, or (admin)
        another subscriber or every one: dicts with ``subscriber``, ``allocated_bytes``
        (None: unlimited), ``used_bytes`` and ``tiers`` ({tier: used bytes})."""
        request = capacity_pb2.GetStorageUsageRequest(subscriber=subscriber,
                                                      all_subscribers=all_subscribers)
        reply = self._call(self._capacity.GetStorageUsage, request,
                           timeout=timeout or self.timeout)
        return [_storage(s) for s in reply.subscribers]

    def set_capacity(self, subscriber: str, allocated_bytes: int | None, *,
                     timeout: float | None = None) -> dict:
        """Allocate a subscriber this many bytes (None: unlimited); admin role."""
        request = capacity_pb2.SetCapacityRequest(subscriber=subscriber)
        if allocated_bytes is not None:
            request.allocated_bytes = allocated_bytes
        reply = self._call(self._capacity.SetCapacity, request, timeout=timeout or self.timeout)
        return _storage(reply.storage)

    def delete(self, image_id, *, timeout: float | None = None) -> int:
        """Delete a stored image; the bytes freed on the server's disk."""
        request = store_pb2.DeleteRequest(image_id=stored_id(image_id) or str(image_id))
        return self._call(self._stub.Delete, request, timeout=timeout or self.timeout).freed_bytes

    def preview(self, image_id, *, max_size: int = 0,
                window: tuple[float, float] | None = None,
                timeout: float | None = None) -> Preview:
        """A small PNG (a volume's maximum intensity projection), windowed; ``window`` is
        (centre, width)."""
        request = store_pb2.PreviewRequest(image_id=stored_id(image_id) or str(image_id),
                                           max_size=max_size)
        if window is not None:
            request.window_center, request.window_width = window
        reply = self._call(self._stub.Preview, request, timeout=timeout or self.timeout)
        return Preview(reply.png, reply.width, reply.height, reply.rendering)

    # -- looking after the store ----------------------------------------------------
    def verify(self, *, timeout: float | None = None) -> dict:
        """Every blob checked against its checksum: counts and problems (none when sound)."""
        reply = self._call(self._stub.Verify, store_pb2.VerifyRequest(),
                           timeout=timeout or self.timeout)
        data = json_format.MessageToDict(reply, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
        return {k: int(v) if k != "problems" else v for k, v in data.items()}

    def backup(self, destination: str, *, timeout: float | None = None) -> dict:
        """A consistent copy of the store (catalog and blobs) in a new folder on the
        server's host."""
        reply = self._call(self._stub.Backup, store_pb2.BackupRequest(destination=destination),
                           timeout=timeout or self.timeout)
        return {"destination": reply.destination, "images": reply.images,
                "blobs": reply.blobs, "bytes": reply.bytes}

    def adopt(self, subscriber: str, *, from_subscriber: str = "",
              timeout: float | None = None) -> list[str]:
        """Hand every image of ``from_subscriber`` (default: ``local``, the images
        registered before the first key) to ``subscriber`` (admin role); the ids handed
        over."""
        reply = self._call(self._stub.Adopt, store_pb2.AdoptRequest(
            subscriber=subscriber, from_subscriber=from_subscriber),
            timeout=timeout or self.timeout)
        return list(reply.image_ids)

    def purge(self, *, dry_run: bool = False, timeout: float | None = None) -> dict:
        """Delete the images whose retention period has passed; what was freed."""
        reply = self._call(self._stub.Purge, store_pb2.PurgeRequest(dry_run=dry_run),
                           timeout=timeout or self.timeout)
        return {"image_ids": list(reply.image_ids), "freed_bytes": reply.freed_bytes,
                "blobs_removed": reply.blobs_removed}


def _from_region(header, arena: SharedArena) -> Fetched:
    """What a Get into ``arena``'s region fetched: copies of the bytes the server wrote at
    its start (the region is the next call's), checked against the header's checksum."""
    image, data = StoredImage(header.image), header.data
    view = arena.shm.buf[:data.size]
    try:
        if data.HasField("crc32") and wire.crc32(view) != data.crc32:
            raise ServiceError(grpc.StatusCode.DATA_LOSS, "the checksum does not match")
        if data.encoding == image_pb2.ENCODING_RAW:
            dtype = wire.dtype_from_proto(data.dtype, "data.dtype")
            if math.prod(data.shape) * dtype.itemsize != data.size:
                raise ServiceError(grpc.StatusCode.DATA_LOSS,
                                   "the size does not match the shape")
            return Fetched(image, array=_copied_out(arena, data, 0))
        files, at = [], 0
        for n in data.file_sizes:
            files.append(bytes(view[at:at + n]))
            at += n
        return Fetched(image, files=files)
    finally:
        view.release()


def _files(pieces: list[bytes], sizes) -> list[bytes]:
    """Cut the received pieces into files of ``sizes``: a file that is exactly one piece
    is that piece; others are joined from their parts (chunks may cross file ends)."""
    files, k, at = [], 0, 0          # piece k, offset ``at`` within it
    for n in sizes:
        if at == 0 and k < len(pieces) and len(pieces[k]) == n:
            files.append(bytes(pieces[k]))   # bytes already: no copy
            k += 1
            continue
        parts = []
        while n > 0:
            piece = pieces[k]
            take = min(n, len(piece) - at)
            parts.append(memoryview(piece)[at:at + take])
            at += take
            n -= take
            if at == len(piece):
                k, at = k + 1, 0
        files.append(b"".join(parts))
    return files


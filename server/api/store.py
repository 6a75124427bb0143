"""The Store servicer: translation only. Unpack the proto, await the store, pack the reply."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2, store_pb2, store_pb2_grpc
from medcompute.server.api.guard import Guard, rpc
from medcompute.server.api.requests import region_ref
from medcompute.server.api.transport import expect_image, header_and_chunks
from medcompute.server.dicom.meta import CONDITIONS
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs.regions import RegionRegistry, write_pieces
from medcompute.server.jobs.validate import within_region
from medcompute.server.storage.images import FindFilter, ImageRecord
from medcompute.server.storage.spool import ExpectedImage
from medcompute.server.store import admin as store_admin
from medcompute.server.store.coding import BLOSC, DICOM, NONE, RAW, ZSTD
from medcompute.server.store.images import METADATA_TEXT_FIELDS, ImageStore
from medcompute.server.store.retrieval import retrieve
from medcompute.server.store.versions import Version, versions_of

__all__ = ["StoreServicer", "image_message", "metadata_from", "metadata_message", "WireCoder",
           "stream_coder", "registration"]

_KINDS = {store_pb2.IMAGE_KIND_UNSPECIFIED: "", store_pb2.IMAGE_KIND_ORIGINAL: "original",
          store_pb2.IMAGE_KIND_DERIVED: "derived"}
_KIND_CODES = {name: code for code, name in _KINDS.items() if name}
# STORED_FORMAT_UNSPECIFIED is the documented default (the store's ""): the voxels, or a
# version's files.
_FORMATS = {store_pb2.STORED_FORMAT_UNSPECIFIED: "", store_pb2.STORED_FORMAT_VOXELS: "voxels",
            store_pb2.STORED_FORMAT_DICOM: "dicom"}
# COMPRESSION_UNSPECIFIED is documented as treated exactly as COMPRESSION_NONE.
_COMPRESSIONS = {image_pb2.COMPRESSION_UNSPECIFIED: NONE, image_pb2.COMPRESSION_NONE: NONE,
                 image_pb2.COMPRESSION_ZSTD: ZSTD, image_pb2.COMPRESSION_BLOSC: BLOSC}
_ENCODING_CODES = {RAW: image_pb2.ENCODING_RAW, DICOM: image_pb2.ENCODING_DICOM}


@dataclass(frozen=True)
class WireCoder:
    """The store's Coder of a Get stream: the wire format's chunks (medcompute.proto.wire)
    in the Compression a caller asked for."""

    compression: str                      # the store's name for it
    code: int                             # the Compression enum value asked for

    def chunks(self, data, *, itemsize: int = 1) -> Iterator[bytes]:
        return wire.iter_chunks(data, compression=self.code, itemsize=itemsize)


def stream_coder(code: int, field: str = "compression") -> WireCoder:
    """The coder of a Compression enum value; InvalidArgument naming ``field`` for a
    value the enum does not have."""
    name = _COMPRESSIONS.get(code)
    if name is None:
        raise InvalidArgument(wire.enum_choices(image_pb2.Compression, code), field)
    return WireCoder(name, code)


async def _payloads(chunks: AsyncIterator) -> AsyncIterator[bytes]:
    async for index, chunk in chunks:
        if chunk.HasField("operand"):
            raise InvalidArgument(f"a registration carries one image and no operands "
                                  f"(leave operand unset); got operand {chunk.operand}",
                                  f"request[{index}].chunk.operand")
        yield chunk.data


def registration(descriptor: image_pb2.ImageDescriptor, chunks: AsyncIterator, *,
                 max_bytes: int) -> tuple[ExpectedImage, AsyncIterator[bytes]]:
    """What a Register call hands the store: the image its descriptor promises
    (``header.image``) and the payloads of its chunks (``chunks`` yields (message index,
    Chunk), as header_and_chunks gives them; a chunk of an operand is refused)."""
    return expect_image(descriptor, "header.image", max_bytes=max_bytes), _payloads(chunks)


def metadata_from(msg: store_pb2.ImageMetadata) -> dict:
    """The metadata a caller gave, as the store's dict (unset fields left out)."""
    meta: dict = {name: getattr(msg, name) for name in METADATA_TEXT_FIELDS
                  if getattr(msg, name)}
    if msg.sop_instance_uids:
        meta["sop_instance_uids"] = list(msg.sop_instance_uids)
    for name in ("window_center", "window_width"):
        if msg.HasField(name):
            meta[name] = getattr(msg, name)
    conditions: dict = {name: getattr(msg.conditions, name) for name in CONDITIONS
                        if msg.conditions.HasField(name)}
    if msg.conditions.other:
        conditions["other"] = dict(msg.conditions.other)
    if conditions:
        meta["conditions"] = conditions
    return meta


def metadata_message(meta: dict) -> store_pb2.ImageMetadata:
    conditions = dict(meta.get("conditions", {}))
    other = conditions.pop("other", {})
    msg = store_pb2.ImageMetadata(
        **{name: meta.get(name, "") for name in METADATA_TEXT_FIELDS},
        sop_instance_uids=meta.get("sop_instance_uids", []),
        conditions=store_pb2.ImagingConditions(**conditions, other=other))
    for name in ("window_center", "window_width"):
        if name in meta:
            setattr(msg, name, meta[name])
    return msg


def version_message(v: Version) -> store_pb2.ImageVersion:
    msg = store_pb2.ImageVersion(
        name=v.name, purpose=v.purpose, lossless=v.lossless, transfer_syntax_uid=v.transfer_syntax,
        compression_ratio=v.ratio, max_error=v.max_error, stored_bytes=v.stored_bytes,
        resolution_levels=v.resolutions)
    if v.configured_ratio is not None:
        msg.configured_ratio = v.configured_ratio
    if v.psnr_db is not None:
        msg.psnr_db = v.psnr_db
    return msg


def image_message(r: ImageRecord) -> store_pb2.StoredImage:
    msg = store_pb2.StoredImage(
        image_id=r.id, owner=r.owner, kind=_KIND_CODES[r.kind],
        metadata=metadata_message(r.metadata), shape=r.shape,
        dtype=wire.dtype_to_proto(r.dtype), spacing_mm=r.spacing or (), size=r.size,
        crc32=r.crc32, dicom_files=len(r.file_sizes), stored_bytes=r.stored_bytes,
        created_at=r.created_at, source_image_id=r.source_id,
        operand_image_ids=r.operand_ids, operations=r.operations, derivation=r.derivation,
        job_id=r.job_id, versions=[version_message(v) for v in versions_of(r)], tier=r.tier)
    if r.expires_at is not None:
        msg.expires_at = r.expires_at
    return msg


def _filter(request: store_pb2.FindRequest) -> FindFilter:
    kind = _KINDS.get(request.kind)
    if kind is None:
        raise InvalidArgument(wire.enum_choices(store_pb2.ImageKind, request.kind), "kind")
    return FindFilter(patient_id=request.patient_id, study_uid=request.study_instance_uid,
                      series_uid=request.series_instance_uid, modality=request.modality,
                      date_from=request.date_from, date_to=request.date_to,
                      registered_by=request.registered_by, kind=kind,
                      source_id=request.source_image_id)


class StoreServicer(store_pb2_grpc.StoreServiceServicer):
    def __init__(self, store: ImageStore, guard: Guard, regions: RegionRegistry):
        self.store = store
        self.guard = guard
        #: Same-host clients' shared-memory regions (jobs/regions.py), for Get.
        self.regions = regions

    @rpc("store.register", "store")
    async def Register(self, request_iterator, context, call):
        header, chunks = await header_and_chunks(request_iterator)
        if not header.HasField("image"):
            raise InvalidArgument("expected the image's descriptor", "header.image")
        expected, payloads = registration(header.image, chunks,
                                          max_bytes=self.store.config.max_image_bytes)
        record, existing, differing = await self.store.register(
            expected, payloads, owner=call.principal.subscriber,
            metadata=metadata_from(header.metadata), retention=header.retention_seconds)
        call.object_id = record.id
        if differing:
            call.detail = "registered before with other metadata: " + ", ".join(differing)
        return store_pb2.RegisterResponse(image=image_message(record), existing=existing,
                                          differing_fields=differing)

    @rpc("store.find", ("store", "receive"))
    async def Find(self, request, context, call):
        records, token = await self.store.find(_filter(request), owner=call.principal.subscriber,
                                               page_size=request.page_size,
                                               page_token=request.page_token)
        return store_pb2.FindResponse(images=[image_message(r) for r in records],
                                   next_page_token=token)

    @rpc("store.get", ("store", "receive"))
    async def Get(self, request, context, call):
        call.object_id = request.image_id
        fmt = _FORMATS.get(request.format)
        if fmt is None:
            raise InvalidArgument(wire.enum_choices(store_pb2.StoredFormat, request.format),
                                  "format")
        coder = stream_coder(request.compression)
        out = self._output_region(request, coder, call.principal.subscriber)
        r = await retrieve(self.store, request.image_id, owner=call.principal.subscriber,
                           coder=coder, fmt=fmt, version=request.version,
                           level=request.resolution_level, header_only=request.header_only)
        if out is not None and out[1].length < r.info.size and not request.header_only:
            await r.payloads.aclose()
            raise InvalidArgument(f"the image's bytes are {r.info.size}; the region's part "
                                  f"holds {out[1].length}", "output_region.length")
        header = store_pb2.GetHeader()
        if r.version is not None:
            header.version.CopyFrom(version_message(r.version))
            header.resolution_level = r.level
            call.detail = f"version {r.version.name}, resolution level {r.level}"
        if r.cold:
            call.detail = ", ".join(filter(None, [call.detail, "served from the cold tier"]))
        header.image.CopyFrom(image_message(r.record))
        header.data.CopyFrom(image_pb2.ImageDescriptor(
            encoding=_ENCODING_CODES[r.info.encoding], shape=r.shape,
            dtype=wire.dtype_to_proto(r.record.dtype), spacing_mm=r.record.spacing or (),
            file_sizes=r.info.file_sizes, compression=coder.code, size=r.info.size,
            crc32=r.info.crc32))
        if request.header_only:
            yield store_pb2.GetResponse(header=header)
            await r.payloads.aclose()
            return
        if out is not None:
            # The bytes go into the client's region first; the header then says they are
            # there (a client reads the region once the header came).
            region, ref = out
            async with contextlib.aclosing(r.payloads):
                await write_pieces(region, ref.offset, ref.length, r.payloads)
            yield store_pb2.GetResponse(header=header)
            await self.store.fetched(r.record, call.principal.subscriber)
            return
        yield store_pb2.GetResponse(header=header)
        async with contextlib.aclosing(r.payloads):
            async for payload in r.payloads:
                response = store_pb2.GetResponse()
                response.chunk.data = payload
                yield response
        await self.store.fetched(r.record, call.principal.subscriber)

    def _output_region(self, request, coder, subscriber: str):
        """(region, ref) of a Get into a shared-memory region, checked, or None."""
        ref = region_ref(request, "output_region")
        if ref is None:
            return None
        if request.version:
            raise InvalidArgument("a shared-memory region takes the image as registered; a "
                                  "version comes as chunks (leave output_region unset)",
                                  "version")
        if coder.compression != NONE:
            raise InvalidArgument("the bytes in a shared-memory region are uncompressed: "
                                  "leave compression unset or NONE", "compression")
        region = self.regions.get(subscriber, ref.region_id, "output_region.region_id")
        within_region(ref, region.size, "output_region")
        return region, ref

    @rpc("store.delete", "store")
    async def Delete(self, request, context, call):
        call.object_id = request.image_id
        freed, derived = await self.store.remove(request.image_id,
                                                 owner=call.principal.subscriber)
        if derived:
            call.detail = f"with {len(derived)} derived image(s)"
        return store_pb2.DeleteResponse(freed_bytes=freed, derived_image_ids=derived)

    @rpc("store.preview", ("store", "receive"))
    async def Preview(self, request, context, call):
        call.object_id = request.image_id
        window = {}
        if request.HasField("window_center"):
            window["center"] = request.window_center
        if request.HasField("window_width"):
            window["width"] = request.window_width
        p = await self.store.preview(request.image_id, owner=call.principal.subscriber,
                                     max_size=request.max_size, **window)
        return store_pb2.PreviewResponse(png=p.png, width=p.width, height=p.height,
                                      rendering=p.rendering)

    @rpc("store.verify", "admin")
    async def Verify(self, request, context, call):
        r = await store_admin.verify(self.store)
        return store_pb2.VerifyResponse(
            images=r.images, blobs=r.blobs, bytes=r.bytes, unreferenced_blobs=r.unreferenced,
            problems=[store_pb2.VerifyProblem(image_id=i, blob=b, problem=p)
                      for i, b, p in r.problems])

    @rpc("store.backup", "admin")
    async def Backup(self, request, context, call):
        r = await store_admin.backup(self.store, request.destination)
        return store_pb2.BackupResponse(destination=r.destination, images=r.images, blobs=r.blobs,
                                     bytes=r.bytes)

    @rpc("store.adopt", "admin")
    async def Adopt(self, request, context, call):
        call.object_id = request.subscriber
        ids = await store_admin.adopt(self.store, request.subscriber, request.from_subscriber)
        return store_pb2.AdoptResponse(image_ids=ids)

    @rpc("store.purge", "admin")
    async def Purge(self, request, context, call):
        r = await store_admin.purge(self.store, dry_run=request.dry_run)
        return store_pb2.PurgeResponse(image_ids=r.image_ids, freed_bytes=r.freed_bytes,
                                    blobs_removed=r.blobs_removed)

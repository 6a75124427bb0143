"""The image store without a cluster: blobs, the catalog (real SQLite files), the store's
domain calls with worker functions run in threads, verify, backup and purge."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2
from medcompute.server.dicom import read as dicom
from medcompute.server.errors import (
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from medcompute.server.storage import blobs
from medcompute.server.storage.blobs import FRAME_BYTES, BlobStore, BlobWriter, VoxelWriter
from medcompute.server.storage.images import FindFilter
from medcompute.server.store import admin as store_admin
from tests import store_helpers

H = store_helpers
ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(60)


async def _put_raw(store, array, *, owner="local", compression=image_pb2.COMPRESSION_NONE,
                   chunk_size=None, **kwargs):
    desc = H.raw_descriptor(array, compression)
    pieces = H.payloads(array, compression, array.dtype.itemsize, chunk_size)
    record, existing, _ = await H.register(store, desc, H.stream(pieces), owner=owner,
                                            **kwargs)
    return record, existing


async def _put_dicom(store, parts, *, owner="local", **kwargs):
    desc = H.dicom_descriptor(parts)
    record, existing, _ = await H.register(store, desc, H.stream(H.payloads(b"".join(parts))),
                                            owner=owner, **kwargs)
    return record, existing


async def _voxels(store, record, compression=image_pb2.COMPRESSION_NONE) -> np.ndarray:
    info, chunks = store.stream(record, "voxels", H.coder(compression))
    decoder = wire.ChunkDecoder(compression, "test")
    data = bytearray()
    async for payload in chunks:
        data += decoder.decode(payload)
    assert len(data) == info.size and wire.crc32(data) == info.crc32
    return np.frombuffer(bytes(data), dtype=record.dtype).reshape(record.shape)


def _files(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*") if p.is_file()}


# -- blobs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["u1", "<i2", "<u2", "<i4", "<f4", "<f8"])
def test_voxel_blob_round_trip_in_frames(tmp_path, dtype):
    rng = np.random.default_rng(1)
    array = (rng.normal(0, 300, size=(3, 301, 517))).astype(dtype)
    with VoxelWriter(tmp_path / "v", array.shape, array.dtype) as w:
        flat = memoryview(array.reshape(-1)).cast("B")
        for start in range(0, len(flat), 700_001):   # pieces unaligned with the frames
            w.add(flat[start:start + 700_001])
        digest, size = w.finish()
    assert (digest, size) == blobs.file_digest(tmp_path / "v")
    assert w.crc32 == wire.crc32(array)
    np.testing.assert_array_equal(blobs.read_voxels(tmp_path / "v"), array)
    decoder = wire.ChunkDecoder(image_pb2.COMPRESSION_BLOSC, "test")  # frames are wire BLOSC chunks
    decoded = [decoder.decode(f) for f in blobs.voxel_frames(tmp_path / "v")]
    assert all(len(d) <= FRAME_BYTES for d in decoded)
    assert b"".join(decoded) == array.tobytes()


def test_voxel_blob_depends_only_on_the_array(tmp_path):
    array = np.arange(3 * FRAME_BYTES // 2, dtype=np.int16).reshape(3, -1)
    digests = []
    for i, step in enumerate((FRAME_BYTES, 12345)):
        with VoxelWriter(tmp_path / f"v{i}", array.shape, array.dtype) as w:
            flat = memoryview(array.reshape(-1)).cast("B")
            for start in range(0, len(flat), step):
                w.add(flat[start:start + step])
            digests.append(w.finish()[0])
    assert digests[0] == digests[1]
    assert blobs.read_voxels(tmp_path / "v0").nbytes == array.nbytes


def test_voxel_writer_refuses_a_wrong_size(tmp_path):
    w = VoxelWriter(tmp_path / "v", (4,), np.int16)
    with pytest.raises(ValueError):
        w.add(b"\0" * 10)
    w.add(b"\0" * 6)
    with pytest.raises(ValueError):
        w.finish()
    w.discard()
    assert not (tmp_path / "v").exists()


def test_blob_is_installed_atomically_under_its_digest(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    tmp = store.new_tmp()
    with BlobWriter(tmp) as w:
        w.write(b"hello")
        digest, size = w.finish()
    final = store.install(tmp, digest)
    assert final == store.path(digest) and final.read_bytes() == b"hello" and not tmp.exists()
    assert list(store.digests()) == [digest] and size == 5
    assert store.remove(digest) == 5 and store.remove(digest) == 0


def test_an_unfinished_blob_writer_leaves_nothing(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(RuntimeError), BlobWriter(store.new_tmp()) as w:
        w.write(b"half")
        raise RuntimeError("the call was cancelled")
    assert _files(store.root) == set()


def test_stale_temporary_files_are_removed(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    mine = store.new_tmp()
    mine.write_bytes(b"in progress")
    dead = store.tmp / f"{mine.name.rsplit('-', 2)[0]}-999999999-abc"
    dead.write_bytes(b"left by a killed process")
    foreign = store.tmp / "otherhost-1-abc"
    foreign.write_bytes(b"another host's write")
    assert store.clear_stale() == 1
    assert mine.exists() and foreign.exists() and not dead.exists()
    old = time.time() - 2 * blobs.STALE_TMP_SECONDS
    os.utime(foreign, (old, old))
    assert store.clear_stale() == 1 and not foreign.exists()


# -- registering ---------------------------------------------------------------------------

def test_raw_array_is_kept_compressed_and_returned_exactly(tmp_path):
    vol = np.random.default_rng(0).integers(-1000, 3000, size=(7, 300, 260)).astype(np.int16)

    meta = {"modality": "CT", "patient_id": "P1", "acquisition_date": "2024-03-05",
            "conditions": {"kvp": 120.0}}

    async def body(store):
        record, existing = await _put_raw(store, vol, metadata=meta, chunk_size=300_001)
        assert not existing and record.kind == "original" and record.owner == "local"
        assert record.shape == vol.shape and record.dtype == "<i2"
        assert record.metadata["acquisition_date"] == "20240305"
        voxels = record.blob("voxels")
        assert voxels.size < vol.nbytes and record.stored_bytes == voxels.size
        for compression in (image_pb2.COMPRESSION_NONE, image_pb2.COMPRESSION_ZSTD,
                            image_pb2.COMPRESSION_BLOSC):
            np.testing.assert_array_equal(await _voxels(store, record, compression), vol)
        again, existing = await _put_raw(store, vol, compression=image_pb2.COMPRESSION_BLOSC,
                                         metadata=meta)
        assert existing and again.id == record.id
        other, existing = await _put_raw(store, vol, owner="someone-else", metadata=meta)
        assert not existing and other.id != record.id   # no id is shared across subscribers
        # The same voxels described otherwise are another image (not merged into this one).
        for metadata in ({"patient_id": "P2"}, {**record.metadata, "modality": "MR"}):
            other, existing = await _put_raw(store, vol, metadata=metadata)
            assert not existing and other.id != record.id
        assert other.blob("voxels").digest == voxels.digest       # one blob file for all
        assert blobs.read_voxels(store.blobs.path(voxels.digest)).shape == vol.shape
        return record

    H.with_store(tmp_path, body)


def test_a_raw_instance_uid_identifies_the_instance(tmp_path):
    async def body(store):
        meta = {"sop_instance_uids": ["1.2.3.4"]}
        a, _ = await _put_raw(store, np.zeros((4, 4), np.uint8), metadata=meta)
        b, existing = await _put_raw(store, np.ones((4, 4), np.uint8), metadata=meta)
        assert existing and a.id == b.id
        with pytest.raises(InvalidArgument) as caught:
            await _put_raw(store, np.zeros((4, 4), np.uint8),
                           metadata={"sop_instance_uids": ["1", "2"]})
        assert caught.value.field == "header.metadata.sop_instance_uids"
        with pytest.raises(InvalidArgument) as caught:
            await _put_raw(store, np.zeros((4, 4), np.uint8),
                           metadata={"acquisition_date": "5 March"})
        assert caught.value.field == "header.metadata.acquisition_date"

    H.with_store(tmp_path, body)


def test_ct_file_keeps_its_bytes_metadata_and_conditions(tmp_path):
    original = H.data_of("CT_small.dcm")
    expected, _ = dicom.decode([original])

    async def body(store):
        record, existing = await _put_dicom(store, [original])
        assert not existing and record.file_sizes == (len(original),)
        m = record.metadata
        source = pydicom.dcmread(H.CT)
        assert m["modality"] == "CT" and m["patient_id"] == source.PatientID
        assert m["study_instance_uid"] == source.StudyInstanceUID
        assert m["series_instance_uid"] == source.SeriesInstanceUID
        assert m["sop_instance_uids"] == [source.SOPInstanceUID]
        assert m["acquisition_date"] == "19970430"
        assert (m["manufacturer"], m["device_model"]) == ("GE MEDICAL SYSTEMS", "RHAPSODE")
        c = m["conditions"]
        assert (c["kvp"], c["tube_current_ma"], c["exposure_mas"]) == (120.0, 170.0, 170.0)
        assert c["exposure_time_ms"] == 1601.0 and c["slice_thickness_mm"] == 5.0
        assert c["other"]["ConvolutionKernel"] == "STANDARD"
        np.testing.assert_array_equal(await _voxels(store, record), expected)
        info, chunks = store.stream(record, "dicom", H.coder(image_pb2.COMPRESSION_ZSTD))
        decoder = wire.ChunkDecoder(image_pb2.COMPRESSION_ZSTD, "test")
        got = b"".join([decoder.decode(p) async for p in chunks])
        assert got == original and info.crc32 == wire.crc32(original)
        again, existing = await _put_dicom(store, [original])
        assert existing and again.id == record.id

    H.with_store(tmp_path, body)


def test_mr_conditions(tmp_path):
    async def body(store):
        record, _ = await _put_dicom(store, [H.mr_with_conditions()])
        c = record.metadata["conditions"]
        assert (c["repetition_time_ms"], c["echo_time_ms"], c["flip_angle_deg"]) == \
            (4000.0, 240.0, 90.0)
        assert c["field_strength_t"] == 1.5 and c["inversion_time_ms"] == 300.0
        assert c["other"]["ScanningSequence"] == "SE"
        assert record.metadata["window_center"] == 600.0

    H.with_store(tmp_path, body)


def test_series_files_become_one_volume(tmp_path):
    parts = H.ct_series(5)
    shuffled = [parts[i] for i in (3, 0, 4, 1, 2)]

    async def body(store):
        record, _ = await _put_dicom(store, shuffled)
        assert record.shape == (5, 128, 128) and record.spacing[0] == pytest.approx(2.5)
        vol = await _voxels(store, record)
        np.testing.assert_allclose(np.diff(vol.mean(axis=(1, 2))), 10.0)
        assert record.metadata["conditions"]["tube_current_ma"] == pytest.approx(140.0)
        sops = [pydicom.dcmread(io.BytesIO(p)).SOPInstanceUID for p in parts]
        assert record.metadata["sop_instance_uids"] == sops   # in slice order
        again, existing = await _put_dicom(store, parts)   # the same instances, other order
        assert existing and again.id == record.id

    H.with_store(tmp_path, body)


def test_a_series_decoded_in_shares_is_the_series_decoded_whole(tmp_path, monkeypatch):
    # 70 slices of 128x128 int16: three shares on three workers (32, 32 and 6 slices).
    from medcompute.server.store import images

    decoded = []
    share = images.ingest_dicom_share

    def counted(*args, **kwargs):
        decoded.append(args[3])                        # the share's index
        return share(*args, **kwargs)
    monkeypatch.setattr(images, "ingest_dicom_share", counted)
    parts = H.ct_series(70)
    shuffled = parts[35:] + parts[:35]
    expected, _ = dicom.decode(parts)

    def put(workers):
        async def body(store):
            record, _ = await _put_dicom(store, shuffled)
            assert not list(store.blobs.root.rglob("*.share*"))     # the parts are gone
            return record, await _voxels(store, record)
        return H.with_store(tmp_path / f"w{workers}", body, workers=workers)

    (one, whole), (three, shared) = put(1), put(3)
    assert sorted(decoded) == [0, 1, 2]                     # only with three workers
    assert np.array_equal(shared, expected) and np.array_equal(whole, expected)
    assert three.blob("voxels") == one.blob("voxels")     # the same blob, byte for byte
    assert three.crc32 == one.crc32 and three.shape == one.shape == (70, 128, 128)


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_jp2klossless.dcm", "JPGExtended.dcm",
                                  "693_J2KI.dcm", "rtdose_rle.dcm"])
def test_compressed_transfer_syntaxes_are_decoded(tmp_path, name):
    data = H.data_of(name)
    expected, _ = dicom.decode([data])

    async def body(store):
        record, _ = await _put_dicom(store, [data])
        np.testing.assert_array_equal(await _voxels(store, record), expected)

    H.with_store(tmp_path, body)


def test_jpeg_lossless_is_decoded(tmp_path):
    data = H.jpeg_lossless_ct()
    expected, _ = dicom.decode([H.data_of("CT_small.dcm")])

    async def body(store):
        record, _ = await _put_dicom(store, [data])
        np.testing.assert_array_equal(await _voxels(store, record), expected)

    H.with_store(tmp_path, body)


BAD = {
    "truncated": (lambda: [H.truncated()], "truncated"),
    "bad VR": (lambda: [H.bad_vr()], "NumberOfFrames (0028,0008)"),
    "no pixel data": (lambda: [H.no_pixel_data()], "has no Pixel Data"),
    "pixel data length": (lambda: [H.short_pixel_data()], "Rows x Columns x NumberOfFrames"),
    "absurd dimensions": (lambda: [H.absurd_dimensions()], "absurd image size"),
    "deflate bomb": (lambda: [H.deflate_bomb()], "inflates to more than"),
    "mixed series": (H.mixed_series, "2 different series"),
    # The instance validator (dicom/instance.py), as over DICOM C-STORE:
    "no series uid": (lambda: [H.changed_ct(SeriesInstanceUID=None)], "SeriesInstanceUID"),
    "no study uid": (lambda: [H.changed_ct(StudyInstanceUID=None)], "StudyInstanceUID"),
    "invalid sop uid": (lambda: [H.changed_ct(SOPInstanceUID="1.02.3")], "SOPInstanceUID"),
    "negative spacing": (lambda: [H.changed_ct(PixelSpacing=[-1, 0])], "PixelSpacing"),
    "zero orientation": (lambda: [H.changed_ct(ImageOrientationPatient=[0] * 6)],
                         "ImageOrientationPatient"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_dicom_is_refused_and_leaves_nothing(tmp_path, case):
    make, words = BAD[case]

    async def body(store):
        kept, _ = await _put_dicom(store, [H.data_of("MR_small.dcm")])
        before = _files(store.blobs.root)
        with pytest.raises(InvalidArgument) as caught:
            await _put_dicom(store, make())
        assert caught.value.field.startswith("header.image"), caught.value.details
        assert words in caught.value.message, caught.value.details
        assert "SENTINEL" not in caught.value.details
        assert _files(store.blobs.root) == before      # no half-written blob, no tmp file
        assert await store.catalog.count() == 1
        assert (await store_admin.verify(store)).ok
        assert (await store.get(kept.id, owner="local")).id == kept.id

    # A small voxel limit bounds how far a deflated file is inflated (the bomb case).
    H.with_store(tmp_path, body, max_voxels=1 << 20)


def test_over_the_limits_is_resource_exhausted(tmp_path):
    async def body(store):
        desc = image_pb2.ImageDescriptor(encoding=image_pb2.ENCODING_RAW, shape=[65535, 65535,
                                                                                 65535],
                                         dtype=image_pb2.DATA_TYPE_INT16)
        with pytest.raises(ResourceExhausted):
            await H.register(store, desc, H.stream([]), owner="local")
        with pytest.raises(ResourceExhausted):
            await _put_raw(store, np.zeros((40, 40), np.uint8))

    H.with_store(tmp_path, body, max_voxels=1000)


@pytest.mark.parametrize("mistake", ["short", "long", "crc", "chunk image"])
def test_a_stream_that_breaks_its_descriptor_leaves_nothing(tmp_path, mistake):
    vol = np.arange(3000, dtype=np.int16)

    async def body(store):
        desc = H.raw_descriptor(vol)
        pieces = H.payloads(vol, chunk_size=1000)
        image = 0
        if mistake == "short":
            pieces = pieces[:-1]
        elif mistake == "long":
            pieces = pieces + [b"\0\0"]
        elif mistake == "crc":
            desc.crc32 ^= 1
        else:
            image = 1
        with pytest.raises(InvalidArgument):
            await H.register(store, desc, H.stream(pieces, image=image), owner="local")
        assert _files(store.blobs.root) == set() and await store.catalog.count() == 0

    H.with_store(tmp_path, body)


def test_a_cancelled_upload_leaves_nothing(tmp_path):
    async def body(store):
        started = asyncio.Event()

        async def chunks():
            yield 1, image_pb2.Chunk(data=b"\1" * 1000)
            started.set()
            await asyncio.Event().wait()   # the client goes silent, then disconnects

        desc = H.raw_descriptor(np.zeros(100_000, np.uint8))
        task = asyncio.create_task(H.register(store, desc, chunks(), owner="local"))
        await started.wait()
        await store.wait_receiving()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.wait_idle()
        assert _files(store.blobs.root) == set() and await store.catalog.count() == 0

    H.with_store(tmp_path, body)


# -- find, get, delete ---------------------------------------------------------------------

def test_find_filters_and_pages(tmp_path):
    async def body(store):
        ids = []
        for k in range(7):
            meta = {"modality": "CT" if k % 2 else "MR", "patient_id": f"P{k % 3}",
                    "acquisition_date": f"2024010{k + 1}", "study_instance_uid": f"1.2.{k % 2}"}
            record, _ = await _put_raw(store, np.full((2, 2), k, np.uint8), metadata=meta)
            ids.append(record.id)
        await _put_raw(store, np.full((2, 2), 99, np.uint8), owner="other",
                       metadata={"patient_id": "P0"})

        async def find(**kw):
            page_size = kw.pop("page_size", 0)
            found, _ = await store.find(FindFilter(**kw), owner="local", page_size=page_size)
            return [r.id for r in found]

        assert await find() == ids                                   # oldest first, own only
        assert await find(patient_id="P0") == [ids[0], ids[3], ids[6]]
        assert await find(modality="CT") == ids[1::2]
        assert await find(study_uid="1.2.1", patient_id="P1") == [ids[1]]
        assert await find(date_from="20240103", date_to="2024-01-05") == ids[2:5]
        assert await find(registered_by="local") == ids
        assert await find(registered_by="other") == []
        assert await find(kind="derived") == []
        pages, token = [], ""
        while True:
            page, token = await store.find(FindFilter(), owner="local", page_size=3,
                                           page_token=token)
            pages.append([r.id for r in page])
            if not token:
                break
        assert pages == [ids[:3], ids[3:6], ids[6:]]
        for bad in ({"page_token": "nonsense"}, {"page_size": 5000}):
            with pytest.raises(InvalidArgument):
                await store.find(FindFilter(), owner="local", **bad)
        with pytest.raises(InvalidArgument) as caught:
            await store.find(FindFilter(date_from="March"), owner="local")
        assert caught.value.field == "date_from"

    H.with_store(tmp_path, body)


def test_another_subscribers_image_is_not_found(tmp_path):
    async def body(store):
        record, _ = await _put_raw(store, np.zeros((3, 3), np.uint8), owner="alice")
        for call in (store.get(record.id, owner="bob"), store.delete(record.id, owner="bob"),
                     store.preview(record.id, owner="bob"), store.get("nope", owner="alice")):
            with pytest.raises(NotFound):
                await call
        assert (await store.get(record.id, owner="alice")).id == record.id

    H.with_store(tmp_path, body)


def test_delete_removes_the_row_and_unshared_blobs(tmp_path):
    vol = np.arange(5000, dtype=np.int32)

    async def body(store):
        a, _ = await _put_raw(store, vol, owner="alice")
        b, _ = await _put_raw(store, vol, owner="bob")        # the same blob, two rows
        ct, _ = await _put_dicom(store, [H.data_of("CT_small.dcm")])
        assert a.blob("voxels").digest == b.blob("voxels").digest
        assert await store.delete(a.id, owner="alice") == 0  # bob still uses the blob
        assert store.blobs.path(b.blob("voxels").digest).exists()
        assert await store.delete(b.id, owner="bob") == b.stored_bytes
        assert not store.blobs.path(b.blob("voxels").digest).exists()
        assert await store.delete(ct.id, owner="local") == ct.stored_bytes
        assert set(store.blobs.digests()) == set() and await store.catalog.count() == 0
        with pytest.raises(NotFound):
            await store.delete(ct.id, owner="local")

    H.with_store(tmp_path, body)


def test_remove_many_removes_each_in_one_transaction_and_skips_the_missing(tmp_path):
    async def body(store):
        a, _ = await _put_raw(store, np.arange(5000, dtype=np.int32))
        b, _ = await _put_raw(store, np.arange(6000, dtype=np.int16))
        ct, _ = await _put_dicom(store, [H.data_of("CT_small.dcm")])
        other, _ = await _put_raw(store, np.arange(7000, dtype=np.int16), owner="bob")
        writes = store.catalog.db.committed_writes
        freed = await store.remove_many([a.id, "img-missing", b.id, ct.id, other.id],
                                        owner="local")
        assert freed == a.stored_bytes + b.stored_bytes + ct.stored_bytes
        assert set(store.blobs.digests()) == {other.blob("voxels").digest}  # bob's stays
        assert await store.catalog.count() == 1
        for image in (a, b, ct):
            with pytest.raises(NotFound):
                await store.get(image.id, owner="local")
        # The rows in one write, the blobs no row refers to in one more.
        assert store.catalog.db.committed_writes - writes == 2

    H.with_store(tmp_path, body)


# -- previews ------------------------------------------------------------------------------

def _png(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_previews_are_windowed_projected_and_cached(tmp_path):
    async def body(store):
        ct, _ = await _put_dicom(store, [H.data_of("CT_small.dcm")])
        p = await store.preview(ct.id, owner="local")
        assert "window centre 40 width 400 (CT soft tissue)" in p.rendering
        assert _png(p.png).shape == (p.height, p.width) == (128, 128)
        ct = await store.get(ct.id, owner="local")
        assert ct.blob("preview") is not None                     # kept with the image
        again = await store.preview(ct.id, owner="local")
        assert again == p
        small = await store.preview(ct.id, owner="local", max_size=64, center=0, width=2000)
        assert (small.width, small.height) == (64, 64) and "(requested)" in small.rendering
        series, _ = await _put_dicom(store, H.ct_series(4))
        mip = await store.preview(series.id, owner="local")
        assert "maximum intensity projection over axis 0" in mip.rendering
        big = np.random.default_rng(2).random((600, 300), np.float32)
        raw, _ = await _put_raw(store, big)
        p = await store.preview(raw.id, owner="local")
        assert (p.width, p.height) == (128, 256) and "percentile" in p.rendering
        for bad in ({"max_size": 5}, {"center": 1.0}):
            with pytest.raises(InvalidArgument):
                await store.preview(raw.id, owner="local", **bad)
        assert (await store_admin.verify(store)).ok

    H.with_store(tmp_path, body)


# -- durability: verify, backup, purge, reopen ---------------------------------------------

def test_catalog_is_wal_with_full_sync(tmp_path):
    async def body(store):
        db = store.catalog.db.connection
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2

    H.with_store(tmp_path, body)


_DURABILITY_ORDER = """
import asyncio, json, os, sys
from pathlib import Path
import numpy as np
import tests.store_helpers as H

events = []
real_fsync, real_replace = os.fsync, os.replace

def fsync(fd):
    events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
    real_fsync(fd)

def replace(src, dst):
    events.append(("rename", str(dst)))
    real_replace(src, dst)

async def body(store):
    array = np.arange(1000, dtype=np.int16)
    desc = H.raw_descriptor(array)
    pieces = H.payloads(array, itemsize=2)
    os.fsync, os.replace = fsync, replace
    try:
        record, _, _ = await H.register(store, desc, H.stream(pieces), owner="local")
    finally:
        os.fsync, os.replace = real_fsync, real_replace
    return str(store.blobs.path(record.blob("voxels").digest)), str(store.catalog.path)

final, catalog = H.with_store(sys.argv[1], body)
print(json.dumps({"events": events, "final": final, "catalog": catalog}))
"""


def test_a_blob_is_synced_renamed_and_its_folder_synced_before_the_row_commits(tmp_path):
    """os.fsync and os.replace are wrapped to record their order: in an interpreter of the
    test's own, so that no other server of this test run ever sees the wrapped functions."""
    done = subprocess.run([sys.executable, "-c", _DURABILITY_ORDER, str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    events, final = [tuple(e) for e in seen["events"]], seen["final"]
    blob_events = [e for e in events if "blobs" in e[1]]
    assert blob_events[0][0] == "fsync" and "/blobs/tmp/" in blob_events[0][1]  # the file
    assert ("rename", final) in blob_events
    after = blob_events[blob_events.index(("rename", final)) + 1:]
    assert ("fsync", str(Path(final).parent)) in after                    # its folder
    # Committed when register returns: another connection sees the row.
    other = sqlite3.connect(seen["catalog"])
    assert other.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 1
    other.close()


def test_verify_finds_damaged_and_missing_blobs(tmp_path):
    async def body(store):
        a, _ = await _put_raw(store, np.arange(4000, dtype=np.int16))
        b, _ = await _put_dicom(store, [H.data_of("CT_small.dcm")])
        report = await store_admin.verify(store)
        assert report.ok and (report.images, report.blobs) == (2, 3)
        path = store.blobs.path(b.blob("dicom").digest)
        data = bytearray(path.read_bytes())
        data[1000] ^= 0xFF
        path.write_bytes(bytes(data))
        store.blobs.path(a.blob("voxels").digest).unlink()
        report = await store_admin.verify(store)
        problems = {(i, p) for i, _, p in report.problems}
        assert problems == {(a.id, "missing"),
                            (b.id, "checksum mismatch: the file's SHA-256 is not its name")}
        with pytest.raises(Internal) as caught:
            store.stream(a, "voxels", H.coder(image_pb2.COMPRESSION_NONE))
        assert "store verify" in caught.value.message

    H.with_store(tmp_path, body)


def test_backup_is_a_store_that_serves_the_same_images(tmp_path):
    vol = np.random.default_rng(3).integers(0, 4000, (5, 64, 64)).astype(np.uint16)
    dest = tmp_path / "copy"

    async def body(store):
        raw, _ = await _put_raw(store, vol)
        ct, _ = await _put_dicom(store, [H.data_of("CT_small.dcm")])
        report = await store_admin.backup(store, str(dest))
        assert (report.images, report.blobs) == (2, 3)
        with pytest.raises(FailedPrecondition) as caught:     # not over an existing backup
            await store_admin.backup(store, str(dest))
        assert "exists and is not an empty folder" in caught.value.message
        with pytest.raises(InvalidArgument):
            await store_admin.backup(store, "relative/path")
        return raw, ct

    raw, ct = H.with_store(tmp_path / "data", body)

    async def check(copy):
        for record in (raw, ct):
            got = await copy.get(record.id, owner="local")
            assert got.metadata == record.metadata and got.blobs == record.blobs
        np.testing.assert_array_equal(await _voxels(copy, raw), vol)
        assert (await store_admin.verify(copy)).ok

    H.with_store(dest, check)
    jobs = sqlite3.connect(dest / "catalog.sqlite3").execute(
        "SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    assert {"images", "image_blobs"} <= {n for (n,) in jobs}


def test_deletion_during_a_backup_waits_for_it(tmp_path):
    async def body(store):
        record, _ = await _put_raw(store, np.arange(100, dtype=np.uint8))
        digest = record.blob("voxels").digest
        store._backups += 1                 # as while store_admin.backup copies blobs
        assert await store.delete(record.id, owner="local") == 0
        assert store.blobs.path(digest).exists()
        store._backups -= 1
        report = await store_admin.backup(store, str(tmp_path / "b"))
        assert report.images == 0 and not store.blobs.path(digest).exists()

    H.with_store(tmp_path / "data", body)


def test_purge_deletes_expired_images_and_reports_what_it_freed(tmp_path):
    async def body(store):
        keep, _ = await _put_raw(store, np.zeros(10, np.uint8))
        old, _ = await _put_raw(store, np.ones(1000, np.uint8), retention=60)
        assert old.expires_at == pytest.approx(time.time() + 60, abs=5)
        report = await store_admin.purge(store)
        assert report.image_ids == []
        later = time.time() + 120
        dry = await store_admin.purge(store, now=later, dry_run=True)
        assert dry.image_ids == [old.id] and dry.freed_bytes == old.stored_bytes
        assert await store.catalog.count() == 2
        report = await store_admin.purge(store, now=later)
        assert report.image_ids == [old.id] and report.freed_bytes == old.stored_bytes
        assert report.blobs_removed == 1
        assert [r.id for r in (await store.find(FindFilter(), owner="local"))[0]] == [keep.id]

    H.with_store(tmp_path, body)


def test_the_periodic_task_purges(tmp_path):
    async def body(store):
        old, _ = await _put_raw(store, np.ones(10, np.uint8), retention=1)
        store.catalog.db.connection.execute("UPDATE images SET expires_at = 0 WHERE id = ?",
                                            (old.id,))
        await store_admin.maintain(store, 0, rounds=1)
        assert await store.catalog.count() == 0

    H.with_store(tmp_path, body)


def test_reopening_sweeps_what_an_interrupted_write_left(tmp_path):
    async def body(store):
        record, _ = await _put_raw(store, np.arange(64, dtype=np.uint8))
        # A blob renamed into place whose row was never committed, and a temporary file
        # of a process that is gone.
        orphan = store.blobs.path("ab" + "0" * 62)
        orphan.parent.mkdir(exist_ok=True)
        orphan.write_bytes(b"orphan")
        name = store.blobs.new_tmp().name.rsplit("-", 2)[0]
        (store.blobs.tmp / f"{name}-999999999-x").write_bytes(b"partial")
        return record

    record = H.with_store(tmp_path, body)

    async def reopened(store):
        assert list(store.blobs.digests()) == [record.blob("voxels").digest]
        assert list(store.blobs.tmp.iterdir()) == []
        assert (await store.get(record.id, owner="local")).id == record.id

    H.with_store(tmp_path, reopened)


# -- pure parts ----------------------------------------------------------------------------

def test_preview_flattening_and_windows():
    from medcompute.server.worker import preview

    vol = np.zeros((2, 3, 4, 5))
    vol[1, 2, 3, 4] = 7
    flat, what = preview.flatten(vol)
    assert flat.shape == (4, 5) and flat[3, 4] == 7 and what.endswith("axes 0, 1")
    assert preview.flatten(np.arange(6))[0].shape == (1, 6)
    w = preview.choose_window(np.arange(1000.0), modality="MR")
    assert w.source == "percentile" and w.center == pytest.approx(499.5)
    assert preview.choose_window(np.zeros(4), modality="CT").source == "CT soft tissue"
    assert preview.choose_window(np.zeros(4), modality="CT", original=False).source == \
        "percentile"
    assert preview.choose_window(np.zeros(4), image_window=(1, 2)).source == "image"
    assert preview.choose_window(np.full(4, np.nan, np.float32)).width == 1.0
    p = preview.render(np.full((40, 10), 3.0), max_size=20)
    assert (p.width, p.height) == (5, 20) and p.png.startswith(b"\x89PNG")
    with pytest.raises(ValueError):
        preview.render(np.zeros((4, 4)), max_size=4096)


def test_derivation_key_names_inputs_pipeline_and_options():
    from medcompute.client.ops import parse_op
    from medcompute.proto.v1 import processing_pb2 as pb
    from medcompute.server.api.requests import process_request
    from medcompute.server.jobs.derived import derivation_key

    def header(*ops, **options):
        return process_request(pb.ProcessHeader(pipeline=[parse_op(o) for o in ops], **options),
                               max_image_bytes=1, template=True)

    key = derivation_key(header("gaussian:sigma=1"), ["a"])
    assert key == derivation_key(header("gaussian:sigma=1"), ["a"])
    for other in (derivation_key(header("gaussian:sigma=2"), ["a"]),
                  derivation_key(header("gaussian:sigma=1"), ["b"]),
                  derivation_key(header("gaussian:sigma=1"), ["a", "c"]),
                  derivation_key(header("gaussian:sigma=1", "mip"), ["a"]),
                  derivation_key(header("gaussian:sigma=1", output_dtype=image_pb2.DATA_TYPE_INT16),
                                 ["a"]),
                  derivation_key(header("gaussian:sigma=1", device=pb.DEVICE_CPU), ["a"])):
        assert other != key
    # Options left at their defaults and given explicitly are the same request.
    assert derivation_key(header("gaussian:sigma=1", output_dtype=image_pb2.DATA_TYPE_FLOAT32),
                          ["a"]) == key

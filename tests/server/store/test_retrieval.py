"""What a Get call sends (store/retrieval.py) against a real store (SQLite catalog, blob
files, worker functions in threads): originals and versions, resolution levels and the
shape sent, the study's reading status, header-only calls, and the tier a read counts on."""

from __future__ import annotations

import numpy as np
import pytest

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2
from medcompute.server.errors import FailedPrecondition, InvalidArgument, NotFound
from medcompute.server.store.coding import DICOM, RAW, ZSTD
from medcompute.server.store.retrieval import retrieve
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(120)
NONE = H.coder()


async def _ct(store, owner="alice"):
    parts = [H.data_of("CT_small.dcm")]
    record, _, _ = await H.register(store, H.dicom_descriptor(parts),
                                    H.stream(H.payloads(b"".join(parts))), owner=owner)
    return record


async def _data(r, compression=image_pb2.COMPRESSION_NONE) -> bytes:
    decoder = wire.ChunkDecoder(compression, "test")
    data = b"".join([bytes(decoder.decode(p)) async for p in r.payloads])
    assert len(data) == r.info.size and wire.crc32(data) == r.info.crc32
    return data


def test_the_original_voxels_by_default_and_its_dicom_files(tmp_path):
    async def body(store):
        ct = await _ct(store)
        r = await retrieve(store, ct.id, owner="alice", coder=NONE)
        assert (r.info.encoding, r.version, r.level, r.cold) == (RAW, None, 0, False)
        assert r.shape == tuple(ct.shape) and r.record.id == ct.id
        voxels = np.frombuffer(await _data(r), dtype=ct.dtype).reshape(ct.shape)
        assert voxels.shape == tuple(ct.shape)
        r = await retrieve(store, ct.id, owner="alice", fmt="dicom",
                           coder=H.coder(image_pb2.COMPRESSION_ZSTD))
        assert (r.info.encoding, r.info.compression) == (DICOM, ZSTD)
        assert await _data(r, image_pb2.COMPRESSION_ZSTD) == H.data_of("CT_small.dcm")
        assert r.info.file_sizes == ct.file_sizes
        assert store.tiers.reads == {"hot": 2, "cold": 0}
        with pytest.raises(NotFound):
            await retrieve(store, ct.id, owner="bob", coder=NONE)

    H.with_store(tmp_path, body)


def test_a_version_cut_to_a_resolution_level(tmp_path):
    async def body(store):
        ct = await _ct(store)
        r = await retrieve(store, ct.id, owner="alice", version="archive", coder=NONE)
        assert r.version.name == "lossless" and r.info.encoding == DICOM
        # the version made now counts in the image's stored bytes
        assert r.record.stored_bytes == ct.stored_bytes + r.version.stored_bytes
        assert r.shape == tuple(ct.shape)
        await r.payloads.aclose()
        r = await retrieve(store, ct.id, owner="alice", version="lossless", level=1,
                           fmt="dicom", coder=NONE)
        rows, cols = ct.shape[-2:]
        assert r.level == 1 and r.shape == tuple(ct.shape[:-2]) + ((rows + 1) // 2,
                                                                     (cols + 1) // 2)
        assert len(await _data(r)) < r.version.stored_bytes

    H.with_store(tmp_path, body)


def test_what_a_request_may_not_ask(tmp_path):
    async def body(store):
        ct = await _ct(store)
        with pytest.raises(InvalidArgument) as caught:
            await retrieve(store, ct.id, owner="alice", level=1, coder=NONE)
        assert caught.value.field == "resolution_level"
        with pytest.raises(InvalidArgument) as caught:
            await retrieve(store, ct.id, owner="alice", version="review", fmt="voxels",
                           coder=NONE)
        assert caught.value.field == "format"
        with pytest.raises(InvalidArgument) as caught:
            await retrieve(store, ct.id, owner="alice", version="sharp", coder=NONE)
        assert caught.value.field == "version"

    H.with_store(tmp_path, body)


def test_the_reading_status_is_checked_unless_only_the_header_is_asked(tmp_path):
    async def body(store):
        ct = await _ct(store)
        with pytest.raises(FailedPrecondition) as caught:
            await retrieve(store, ct.id, owner="alice", version="review", coder=NONE)
        assert "'unread'" in caught.value.message
        r = await retrieve(store, ct.id, owner="alice", version="review", coder=NONE,
                           header_only=True)
        await r.payloads.aclose()
        assert r.version.name == "review" and not r.cold
        assert store.tiers.reads == {"hot": 0, "cold": 0}      # a header reads no data
        uid = ct.metadata["study_instance_uid"]
        await store.studies.set("alice", uid, "read", by="alice")
        r = await retrieve(store, ct.id, owner="alice", version="review", coder=NONE)
        await r.payloads.aclose()
        assert store.tiers.reads == {"hot": 1, "cold": 0}

    H.with_store(tmp_path, body, status_rules={"unread": ("original", "lossless")})


def test_a_read_from_the_cold_tier_is_counted_there(tmp_path):
    async def body(store):
        ct = await _ct(store)
        await store.tiers.move_image(ct, "cold")
        r = await retrieve(store, ct.id, owner="alice", fmt="dicom", coder=NONE)
        assert r.cold and await _data(r) == H.data_of("CT_small.dcm")
        r = await retrieve(store, ct.id, owner="alice", version="review", coder=NONE)
        await r.payloads.aclose()
        assert not r.cold                          # lossy versions stay hot
        assert store.tiers.reads == {"hot": 1, "cold": 1}

    H.with_store(tmp_path, body, cold_dir=tmp_path / "cold")

"""The refusals of a move between storage tiers (store/tiers.py), against a real store
with a cold folder: no cold tier, a hot blob that no longer matches its checksum, and a
copy in the other tier that does not read back as the blob."""

from __future__ import annotations

import os

import numpy as np
import pytest

from medcompute.server.errors import FailedPrecondition
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(120)

VOL = np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8)


async def _put(store):
    record, _, _ = await H.register(store, H.raw_descriptor(VOL),
                                    H.stream(H.payloads(VOL.tobytes())), owner="alice")
    return record


def _overwrite(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.chmod(path, 0o644)
    path.write_bytes(data)


def test_a_server_without_a_cold_tier_refuses_a_move(tmp_path):
    async def body(store):
        record = await _put(store)
        with pytest.raises(FailedPrecondition) as info:
            await store.tiers.move_image(record, "cold")
        assert info.value.field == "tier"
        assert info.value.message == ("this server has no cold tier (start it with "
                                      "--cold-dir)")
        return True
    assert H.with_store(tmp_path / "data", body)


def test_a_hot_blob_that_no_longer_matches_its_checksum_is_not_moved(tmp_path):
    async def body(store):
        record = await _put(store)
        digest = record.blob("voxels").digest
        _overwrite(store.blobs.hot.path(digest), b"\0" * 512)     # bit rot on the hot disk
        with pytest.raises(FailedPrecondition) as info:
            await store.tiers.move_image(record, "cold")
        assert info.value.field == "image_id"
        assert f"copy of blob {digest} does not match its checksum; run `medcompute store " \
            "verify`" in info.value.message
        assert not store.blobs.cold.path(digest).exists()
        assert (await store.get(record.id, owner="alice")).tier == "hot"
        return True
    assert H.with_store(tmp_path / "data", body, cold_dir=tmp_path / "cold")


def test_a_copy_in_the_target_tier_that_reads_back_differently_is_removed(tmp_path):
    async def body(store):
        record = await _put(store)
        digest = record.blob("voxels").digest
        stale = store.blobs.cold.path(digest)
        _overwrite(stale, b"left by an earlier move, damaged")
        with pytest.raises(FailedPrecondition) as info:
            await store.tiers.move_image(record, "cold")
        assert info.value.field == "image_id"
        assert info.value.message == (f"the copy of blob {digest} in the cold tier did not "
                                      "read back the same; nothing was moved")
        assert not stale.exists()
        assert (await store.get(record.id, owner="alice")).tier == "hot"
        # the damaged copy gone, the move succeeds
        moved, _ = await store.tiers.move_image(record, "cold")
        assert moved >= 1
        return True
    assert H.with_store(tmp_path / "data", body, cold_dir=tmp_path / "cold")

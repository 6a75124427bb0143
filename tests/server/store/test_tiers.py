"""Storage tiers against a real store (SQLite catalog, blob files in a hot and a cold
folder; worker functions in threads): moves and recalls, reads from either tier, usage and
the ledger per tier, the policy, deletes reaching both tiers, and the start-up recovery of
every state an interrupted move can leave."""

from __future__ import annotations

import socket
import time

import pytest

from medcompute.server.errors import FailedPrecondition, InvalidArgument, NotFound
from medcompute.server.store import admin as store_admin
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(120)
NONE = H.coder()   # COMPRESSION_NONE


async def _register(store, name, owner="alice"):
    parts = [H.data_of(name)]
    record, _, _ = await H.register(store, H.dicom_descriptor(parts),
                                    H.stream(H.payloads(b"".join(parts))), owner=owner)
    return record


async def _read(store, record, fmt):
    _, payloads = store.stream(record, fmt, NONE)
    return b"".join([p async for p in payloads])


def _files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and p.parent.name != "tmp")


def test_move_to_cold_read_and_recall(tmp_path):
    cold = tmp_path / "cold"

    async def body(store):
        ct = await _register(store, "CT_small.dcm")
        mr = await _register(store, "MR_small.dcm")
        for name in ("lossless", "review"):
            await store.versions.get(ct, store.versions.resolve(name))
        ct = await store.get(ct.id, owner="alice")
        voxels, dicom = await _read(store, ct, "voxels"), await _read(store, ct, "dicom")
        moved, size = await store.tiers.move_image(ct, "cold")
        ct = await store.get(ct.id, owner="alice")
        assert moved == 3 and size == sum(ct.blob(r).size for r in
                                          ("dicom", "voxels", "version:lossless"))
        assert ct.tier == "cold" and ct.blob("version:review").tier == "hot"
        assert sorted(_files(cold / "blobs")) == sorted(
            ct.blob(r).digest for r in ("dicom", "voxels", "version:lossless"))
        assert store.blobs.tier_of_file(ct.blob("dicom").digest) == "cold"
        # reads are served from cold, the same bytes
        assert await _read(store, ct, "voxels") == voxels
        assert await _read(store, ct, "dicom") == dicom
        assert store.tiers.read_from(ct, "voxels") == "cold"
        assert store.tiers.read_from(ct, "version:review") == "hot"
        version, info, payloads = await store.versions.fetch(
            ct, store.versions.resolve("lossless"), 0, NONE)
        assert info.size == version.stored_bytes and b"".join([p async for p in payloads])
        # usage and the ledger, per tier
        [(_, _, used, tiers)] = await store.catalog.storage("alice")
        assert tiers == {"hot": used - size, "cold": size}
        assert used == ct.stored_bytes + mr.stored_bytes
        ledger = dict(store.catalog.db.connection.execute(
            "SELECT tier, SUM(delta_bytes) FROM storage_ledger GROUP BY tier").fetchall())
        assert ledger == tiers
        assert (await store_admin.verify(store)).ok
        # and back
        moved, _ = await store.tiers.move_image(ct, "hot")
        ct = await store.get(ct.id, owner="alice")
        assert moved == 3 and ct.tier == "hot" and _files(cold / "blobs") == []
        assert await _read(store, ct, "dicom") == dicom
        [(_, _, _, tiers)] = await store.catalog.storage("alice")
        assert tiers == {"hot": used}
        return True

    assert H.with_store(tmp_path / "data", body, cold_dir=cold)


def test_delete_and_purge_reach_the_cold_tier(tmp_path):
    cold = tmp_path / "cold"

    async def body(store):
        ct = await _register(store, "CT_small.dcm")
        shared = await _register(store, "CT_small.dcm", owner="bob")   # the same files
        await store.tiers.move_image(ct, "cold")
        bob = await store.get(shared.id, owner="bob")
        assert bob.blob("dicom").tier == "cold"          # one file, one tier
        await store.delete(ct.id, owner="alice")
        assert _files(cold / "blobs")                      # bob still uses them
        storage = {name: tiers for name, _, _, tiers in await store.catalog.storage(None)}
        assert storage["alice"] == {} and set(storage["bob"]) == {"cold"}
        assert await store.catalog.astored_bytes_now() == {"alice": 0,
                                                          "bob": bob.stored_bytes}
        await store.delete(shared.id, owner="bob")
        assert _files(cold / "blobs") == [] and _files(tmp_path / "data" / "blobs") == []
        assert await store.catalog.tiers() == {}
        return True

    assert H.with_store(tmp_path / "data", body, cold_dir=cold)


def test_the_policy_moves_old_images_and_a_dry_run_moves_nothing(tmp_path):
    async def body(store):
        ct = await _register(store, "CT_small.dcm")
        await store.versions.get(ct, store.versions.resolve("review"))
        dry = await store.tiers.apply_policy(now=time.time() + 7200, dry_run=True)
        assert dry.image_ids == [ct.id] and dry.blobs == 2
        assert (await store.get(ct.id, owner="alice")).tier == "hot"
        assert (await store.tiers.apply_policy(now=time.time())).image_ids == []  # too young
        done = await store.tiers.apply_policy(now=time.time() + 7200)
        assert done.image_ids == [ct.id] and done.blobs == 2
        ct = await store.get(ct.id, owner="alice")
        assert ct.tier == "cold" and ct.blob("version:review").tier == "hot"
        assert (await store.tiers.apply_policy(now=time.time() + 7200)).image_ids == []
        return True

    assert H.with_store(tmp_path / "data", body, cold_dir=tmp_path / "cold", cold_after=3600.0)


def test_a_move_by_id_reports_the_image_s_tier_after_it(tmp_path):
    async def body(store):
        ct = await _register(store, "CT_small.dcm")
        await store.versions.get(ct, store.versions.resolve("review"))
        with pytest.raises(NotFound):
            await store.tiers.move(ct.id, owner="bob", target="cold")
        r = await store.tiers.move(ct.id, owner="alice", target="cold")
        ct = await store.get(ct.id, owner="alice")
        assert (r.image_ids, r.tier) == ([ct.id], ct.tier)
        assert r.blobs == 2 and r.bytes == ct.blob("dicom").size + ct.blob("voxels").size
        r = await store.tiers.move(ct.id, owner="alice", target="hot")
        assert (r.blobs, r.tier) == (2, "hot")
        return True

    assert H.with_store(tmp_path / "data", body, cold_dir=tmp_path / "cold")


def test_moves_refuse_without_a_cold_tier_or_with_a_bad_one(tmp_path):
    async def body(store):
        ct = await _register(store, "CT_small.dcm")
        with pytest.raises(FailedPrecondition, match="--cold-dir") as e:
            await store.tiers.move_image(ct, "cold")
        assert e.value.field == "tier"
        return ct

    H.with_store(tmp_path / "a", body)

    async def bad(store):
        ct = await _register(store, "CT_small.dcm")
        with pytest.raises(InvalidArgument, match="expected 'hot' or 'cold', got 'warm'"):
            await store.tiers.move_image(ct, "warm")
        return True

    assert H.with_store(tmp_path / "b", bad, cold_dir=tmp_path / "cold")


@pytest.mark.parametrize("state", ["copy-installed", "switched", "damaged-cold", "tmp-left"])
def test_start_up_settles_what_an_interrupted_move_left(tmp_path, state):
    data, cold = tmp_path / "data", tmp_path / "cold"

    async def prepare(store):
        ct = await _register(store, "CT_small.dcm")
        digest = ct.blob("dicom").digest
        if state in ("copy-installed", "tmp-left"):
            store.tiers._copy(digest, "cold")           # steps 1-3, not switched
        else:
            store.tiers._copy(digest, "cold")
            assert await store.catalog.switch_tier(digest, "cold")   # step 4, not deleted
            if state == "damaged-cold":
                path = store.blobs.cold.path(digest)
                path.write_bytes(b"not the bytes" + path.read_bytes()[13:])
        if state == "tmp-left":
            (store.blobs.cold.tmp / f"{socket.gethostname()}-999999-abc").write_bytes(b"x")
        assert store.blobs.tier_of_file(digest) == "both"
        return ct, await _read(store, ct, "dicom")

    ct, dicom = H.with_store(data, prepare, cold_dir=cold)

    async def check(store):
        record = await store.get(ct.id, owner="alice")
        digest = record.blob("dicom").digest
        expected = {"copy-installed": "hot", "tmp-left": "hot", "switched": "cold",
                    "damaged-cold": "hot"}[state]
        assert store.blobs.tier_of_file(digest) == expected
        assert record.blob("dicom").tier == expected
        assert await _read(store, record, "dicom") == dicom
        assert list(store.blobs.cold.tmp.iterdir()) == []
        assert (await store_admin.verify(store)).ok
        [(_, _, used, tiers)] = await store.catalog.storage("alice")
        assert sum(tiers.values()) == used
        return True

    assert H.with_store(data, check, cold_dir=cold)


def test_a_cold_read_recalls_the_image_with_recall_on_read(tmp_path):
    async def body(store):
        ct = await _register(store, "CT_small.dcm")
        await store.tiers.move_image(ct, "cold")
        ct = await store.get(ct.id, owner="alice")
        assert store.tiers.read_from(ct, "voxels") == "cold" and store.tiers.cold_reads == 1
        await store.tiers.wait_recalls()
        ct = await store.get(ct.id, owner="alice")
        assert ct.tier == "hot" and ct.blob("dicom").tier == "hot"
        assert store.tiers.read_from(ct, "voxels") == "hot" and store.tiers.cold_reads == 1
        assert list((tmp_path / "cold" / "blobs").glob("??/*")) == []
        return True

    assert H.with_store(tmp_path / "data", body, cold_dir=tmp_path / "cold",
                        recall_on_read=True)


def test_copy_mode_keeps_every_version_on_both_tiers(tmp_path):
    data, cold = tmp_path / "data", tmp_path / "cold"

    async def body(store):
        ct = await _register(store, "CT_small.dcm")
        for name in ("lossless", "review"):
            await store.versions.get(ct, store.versions.resolve(name))
        ct = await store.get(ct.id, owner="alice")
        moved, size = await store.tiers.move_image(ct, "cold")
        ct = await store.get(ct.id, owner="alice")
        assert moved == 4 and ct.tier == "both"
        assert {b.role: b.tier for b in ct.blobs} == {
            "dicom": "both", "voxels": "both", "version:lossless": "both",
            "version:review": "both"}
        assert sorted(_files(cold / "blobs")) == sorted(b.digest for b in ct.blobs)
        [(_, _, used, tiers)] = await store.catalog.storage("alice")
        assert tiers == {"hot": ct.stored_bytes, "cold": size} and used == ct.stored_bytes + size
        assert store.tiers.read_from(ct, "voxels") == "hot"      # the hot copy serves
        return ct

    ct = H.with_store(data, body, cold_dir=cold, cold_mode="copy")

    async def reopened(store):                 # start-up leaves intended copies alone
        record = await store.get(ct.id, owner="alice")
        assert record.tier == "both" and len(_files(cold / "blobs")) == 4
        await store.tiers.move_image(record, "hot")
        record = await store.get(ct.id, owner="alice")
        assert record.tier == "hot" and _files(cold / "blobs") == []
        await store.tiers.move_image(record, "cold")
        await store.delete(ct.id, owner="alice")
        assert _files(cold / "blobs") == [] and _files(data / "blobs") == []
        assert await store.catalog.astored_bytes_now() == {"alice": 0}
        return True

    assert H.with_store(data, reopened, cold_dir=cold, cold_mode="copy")


def test_a_backup_of_a_tiered_store_is_hot_only_and_serves_the_same(tmp_path):
    dest = tmp_path / "copy"

    async def body(store):
        ct = await _register(store, "CT_small.dcm")
        dicom = await _read(store, ct, "dicom")
        await store.tiers.move_image(ct, "cold")
        report = await store_admin.backup(store, str(dest))
        assert report.images == 1
        assert (await store.get(ct.id, owner="alice")).tier == "cold"   # the source unchanged
        return ct, dicom

    ct, dicom = H.with_store(tmp_path / "data", body, cold_dir=tmp_path / "cold")

    async def served(store):
        record = await store.get(ct.id, owner="alice")
        assert record.tier == "hot" and await _read(store, record, "dicom") == dicom
        [(_, _, used, tiers)] = await store.catalog.storage("alice")
        assert tiers == {"hot": used}
        assert (await store_admin.verify(store)).ok
        return True

    assert H.with_store(dest, served)

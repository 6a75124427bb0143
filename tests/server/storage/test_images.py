"""The image catalog's table functions (storage/images.py, image_tiers.py): functions of
the transaction, so that a caller composes them with other tables' in one write."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.server.storage import audit, capacity, image_tiers
from medcompute.server.storage import images as image_table
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.db import Database
from medcompute.server.storage.images import BlobRef, FindFilter, ImageCatalog, ImageRecord

pytestmark = pytest.mark.timeout(60)


def _image(image_id: str, owner: str = "alice", size: int = 100, digest: str = "",
           **fields) -> ImageRecord:
    blob = BlobRef("voxels", digest or image_id * 8, size)
    return ImageRecord(id=image_id, owner=owner, identity=image_id, kind="original",
                       shape=(1,), dtype="<u1", size=1, crc32=0, created_at=1.0,
                       blobs=(blob,), **fields)


@pytest.fixture
def db(catalog_at):
    database = Database(catalog_at)
    ImageCatalog(database)          # the image tables on this Database
    AuditLog(database)
    yield database
    database.close()


def test_an_image_and_an_audit_entry_are_one_write(db):
    installed = []

    def register(tx, record):
        stored, existed = image_table.add(tx, record, lambda: installed.append(record.id))
        audit.add(tx, audit.entry("alice", "store.Register", record.id, "OK"))
        return stored, existed

    async def main():
        return await db.write(register, _image("a1"))

    assert asyncio.run(main()) == (_image("a1"), False)
    assert installed == ["a1"]
    assert db.run(image_table.get, "a1", "alice") == _image("a1")
    assert [e.object_id for e in db.run(audit.list_entries)] == ["a1"]


def test_a_composed_write_that_fails_after_the_image_keeps_neither(db):
    def register_then_fail(tx):
        image_table.add(tx, _image("a1"), lambda: None)
        audit.add(tx, audit.entry("alice", "store.Register", "a1", "OK"))
        raise ValueError("refused after writing")

    async def main():
        return await db.write(register_then_fail)

    with pytest.raises(ValueError, match="refused after writing"):
        asyncio.run(main())
    assert db.run(image_table.count) == 0
    assert db.run(audit.list_entries) == []
    assert db.run(image_tiers.stored_bytes_now, None) == {}


def test_add_over_capacity_installs_nothing_and_names_the_field(db):
    db.transaction(capacity.set_allocation, "alice", 150)
    db.transaction(image_table.add, _image("a1", size=100), lambda: None)
    installed = []
    with pytest.raises(capacity.CapacityExceeded) as err:
        db.transaction(image_table.add, _image("a2", size=100), lambda: installed.append(1),
                       "images[1]")
    assert err.value.field == "images[1]" and installed == []
    # Its identity again returns the stored record, installing nothing.
    again = db.transaction(image_table.add, _image("a1", size=100), lambda: installed.append(1))
    assert again == (_image("a1", size=100), True) and installed == []


def test_reads_find_by_owner_identity_and_derivation(db):
    for image_id, owner in (("a1", "alice"), ("a2", "alice"), ("b1", "bob")):
        db.transaction(image_table.add, _image(image_id, owner, derivation_key=f"k-{image_id}"),
                       lambda: None)
    assert db.run(image_table.get, "b1", "alice") is None
    assert db.run(image_table.get, "b1", None).owner == "bob"
    assert db.run(image_table.by_identity, "alice", "a2").id == "a2"
    assert db.run(image_table.by_derivation, "alice", "k-a1").id == "a1"
    page, token = db.run(image_table.find, FindFilter(), "alice", 1)
    assert [r.id for r in page] == ["a1"] and token
    rest, last = db.run(image_table.find, FindFilter(), "alice", 1,
                        image_table.decode_token(token))
    assert [r.id for r in rest] == ["a2"] and last == ""
    assert db.run(image_table.count) == 3
    assert [r.id for r in db.run(image_table.all_images)] == ["a1", "a2", "b1"]


def test_delete_then_release_removes_only_unused_blobs(db):
    db.transaction(image_table.add, _image("a1", digest="s" * 64), lambda: None)
    db.transaction(image_table.add, _image("a2", digest="s" * 64), lambda: None)
    db.transaction(image_table.add, _image("a3", digest="t" * 64, size=7), lambda: None)
    removed = []

    def remove(digest):
        removed.append(digest)
        return 7

    def delete_and_release(tx, image_id):
        gone = image_table.delete(tx, image_id, "alice")
        return gone, image_table.release(tx, [b.digest for r in gone for b in r.blobs], remove)

    gone, freed = db.transaction(delete_and_release, "a1")
    assert [r.id for r in gone] == ["a1"] and freed == (0, 0) and removed == []
    gone, freed = db.transaction(delete_and_release, "a3")
    assert freed == (7, 1) and removed == ["t" * 64]
    assert db.transaction(image_table.delete, "nope", "alice") == []


def test_switch_tier_moves_the_bytes_of_every_user_in_the_ledger(db):
    db.transaction(image_table.add, _image("a1", digest="s" * 64), lambda: None)
    db.transaction(image_table.add, _image("b1", "bob", digest="s" * 64), lambda: None)
    assert db.transaction(image_tiers.switch_tier, "s" * 64, "cold")
    assert db.run(image_tiers.tier, "s" * 64) == "cold"
    assert db.run(image_tiers.tiers) == {"s" * 64: "cold"}
    assert [row[3] for row in db.run(image_tiers.storage, None)] == [{"cold": 100}] * 2
    assert not db.transaction(image_tiers.switch_tier, "u" * 64, "cold")   # no image uses it
    assert db.transaction(image_tiers.switch_tier, "s" * 64, "hot")
    assert db.run(image_tiers.tiers) == {}
    assert db.run(image_tiers.stored_bytes_now, None) == {"alice": 100, "bob": 100}


def test_deleting_an_image_removes_its_instances_dicom_json(db):
    from medcompute.server.storage import instance_headers

    db.transaction(image_table.add, _image("a1", digest="s" * 64), lambda: None)
    db.transaction(image_table.add, _image("a2", digest="t" * 64), lambda: None)
    db.transaction(instance_headers.put_headers, "a1", ['{"x":1}', '{"x":2}'])
    db.transaction(instance_headers.put_headers, "a2", ['{"y":1}'])
    db.transaction(image_table.delete, "a1", "alice")
    assert db.run(instance_headers.headers_of, ["a1", "a2"]) == {"a2": ['{"y":1}']}

"""The storage ledger of the image catalog: written with every change of stored bytes,
integrated exactly into gigabyte-days, and backfilled for a catalog made before it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from medcompute.proto.v1 import image_pb2
from medcompute.server.storage import images as image_table
from medcompute.server.storage.db import FILENAME
from medcompute.server.storage.images import BlobRef, ImageCatalog, ImageRecord
from medcompute.server.store import admin as store_admin
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(60)

DAY = 86_400.0
GB = 10 ** 9
# The ledger takes deletions at the real clock: an integral up to "now" may hold a few
# milliseconds more of 10^9 bytes, which is below 1e-6 gigabyte-days.
CLOCK = 1e-6


def _image(image_id: str, owner: str, created_at: float, *sizes: int) -> ImageRecord:
    blobs = tuple(BlobRef("voxels" if i == 0 else f"extra{i}", f"{image_id}-{i:02d}" * 2, size)
                  for i, size in enumerate(sizes))
    return ImageRecord(id=image_id, owner=owner, identity=image_id, kind="original",
                       shape=(1,), dtype="<u1", size=1, crc32=0, created_at=created_at,
                       blobs=blobs)


def _nothing() -> None:
    pass


def _add(catalog: ImageCatalog, *args):
    """images.add in a transaction of its own."""
    return catalog.db.transaction(image_table.add, *args)


def _add_blob(catalog: ImageCatalog, *args):
    return catalog.db.transaction(image_table.add_blob, *args)


def _delete(catalog: ImageCatalog, *args):
    return catalog.db.transaction(image_table.delete, *args)


def _ledger(path: Path) -> list[tuple]:
    db = sqlite3.connect(path / FILENAME)
    try:
        return db.execute("SELECT subscriber, delta_bytes, image_id FROM storage_ledger "
                          "ORDER BY seq").fetchall()
    finally:
        db.close()


@pytest.fixture
def catalog(tmp_path):
    c = ImageCatalog(tmp_path)
    yield c
    c.close()


def test_a_gigabyte_kept_two_days_is_two_gigabyte_days(catalog):
    t0 = time.time() - 2 * DAY
    _add(catalog, _image("im1", "alice", t0, GB), _nothing)
    assert catalog.stored_bytes_now() == {"alice": GB}
    _delete(catalog, "im1", "alice")
    deleted = time.time()
    assert catalog.stored_bytes_now() == {"alice": 0}
    assert catalog.gigabyte_days(None) == {"alice": pytest.approx(2.0, abs=CLOCK)}
    assert catalog.gigabyte_days("alice", t0 - 10 * DAY, deleted + DAY) == {
        "alice": pytest.approx(2.0, abs=CLOCK)}


def test_a_period_that_overlaps_part_of_the_time_kept(catalog):
    t0 = time.time() - 2 * DAY
    _add(catalog, _image("im1", "alice", t0, GB), _nothing)
    _delete(catalog, "im1", None)
    # Kept over [t0, t0 + 2 days): each period counts only its overlap with that.
    assert catalog.gigabyte_days("alice", t0 + 1.5 * DAY, 0) == {
        "alice": pytest.approx(0.5, abs=CLOCK)}
    assert catalog.gigabyte_days("alice", t0 - 5 * DAY, t0 + 0.25 * DAY) == {
        "alice": pytest.approx(0.25, rel=1e-12)}
    assert catalog.gigabyte_days("alice", t0 - 5 * DAY, t0) == {"alice": 0.0}
    assert catalog.gigabyte_days("alice", time.time() + DAY, time.time() + 3 * DAY) == {
        "alice": 0.0}


def test_exact_integral_of_several_images_and_subscribers(catalog):
    now = 1_800_000_000.0
    _add(catalog, _image("a", "alice", now - 10 * DAY, 2 * GB), _nothing)
    _add(catalog, _image("b", "alice", now - 4 * DAY, GB // 2, GB // 2), _nothing)
    _add(catalog, _image("c", "bob", now - 1 * DAY, 3 * GB), _nothing)
    # alice over [now - 6 days, now - 2 days): 2 GB for 4 days, and 1 GB for 2 days = 10;
    # bob, who stored nothing before the end, is not listed.
    assert catalog.gigabyte_days(None, now - 6 * DAY, now - 2 * DAY, now=now) == {
        "alice": pytest.approx(10.0, rel=1e-12)}
    # Up to "now" (an end in the future is cut there): alice 2 x 10 + 1 x 4, bob 3 x 1.
    assert catalog.gigabyte_days(None, 0, now + 30 * DAY, now=now) == {
        "alice": pytest.approx(24.0, rel=1e-12), "bob": pytest.approx(3.0, rel=1e-12)}
    assert catalog.gigabyte_days("bob", now - 2 * DAY, 0, now=now) == {
        "bob": pytest.approx(3.0, rel=1e-12)}
    assert catalog.gigabyte_days("carol", 0, 0, now=now) == {"carol": 0.0}
    assert catalog.stored_bytes_now() == {"alice": 3 * GB, "bob": 3 * GB}
    assert catalog.stored_bytes_now("carol") == {"carol": 0}
    assert asyncio.run(catalog.astored_bytes_now("bob")) == {"bob": 3 * GB}
    assert asyncio.run(catalog.agigabyte_days("bob", now - 2 * DAY, now, now=now)) == {
        "bob": pytest.approx(3.0, rel=1e-12)}


def test_blobs_added_later_count_and_deleting_takes_back_what_was_counted(catalog, tmp_path):
    _add(catalog, _image("im1", "alice", time.time(), 1000), _nothing)
    assert _add_blob(catalog, "im1", BlobRef("preview", "p" * 64, 300), _nothing)
    assert catalog.stored_bytes_now() == {"alice": 1300}
    # A preview rendered again replaces the first: only the difference counts.
    assert _add_blob(catalog, "im1", BlobRef("preview", "q" * 64, 250), _nothing)
    assert catalog.stored_bytes_now() == {"alice": 1250}
    assert not _add_blob(catalog, "gone", BlobRef("preview", "r" * 64, 9),
                            _nothing)
    _delete(catalog, "im1", "alice")
    assert catalog.stored_bytes_now() == {"alice": 0}
    assert _ledger(tmp_path) == [("alice", 1000, "im1"), ("alice", 300, "im1"),
                                 ("alice", -50, "im1"), ("alice", -1250, "im1")]


def test_a_registration_that_fails_leaves_no_ledger_entry(catalog, tmp_path):
    def install():
        raise OSError("disk full")

    with pytest.raises(OSError):
        _add(catalog, _image("im1", "alice", time.time(), 1000), install)
    # The same identity again is not counted twice.
    _add(catalog, _image("im2", "alice", time.time(), 1000), _nothing)
    _add(catalog, _image("im2", "alice", time.time(), 1000), _nothing)
    assert _ledger(tmp_path) == [("alice", 1000, "im2")]


def test_a_catalog_made_before_the_ledger_is_backfilled_once(tmp_path):
    now = 1_800_000_000.0
    first = ImageCatalog(tmp_path)
    _add(first, _image("a", "alice", now - 3 * DAY, GB), _nothing)
    _add(first, _image("b", "bob", now - 1 * DAY, 2 * GB, GB), _nothing)
    first.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    db.execute("DROP TABLE storage_ledger")      # as a catalog of an earlier version,
    db.execute("DROP TABLE schema_versions")     # which recorded no schema versions
    db.commit()
    db.close()
    for _ in range(2):                           # reopening does not add them again
        reopened = ImageCatalog(tmp_path)
        try:
            assert reopened.stored_bytes_now() == {"alice": GB, "bob": 3 * GB}
            assert reopened.gigabyte_days(None, 0, 0, now=now) == {
                "alice": pytest.approx(3.0, rel=1e-12), "bob": pytest.approx(3.0, rel=1e-12)}
        finally:
            reopened.close()
    assert sorted(_ledger(tmp_path)) == [("alice", GB, "a"), ("bob", 3 * GB, "b")]


# -- through the image store ----------------------------------------------------------------

async def _put_raw(store, array, *, owner, retention=0.0):
    desc = H.raw_descriptor(array, image_pb2.COMPRESSION_NONE)
    pieces = H.payloads(array, image_pb2.COMPRESSION_NONE, array.dtype.itemsize)
    record, _, _ = await H.register(store, desc, H.stream(pieces), owner=owner, retention=retention)
    return record


def test_register_preview_delete_and_purge_through_the_store(tmp_path):
    async def body(store):
        catalog = store.catalog
        kept = await _put_raw(store, np.arange(4096, dtype=np.uint16).reshape(64, 64),
                              owner="alice")
        shared = await _put_raw(store, np.ones(1000, np.uint8), owner="bob")
        old = await _put_raw(store, np.zeros(500, np.uint8), owner="bob", retention=60)
        assert await catalog.astored_bytes_now() == {
            "alice": kept.stored_bytes, "bob": shared.stored_bytes + old.stored_bytes}
        assert kept.stored_bytes > 0

        await store.preview(kept.id, owner="alice")          # kept with the image
        kept = await store.get(kept.id, owner="alice")
        assert kept.blob("preview") is not None
        assert (await catalog.astored_bytes_now("alice")) == {"alice": kept.stored_bytes}

        report = await store_admin.purge(store, now=time.time() + 120)
        assert report.image_ids == [old.id]
        assert await catalog.astored_bytes_now("bob") == {"bob": shared.stored_bytes}
        await store.delete(kept.id, owner="alice")
        assert await catalog.astored_bytes_now() == {"alice": 0, "bob": shared.stored_bytes}
        days = await catalog.agigabyte_days(None)
        assert set(days) == {"alice", "bob"} and days["alice"] > 0

    H.with_store(tmp_path, body)

"""Handing the keyless subscriber's images to another (storage/adoption.py), on a real
catalog and blob files: owner, ledger bytes, reading statuses and the audit entry move in
one transaction; a conflict or an allocated capacity refuses it with nothing changed."""

from __future__ import annotations

import numpy as np
import pytest

from medcompute.server.errors import FailedPrecondition, InvalidArgument
from medcompute.server.storage import capacity, studies
from medcompute.server.storage.adoption import Adoption
from medcompute.server.storage.audit import list_entries
from medcompute.server.storage.image_tiers import stored_bytes_now
from medcompute.server.storage.images import get
from tests import store_helpers as H

pytestmark = pytest.mark.timeout(120)


async def _put(store, array, owner):
    record, _, _ = await H.register(store, H.raw_descriptor(array),
                                    H.stream(H.payloads(array.tobytes())), owner=owner)
    return record


def _url(catalog_at) -> str:
    """The store's catalog setting: "" for the data directory's SQLite file, else the URL."""
    return catalog_at if isinstance(catalog_at, str) else ""


def test_every_image_of_local_goes_to_the_subscriber_with_its_bytes(tmp_path, catalog_at):
    async def body(store):
        a = await _put(store, np.arange(64, dtype=np.int16).reshape(8, 8), "local")
        ct_bytes = H.data_of("CT_small.dcm")
        b, _, _ = await H.register(store, H.dicom_descriptor([ct_bytes]),
                                   H.stream(H.payloads(ct_bytes)), owner="local")
        other = await _put(store, np.zeros((2, 2), np.uint8), "st-anne")
        study = b.metadata["study_instance_uid"]
        assert study
        store.catalog.db.run(lambda tx: studies.set_status(tx, "local", study, "read",
                                                           "local", 1.0))
        before = store.catalog.db.run(stored_bytes_now)
        adoption = Adoption(catalog_at)
        try:
            assert adoption.adopt("local", "st-mary") == [a.id, b.id]
            assert adoption.adopt("local", "st-mary") == []          # nothing left
        finally:
            adoption.close()
        db = store.catalog.db
        assert db.run(get, a.id, "st-mary").owner == "st-mary"
        assert db.run(get, b.id, "local") is None
        assert db.run(get, other.id, "st-anne") is not None
        after = db.run(stored_bytes_now)
        assert after["st-mary"] == before["local"] and after.get("local", 0) == 0
        assert after["st-anne"] == before["st-anne"]
        assert db.run(lambda tx: tx.execute(
            "SELECT owner FROM study_status").fetchall()) == [("st-mary",)]
        first, second = db.run(lambda tx: list_entries(tx, action="store.adopt"))
        assert first.subscriber == "st-mary" and "2 image(s) of local" in first.detail
        assert "0 image(s) of local" in second.detail

    H.with_store(tmp_path, body, catalog=_url(catalog_at))


def test_a_conflict_or_the_capacity_refuses_it_and_nothing_changes(tmp_path, catalog_at):
    async def body(store):
        array = np.arange(16, dtype=np.int16).reshape(4, 4)
        mine = await _put(store, array, "local")
        await _put(store, array, "st-mary")               # the same instance, kept by both
        adoption = Adoption(catalog_at)
        try:
            with pytest.raises(FailedPrecondition, match="already holds 1 of the 1 image") as e:
                adoption.adopt("local", "st-mary")
            assert e.value.field == "subscriber"
            store.catalog.db.run(lambda tx: capacity.set_allocation(tx, "st-luke", 1))
            with pytest.raises(capacity.CapacityExceeded, match="1 bytes allocated") as e:
                adoption.adopt("local", "st-luke")
            assert e.value.field == "subscriber"
            with pytest.raises(InvalidArgument):
                adoption.adopt("local", "not a name")
            with pytest.raises(InvalidArgument) as e:
                adoption.adopt("local", "local")
            assert e.value.field == "subscriber"
            assert "the images already belong to 'local'" in e.value.message
        finally:
            adoption.close()
        assert store.catalog.db.run(get, mine.id, "local") is not None
        assert "st-luke" not in store.catalog.db.run(stored_bytes_now)

    H.with_store(tmp_path, body, catalog=_url(catalog_at))

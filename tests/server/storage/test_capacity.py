"""Capacity allocations (storage/capacity.py) on a real catalog, on each backend."""

import pytest

from medcompute.server.storage import capacity
from medcompute.server.storage.db import FILENAME, connect
from medcompute.server.storage.images import ImageCatalog
from medcompute.server.storage.postgres import Tx, is_url


@pytest.fixture
def db(catalog_at):
    store = ImageCatalog(catalog_at)        # the catalog's tables, as a server creates them
    if not is_url(str(catalog_at)):
        store.close()
        conn = connect(catalog_at / FILENAME)
        yield conn
        conn.close()
        return
    try:
        with store.db.backend.pool.connection() as conn:
            yield Tx(conn)
    finally:
        store.close()


def _use(db, subscriber, nbytes):
    db.execute("INSERT INTO storage_ledger (subscriber, at, delta_bytes, image_id) "
               "VALUES (?, 0, ?, 'img')", (subscriber, nbytes))


def test_a_subscriber_without_an_allocation_is_unlimited(db):
    _use(db, "a", 10**12)
    assert capacity.allocated(db, "a") is None
    capacity.check(db, "a", 10**12, "input")          # no error


def test_used_is_the_ledgers_sum_of_that_subscriber(db):
    _use(db, "a", 700)
    _use(db, "a", -200)
    _use(db, "b", 5)
    assert capacity.used(db, "a") == 500 and capacity.used(db, "nobody") == 0


def test_a_write_past_the_allocation_is_refused_with_the_numbers(db):
    capacity.set_allocation(db, "a", 1000)
    _use(db, "a", 600)
    capacity.check(db, "a", 400, "input")             # exactly at the limit: allowed
    with pytest.raises(capacity.CapacityExceeded) as err:
        capacity.check(db, "a", 401, "header.input")
    assert err.value.field == "header.input"
    assert err.value.message.startswith(
        "over the subscriber's allocated capacity: 1000 bytes allocated, 600 used, "
        "401 more needed (1 beyond it)")
    capacity.check(db, "a", -50, "input")             # freeing is never refused


def test_allocations_are_set_replaced_and_removed(db):
    capacity.set_allocation(db, "b", 20)
    capacity.set_allocation(db, "a", 10)
    capacity.set_allocation(db, "a", 30)
    assert capacity.allocations(db) == {"a": 30, "b": 20}
    capacity.set_allocation(db, "a", None)
    assert capacity.allocations(db) == {"b": 20} and capacity.allocated(db, "a") is None

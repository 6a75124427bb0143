"""Each subscriber's allocated storage capacity, in the catalog file.

An administrator allocates a subscriber a number of bytes (``medcompute store capacity``);
a subscriber without an allocation is unlimited. What a subscriber uses is the storage
ledger's sum (image_tiers.py: every blob of every image it keeps, versions
included). A change that would take the subscriber past its allocation is refused
inside the same transaction that would have made it, before any blob is installed,
so nothing is half-stored: `check` raises ResourceExhausted naming the numbers.

Plain functions of ``tx``, the catalog's connection inside the transaction: the image
catalog's functions (images.py) call `check` inside their write transaction.
"""

from __future__ import annotations

import sqlite3
import time

from medcompute.server.errors import ResourceExhausted

__all__ = ["SCHEMA", "allocated", "used", "check", "set_allocation", "allocations",
           "CapacityExceeded"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS capacity (
    subscriber TEXT PRIMARY KEY,
    allocated_bytes INTEGER NOT NULL,
    set_at REAL NOT NULL
);
"""


class CapacityExceeded(ResourceExhausted):
    """A write beyond the subscriber's allocated capacity (the caller's limit, not a full
    disk: a job that ends with it is billed like any refused request)."""


def allocated(db: sqlite3.Connection, subscriber: str) -> int | None:
    row = db.execute("SELECT allocated_bytes FROM capacity WHERE subscriber = ?",
                     (subscriber,)).fetchone()
    return None if row is None else int(row[0])


def allocations(db: sqlite3.Connection) -> dict[str, int]:
    return {name: int(n) for name, n in
            db.execute("SELECT subscriber, allocated_bytes FROM capacity ORDER BY subscriber")}


def used(db: sqlite3.Connection, subscriber: str) -> int:
    row = db.execute("SELECT COALESCE(SUM(delta_bytes), 0) FROM storage_ledger WHERE "
                     "subscriber = ?", (subscriber,)).fetchone()
    return int(row[0])


def check(db: sqlite3.Connection, subscriber: str, adding: int, field: str) -> None:
    """CapacityExceeded when ``adding`` more bytes would pass the subscriber's allocation."""
    limit = allocated(db, subscriber)
    if limit is None or adding <= 0:
        return
    now = used(db, subscriber)
    if now + adding > limit:
        raise CapacityExceeded(
            f"over the subscriber's allocated capacity: {limit} bytes allocated, {now} used, "
            f"{adding} more needed ({now + adding - limit} beyond it); delete images or ask "
            "an administrator for more capacity", field)


def set_allocation(db: sqlite3.Connection, subscriber: str, allocated_bytes: int | None) -> None:
    if allocated_bytes is None:
        db.execute("DELETE FROM capacity WHERE subscriber = ?", (subscriber,))
    else:
        db.execute("INSERT INTO capacity (subscriber, allocated_bytes, set_at) "
                   "VALUES (?, ?, ?) ON CONFLICT (subscriber) DO UPDATE SET "
                   "allocated_bytes = excluded.allocated_bytes, set_at = excluded.set_at",
                   (subscriber, int(allocated_bytes), time.time()))

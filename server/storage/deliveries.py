"""Pushes delivered, for the ``delivery`` meter of usage reports and invoices.

The ``dicom_push`` table holds one row per push of a routed job's result to a
recipient's DICOM node (``dicomnet/push.py`` writes and sends them). This module owns
the table's definition and the two read-only queries billing needs, so that billing
counts deliveries without importing the DICOM network code. Rows live in the catalog
file (``db.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from medcompute.server.storage.db import Store, schema, table

__all__ = ["DeliveryLog", "INSTANCE_SCHEMA", "InstanceStatus", "PUSH_SCHEMA",
           "delivered_counts", "delivered_times", "instance_statuses", "record_instances"]

PUSH_SCHEMA = """
CREATE TABLE IF NOT EXISTS dicom_push (
    push_id    TEXT PRIMARY KEY,
    job_id     TEXT NOT NULL,
    sender     TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    node       TEXT NOT NULL,
    state      TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    attempts   INTEGER NOT NULL DEFAULT 0,
    delivered  INTEGER NOT NULL DEFAULT 0,
    next_at    REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    proof      TEXT NOT NULL DEFAULT '',
    UNIQUE (job_id, recipient, node)
);
CREATE INDEX IF NOT EXISTS dicom_push_state ON dicom_push(state, next_at);
"""


#: Each instance of a push, as the last try left it: its C-STORE status (NULL: not
#: answered, the try stopped before it or the association ended) and what the storage
#: commitment report said of it ('' when there was none).
INSTANCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS dicom_push_instance (
    push_id         TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    position        INTEGER NOT NULL,
    status          INTEGER,
    commitment      TEXT NOT NULL DEFAULT '',
    updated_at      REAL NOT NULL,
    PRIMARY KEY (push_id, sop_instance_uid)
);
"""


#: The schema of this module's tables, applied by every Database (db.py).
create = table(schema(PUSH_SCHEMA))
create_instances = table(schema(INSTANCE_SCHEMA))


@dataclass(frozen=True)
class InstanceStatus:
    """One instance of a push: its place in the result, its C-STORE status (None: not
    answered in the last try) and the storage commitment's word on it ('' without one)."""
    sop_instance_uid: str
    position: int
    status: int | None
    commitment: str

    @property
    def shown(self) -> str:
        """The status as DICOM writes it (``0000``, ``B000``, ``A700``), or "not answered"."""
        return "not answered" if self.status is None else f"{self.status:04X}"


def record_instances(tx, push_id: str, instances, now: float) -> None:
    """Record each instance of a try of ``push_id``: ``instances`` is (SOP Instance UID,
    C-STORE status or None, commitment) in result order; a later try overwrites."""
    tx.executemany(
        "INSERT INTO dicom_push_instance (push_id, sop_instance_uid, position, status, "
        "commitment, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (push_id, sop_instance_uid) DO UPDATE SET position = excluded.position,"
        " status = excluded.status, commitment = excluded.commitment, "
        "updated_at = excluded.updated_at",
        [(push_id, uid, i, status, commitment, now)
         for i, (uid, status, commitment) in enumerate(instances)])


def instance_statuses(tx, push_ids) -> dict[str, list[InstanceStatus]]:
    """Per push of ``push_ids``: its instances in result order (none before a try)."""
    found: dict[str, list[InstanceStatus]] = {p: [] for p in push_ids}
    ids = list(found)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        for r in tx.execute(
                "SELECT push_id, sop_instance_uid, position, status, commitment FROM "
                f"dicom_push_instance WHERE push_id IN ({marks}) ORDER BY push_id, position",
                chunk):
            found[r[0]].append(InstanceStatus(*r[1:]))
    return found


def _delivered(sender: str | None, since: float, until: float, columns: str
               ) -> tuple[str, tuple]:
    sql = (f"SELECT {columns} FROM dicom_push WHERE state = 'delivered' AND "
           "updated_at >= ? AND updated_at < ?")
    args: tuple = (since, until)
    if sender is not None:
        sql, args = sql + " AND sender = ?", (*args, sender)
    return sql, args


def delivered_counts(tx, sender: str | None, since: float, until: float) -> dict[str, int]:
    """Per sender: pushes delivered in [since, until) (metered as ``delivery``)."""
    sql, args = _delivered(sender, since, until, "sender, COUNT(*)")
    return dict(tx.execute(sql + " GROUP BY sender", args).fetchall())


def delivered_times(tx, sender: str | None, since: float, until: float
                    ) -> list[tuple[str, float]]:
    """(sender, delivered at) of each push delivered in [since, until)."""
    sql, args = _delivered(sender, since, until, "sender, updated_at")
    return [tuple(r) for r in tx.execute(sql + " ORDER BY updated_at", args)]


class DeliveryLog(Store):
    """The delivered pushes of the catalog file, by sender and time of delivery: a facade
    over :func:`delivered_counts` and :func:`delivered_times`, built on the server's shared
    Database or on a data directory (it then opens its own)."""

    TABLES = (create, create_instances)

    async def instance_statuses(self, push_ids) -> dict[str, list[InstanceStatus]]:
        """Per push of ``push_ids``: its instances' statuses in result order."""
        return await self.db.read(instance_statuses, list(push_ids))

    async def delivered_counts(self, sender: str | None, since: float, until: float
                               ) -> dict[str, int]:
        """Per sender: pushes delivered in [since, until) (metered as ``delivery``)."""
        return await self.db.read(delivered_counts, sender, since, until)

    async def delivered_times(self, sender: str | None, since: float, until: float
                              ) -> list[tuple[str, float]]:
        """(sender, delivered at) of each push delivered in [since, until)."""
        return await self.db.read(delivered_times, sender, since, until)

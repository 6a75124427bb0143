"""Pushes delivered, for the ``delivery`` meter of usage reports and invoices.

The ``dicom_push`` table holds one row per push of a routed job's result to a
recipient's DICOM node (``dicomnet/push.py`` writes and sends them). This module owns
the table's definition and the two read-only queries billing needs, so that billing
counts deliveries without importing the DICOM network code. Rows live in the catalog
file (``db.py``).
"""

from __future__ import annotations

from medcompute.server.storage.db import Store, schema, table

__all__ = ["DeliveryLog", "PUSH_SCHEMA"]

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


#: The schema of this module's tables, applied by every Database (db.py).
create = table(schema(PUSH_SCHEMA))


class DeliveryLog(Store):
    """The delivered pushes of the catalog file, by sender and time of delivery."""

    TABLES = (create,)

    async def delivered_counts(self, sender: str | None, since: float, until: float
                               ) -> dict[str, int]:
        """Per sender: pushes delivered in [since, until) (metered as ``delivery``)."""
        sql = ("SELECT sender, COUNT(*) FROM dicom_push WHERE state = 'delivered' AND "
               "updated_at >= ? AND updated_at < ?")
        args: tuple = (since, until)
        if sender is not None:
            sql, args = sql + " AND sender = ?", (*args, sender)
        return await self._call(lambda: dict(self._db.execute(sql + " GROUP BY sender",
                                                              args).fetchall()))

    async def delivered_times(self, sender: str | None, since: float, until: float
                              ) -> list[tuple[str, float]]:
        """(sender, delivered at) of each push delivered in [since, until)."""
        sql = ("SELECT sender, updated_at FROM dicom_push WHERE state = 'delivered' AND "
               "updated_at >= ? AND updated_at < ?")
        args: tuple = (since, until)
        if sender is not None:
            sql, args = sql + " AND sender = ?", (*args, sender)
        return await self._call(lambda: [tuple(r) for r in self._db.execute(
            sql + " ORDER BY updated_at", args)])

"""Pushes delivered, for the ``delivery`` meter of usage reports and invoices.

The ``dicom_push`` table holds one row per push of a routed job's result to a
recipient's DICOM node (``dicomnet/push.py`` writes and sends them). This module owns
the table's definition and the two read-only queries billing needs, so that billing
counts deliveries without importing the DICOM network code. Rows live in the catalog
file (``db.py``).
"""

from __future__ import annotations

from medcompute.server.storage.db import Store, schema, table

__all__ = ["DeliveryLog", "PUSH_SCHEMA", "delivered_counts", "delivered_times"]

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

    TABLES = (create,)

    async def delivered_counts(self, sender: str | None, since: float, until: float
                               ) -> dict[str, int]:
        """Per sender: pushes delivered in [since, until) (metered as ``delivery``)."""
        return await self.db.read(delivered_counts, sender, since, until)

    async def delivered_times(self, sender: str | None, since: float, until: float
                              ) -> list[tuple[str, float]]:
        """(sender, delivered at) of each push delivered in [since, until)."""
        return await self.db.read(delivered_times, sender, since, until)

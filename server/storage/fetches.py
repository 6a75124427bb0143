"""Examinations fetched, for the per-examination data fee of the invoice.

Every Store.Get that sends an image's data (not a header-only call) adds one row:
who fetched, when, the image and its examination (the image's study; an image without
a StudyInstanceUID is an examination of its own). The invoice counts each subscriber's
distinct examinations fetched in the month. Rows live in the catalog file
(``db.py``); the examination is kept as a digest, never the study's UID.
"""

from __future__ import annotations

import hashlib
import time

from medcompute.server.storage.db import Store, schema, table

__all__ = ["FetchLog", "add", "examination_of", "examinations"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS data_fetches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber TEXT NOT NULL,
    at REAL NOT NULL,
    image_id TEXT NOT NULL,
    examination TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS data_fetches_subscriber ON data_fetches (subscriber, at);
"""


def examination_of(owner: str, image_id: str, study_uid: str) -> str:
    key = f"study:{owner}:{study_uid}" if study_uid else f"image:{image_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


#: The schema of this module's tables, applied by every Database (db.py).
create = table(schema(_SCHEMA))


def add(tx, subscriber: str, at: float, image_id: str, examination: str) -> None:
    """One fetch of ``image_id`` (of ``examination``, :func:`examination_of`)."""
    tx.execute("INSERT INTO data_fetches (subscriber, at, image_id, examination) "
               "VALUES (?, ?, ?, ?)", (subscriber, at, image_id, examination))


def examinations(tx, subscriber: str | None, since: float, until: float) -> dict[str, int]:
    """Distinct examinations each subscriber (or only ``subscriber``) fetched in
    [since, until)."""
    where, args = "at >= ? AND at < ?", [since, until]
    if subscriber is not None:
        where += " AND subscriber = ?"
        args.append(subscriber)
    return {name: int(n) for name, n in tx.execute(
        f"SELECT subscriber, COUNT(DISTINCT examination) FROM data_fetches WHERE {where} "
        "GROUP BY subscriber", args)}


class FetchLog(Store):
    """The fetches table: a facade over :func:`add` and :func:`examinations`, built on the
    server's shared Database or on a data directory (it then opens its own)."""

    TABLES = (create,)

    async def add(self, subscriber: str, image_id: str, examination: str,
                  at: float | None = None) -> None:
        await self.db.read(add, subscriber, time.time() if at is None else at, image_id,
                           examination)

    async def examinations(self, subscriber: str | None, since: float, until: float
                           ) -> dict[str, int]:
        """Distinct examinations each subscriber fetched in [since, until)."""
        return await self.db.read(examinations, subscriber, since, until)

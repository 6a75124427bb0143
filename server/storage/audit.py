"""The audit log: who did what to which image, job, key or usage record, and how it ended.

One row per call, failures included, in the catalog (durable like everything in
it). Entries hold ids, action names, status code names and the caller's error
message, which by design never carries patient names or ids.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from medcompute.server.storage.db import Database

__all__ = ["AuditEntry", "AuditLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    subscriber TEXT NOT NULL,
    action TEXT NOT NULL,
    object_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS audit_subscriber ON audit (subscriber, at);
"""

PAGE_MAX = 1000


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: float
    subscriber: str
    action: str
    object_id: str
    outcome: str
    detail: str


class AuditLog(Database):
    """The audit table. ``writer``: the store of the same catalog file whose group
    commits the entries join (the server passes its job catalog, so a job's end and the
    audit entries of concurrent calls share one COMMIT); default: this log's own."""

    SCHEMA = _SCHEMA

    def __init__(self, data_dir, *, writer: Database | None = None):
        super().__init__(data_dir)
        self.writer = writer if writer is not None else self

    @staticmethod
    def _add(db, *row) -> None:
        db.execute("INSERT INTO audit (at, subscriber, action, object_id, outcome, detail)"
                   " VALUES (?, ?, ?, ?, ?, ?)", row)

    async def record(self, subscriber: str, action: str, object_id: str, outcome: str,
                     detail: str = "") -> None:
        """Add an entry; on disk when this returns (a group commit)."""
        writer, at = self.writer, time.time()
        await writer._commit(lambda: self._add(writer._db, at, subscriber or "", action,
                                               object_id or "", outcome, detail[:500]))

    def _list(self, since, until, subscriber, action, after_seq, limit):
        where, args = ["seq > ?"], [after_seq]
        if since:
            where.append("at >= ?")
            args.append(since)
        if until:
            where.append("at < ?")
            args.append(until)
        if subscriber:
            where.append("subscriber = ?")
            args.append(subscriber)
        if action:
            where.append("action = ?")
            args.append(action)
        rows = self._db.execute(
            f"SELECT seq, at, subscriber, action, object_id, outcome, detail FROM audit"
            f" WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", (*args, limit)).fetchall()
        return [AuditEntry(*r) for r in rows]

    def list(self, *, since: float = 0, until: float = 0, subscriber: str = "",
             action: str = "", after_seq: int = 0, limit: int = 100) -> list[AuditEntry]:
        limit = max(1, min(limit or 100, PAGE_MAX))
        return self._run(self._list, since, until, subscriber, action, after_seq, limit)

    async def alist(self, **kw) -> list[AuditEntry]:
        return await asyncio.to_thread(self.list, **kw)

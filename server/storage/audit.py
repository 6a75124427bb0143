"""The audit log: who did what to which image, job, key or usage record, and how it ended.

One row per call, failures included, in the catalog (durable like everything in
it). Entries hold ids, action names, status code names and the caller's error
message, which by design never carries patient names or ids.

Calls refused for want of a valid key are the exception: anyone can make them, so that
they do not grow the catalog each source gets at most :data:`REFUSED_ENTRIES` entries of
their own per :data:`REFUSED_WINDOW` seconds, and one summary entry counts the rest
(:class:`RefusedCalls`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from medcompute.server.storage.db import Store, schema, table

__all__ = ["AuditEntry", "AuditLog", "RefusedCalls", "REFUSED_ACTION", "REFUSED_ENTRIES",
           "REFUSED_WINDOW", "add", "entry", "list_entries"]

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
#: Refused unauthenticated calls from one source written as entries of their own in one
#: window; the others of the window are counted in its summary entry.
REFUSED_ENTRIES = 10
#: Seconds of one window of :class:`RefusedCalls`.
REFUSED_WINDOW = 60.0
#: The action of a summary entry.
REFUSED_ACTION = "auth.refused"
#: Sources counted apart; calls from any further source in a window share one count.
REFUSED_SOURCES = 1024


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: float
    subscriber: str
    action: str
    object_id: str
    outcome: str
    detail: str


#: The schema of this module's tables, applied by every Database (db.py).
create = table(schema(_SCHEMA))


def add(tx, entry: AuditEntry) -> None:
    """Insert ``entry`` (its ``seq`` is ignored: the table numbers entries) through ``tx``,
    the connection of the transaction it joins; its detail is cut to 500 characters."""
    tx.execute("INSERT INTO audit (at, subscriber, action, object_id, outcome, detail)"
               " VALUES (?, ?, ?, ?, ?, ?)",
               (entry.at, entry.subscriber or "", entry.action, entry.object_id or "",
                entry.outcome, entry.detail[:500]))


def _add_all(tx, entries: list[AuditEntry]) -> None:
    for e in entries:
        add(tx, e)


def entry(subscriber: str, action: str, object_id: str, outcome: str,
          detail: str = "", at: float | None = None) -> AuditEntry:
    """A new entry (not yet numbered), at ``at`` or now."""
    return AuditEntry(0, time.time() if at is None else at, subscriber or "", action,
                      object_id or "", outcome, detail[:500])


def list_entries(tx, *, since: float = 0, until: float = 0, subscriber: str = "",
                 action: str = "", after_seq: int = 0, limit: int = 100) -> list[AuditEntry]:
    """The entries after ``after_seq`` matching the filters, oldest first; at most
    ``limit`` (100 when 0, never more than :data:`PAGE_MAX`)."""
    limit = max(1, min(limit or 100, PAGE_MAX))
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
    rows = tx.execute(
        f"SELECT seq, at, subscriber, action, object_id, outcome, detail FROM audit"
        f" WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", (*args, limit)).fetchall()
    return [AuditEntry(*r) for r in rows]


@dataclass
class _Window:
    start: float
    calls: int = 0


class RefusedCalls:
    """Which refused unauthenticated calls get an entry of their own: the first
    ``per_window`` from a source in each ``window`` seconds; the rest are counted, and the
    window's summary entry says how many there were. Pure: the caller gives the time and
    writes the entries."""

    def __init__(self, per_window: int = REFUSED_ENTRIES, window: float = REFUSED_WINDOW,
                 max_sources: int = REFUSED_SOURCES):
        self.per_window = per_window
        self.window = window
        self.max_sources = max_sources
        self.windows: dict[str, _Window] = {}

    def admit(self, source: str, now: float) -> tuple[bool, list[AuditEntry]]:
        """(whether this call gets an entry of its own, the summaries of ended windows)."""
        summaries = self.due(now)
        if source not in self.windows and len(self.windows) >= self.max_sources:
            source = "other sources"
        w = self.windows.setdefault(source, _Window(now))
        w.calls += 1
        return w.calls <= self.per_window, summaries

    def ends(self, source: str) -> float | None:
        """When the window of ``source`` ends, if some of its calls are only counted."""
        w = self.windows.get(source)
        return w.start + self.window if w and w.calls > self.per_window else None

    def due(self, now: float, *, every: bool = False) -> list[AuditEntry]:
        """The summary entries of the windows that ended by ``now`` (``every``: of all
        windows, the server stops), forgotten here."""
        out = []
        for source, w in list(self.windows.items()):
            if now - w.start < self.window and not every:
                continue
            del self.windows[source]
            if w.calls > self.per_window:
                out.append(entry("", REFUSED_ACTION, source, "UNAUTHENTICATED",
                                 f"{w.calls} refused unauthenticated calls from {source} in "
                                 f"the last {self.window:g} s ({self.per_window} with "
                                 f"entries of their own)", at=min(now, w.start + self.window)))
        return out


class AuditLog(Store):
    """The audit table: a facade over :func:`add` and :func:`list_entries`.

    Built on the server's shared :class:`~medcompute.server.storage.db.Database` (its
    entries then join the group commits of every store on it, a job's end included), or
    on a data directory (it opens its own Database: the tests, the command line)."""

    TABLES = (create,)

    async def record(self, subscriber: str, action: str, object_id: str, outcome: str,
                     detail: str = "") -> None:
        """Add an entry; on disk when this returns (a group commit)."""
        await self.db.write(add, entry(subscriber, action, object_id, outcome, detail))

    async def record_entries(self, entries: list[AuditEntry]) -> None:
        """Add made entries (summaries) in one transaction."""
        if entries:
            await self.db.write(_add_all, entries)

    def list(self, *, since: float = 0, until: float = 0, subscriber: str = "",
             action: str = "", after_seq: int = 0, limit: int = 100) -> list[AuditEntry]:
        return self.db.run(lambda tx: list_entries(
            tx, since=since, until=until, subscriber=subscriber, action=action,
            after_seq=after_seq, limit=limit))

    async def alist(self, **kw) -> list[AuditEntry]:
        return await asyncio.to_thread(self.list, **kw)

"""SQLite in the data directory: one file, WAL, ``synchronous=FULL``.

A committed transaction is on disk, so anything acknowledged survives a crash.
Each store keeps one connection, used from worker threads under a lock (SQLite
connections are not thread-safe); its coroutines run statements off the event
loop. Several processes (servers sharing a data directory, the command line)
may open the same file.

**Group commit.** :meth:`Database._commit` is how the server's coroutines write: the
writes that arrive while one COMMIT (and its fsync) is under way wait, and then go
together in the next transaction, each in its own SAVEPOINT (a write that raises is
rolled back alone and its caller gets the error), with one COMMIT for all of them.
A caller's ``await`` returns only after the COMMIT that holds its write: what it then
acknowledges is on disk, as with one transaction per write, but concurrent jobs share
one fsync instead of one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path

__all__ = ["Database", "FILENAME", "connect"]

FILENAME = "catalog.sqlite3"


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


class Database:
    """Base of the stores that live in the catalog file.

    Subclasses set ``SCHEMA`` and run their statements through :meth:`_call`
    (async) or :meth:`_run` (blocking, e.g. from the command line).
    """

    SCHEMA = ""
    FILENAME = FILENAME

    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / self.FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = connect(self.path)
        if self.SCHEMA:
            self._db.executescript(self.SCHEMA)
        self._pending: list[tuple] = []
        self._flushing = False
        self._flusher: asyncio.Task | None = None
        #: Transactions committed by :meth:`_commit`, and the writes they held.
        self.commits = 0
        self.committed_writes = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, fn, *args):
        with self._lock:
            return fn(*args)

    async def _call(self, fn, *args):
        return await asyncio.to_thread(self._run, fn, *args)

    async def _commit(self, fn, *args):
        """``fn(*args)`` in a write transaction shared with the writes that arrive meanwhile
        (group commit, see the module's docstring); its result once the COMMIT is done."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((fn, args, future))
        if not self._flushing:
            self._flushing = True
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    outcomes = await asyncio.to_thread(self._run, self._group, batch)
                except BaseException as exc:    # nothing of the batch is committed
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, _, future), (ok, value) in zip(batch, outcomes):
                    if not future.done():
                        if ok:
                            future.set_result(value)
                        else:
                            future.set_exception(value)
        finally:
            self._flushing = False
            if self._pending:               # arrived while the loop was stopping
                self._flushing = True
                self._flusher = asyncio.get_running_loop().create_task(self._flush())

    def _group(self, batch) -> list[tuple[bool, object]]:
        """One transaction for every write of ``batch``, each in its own SAVEPOINT."""
        def writes():
            outcomes = []
            for fn, args, _ in batch:
                self._db.execute("SAVEPOINT write")
                try:
                    value = fn(*args)
                except Exception as exc:
                    if not self._db.in_transaction:
                        raise               # SQLite ended the transaction: all of it is lost
                    self._db.execute("ROLLBACK TO write")
                    self._db.execute("RELEASE write")
                    outcomes.append((False, exc))
                    continue
                self._db.execute("RELEASE write")
                outcomes.append((True, value))
            return outcomes

        outcomes = self._transaction(writes)
        self.commits += 1
        self.committed_writes += len(batch)
        return outcomes

    def _add_columns(self, table: str, columns: dict[str, str]) -> None:
        """Migrate a catalog written before these columns of ``table`` existed: add each
        missing one (``{name: type and default}``); another process may have done it."""
        have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in have:
                with contextlib.suppress(sqlite3.OperationalError):   # another process did
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def _transaction(self, fn, *args):
        """Run ``fn`` inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error).

        The error that stopped the transaction is the one raised: SQLite may have rolled
        back by itself (a full disk at COMMIT), and a failing ROLLBACK must not hide it.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            out = fn(*args)
            self._db.execute("COMMIT")
            return out
        except BaseException:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

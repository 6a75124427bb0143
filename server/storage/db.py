"""SQLite in the data directory: one file, WAL, ``synchronous=FULL``, one connection.

A committed transaction is on disk, so anything acknowledged survives a crash.
:class:`Database` is the catalog file of one process: it owns THE connection to it,
used from worker threads under one lock (SQLite connections are not thread-safe), and
applies the schema of every table module when opened. The server builds one and hands
it to every store (app.py); the command line and the tests may open their own. Several
processes (servers sharing a data directory, the command line) may open the same file.

The table modules (audit.py, usage.py, keys.py, jobs/catalog.py, ...) keep their SQL as
plain functions taking ``tx``, the sqlite3 connection inside the transaction, passed
explicitly; the connection and transaction handling lives here only (the seam for another
database backend). A module registers its schema (and the columns it added later) with
:func:`table`; its facade class (:class:`Store`) holds the shared Database. A caller
may compose several modules' functions in one ``db.write`` (a job's end, its usage
record and its audit entry).

**Group commit.** :meth:`Database.write` is how the server's coroutines write: the
writes that arrive while one COMMIT (and its fsync) is under way wait, and then go
together in the next transaction, each in its own SAVEPOINT (a write that raises is
rolled back alone and its caller gets the error), with one COMMIT for all of them.
A caller's ``await`` returns only after the COMMIT that holds its write: what it then
acknowledges is on disk, as with one transaction per write, but concurrent writes share
one fsync instead of one each, whatever tables they touch (a job's end, its usage record
and audit entry, and the audit entries of concurrent calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["Database", "FILENAME", "Store", "add_columns", "connect", "schema", "table"]

FILENAME = "catalog.sqlite3"

#: The schema functions of the table modules imported so far (see :func:`table`).
_TABLES: list[Callable[[sqlite3.Connection], None]] = []


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def table(create: Callable[[sqlite3.Connection], None]):
    """Register ``create(tx)``, a table module's schema and column migrations: every
    :class:`Database` opened from now on applies it, and one already open applies it when
    a store of that module is built on it (:meth:`Database.ensure`)."""
    if create not in _TABLES:
        _TABLES.append(create)
    return create


def schema(sql: str) -> Callable[[sqlite3.Connection], None]:
    """A schema function that runs the ``CREATE ... IF NOT EXISTS`` script ``sql``."""
    def create(tx: sqlite3.Connection) -> None:
        tx.executescript(sql)
    return create


def add_columns(tx: sqlite3.Connection, name: str, columns: dict[str, str]) -> None:
    """Migrate a catalog written before these columns of table ``name`` existed: add each
    missing one (``{name: type and default}``); another process may have done it."""
    have = {r[1] for r in tx.execute(f"PRAGMA table_info({name})")}
    for column, kind in columns.items():
        if column not in have:
            with contextlib.suppress(sqlite3.OperationalError):   # another process did
                tx.execute(f"ALTER TABLE {name} ADD COLUMN {column} {kind}")


class Database:
    """The catalog file of one data directory in this process: its one connection, the
    lock around it, and group commit.

    - :meth:`write` (async): ``fn(tx, *args)`` joins the next group commit in its own
      SAVEPOINT; returns once the COMMIT holding it is done.
    - :meth:`read` (async): ``fn(tx, *args)`` off the event loop (autocommit).
    - :meth:`run` / :meth:`transaction` (blocking, e.g. the command line): ``fn(tx,
      *args)`` in autocommit, or inside BEGIN IMMEDIATE ... COMMIT.
    """

    def __init__(self, data_dir: str | Path, filename: str = FILENAME):
        self.path = Path(data_dir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = connect(self.path)
        self._closed = False
        self._applied: set = set()
        for create in list(_TABLES):
            self.ensure(create)
        self._pending: list[tuple] = []
        self._flushing = False
        self._flusher: asyncio.Task | None = None
        #: Transactions committed by :meth:`write`, and the writes they held.
        self.commits = 0
        self.committed_writes = 0

    @property
    def connection(self) -> sqlite3.Connection:
        """THE sqlite3 connection (e.g. for a trace callback); use it under :meth:`run`."""
        return self._conn

    def ensure(self, create: Callable[[sqlite3.Connection], None]) -> None:
        """Apply the schema function ``create`` unless this Database already has."""
        with self._lock:
            if create not in self._applied:
                create(self._conn)
                self._applied.add(create)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def run(self, fn, *args):
        """``fn(tx, *args)`` under the lock, in autocommit (blocking)."""
        with self._lock:
            return fn(self._conn, *args)

    def transaction(self, fn, *args):
        """``fn(tx, *args)`` in one BEGIN IMMEDIATE ... COMMIT transaction (blocking)."""
        return self.run(self._transaction, fn, *args)

    async def read(self, fn, *args):
        """:meth:`run` off the event loop."""
        return await asyncio.to_thread(self.run, fn, *args)

    async def write(self, fn, *args):
        """``fn(tx, *args)`` in a write transaction shared with the writes that arrive
        meanwhile (group commit, see the module's docstring); its result once the COMMIT
        is done."""
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
                    outcomes = await asyncio.to_thread(self.run, self._group, batch)
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

    def _group(self, tx: sqlite3.Connection, batch) -> list[tuple[bool, object]]:
        """One transaction for every write of ``batch``, each in its own SAVEPOINT."""
        def writes(tx):
            outcomes = []
            for fn, args, _ in batch:
                tx.execute("SAVEPOINT write")
                try:
                    value = fn(tx, *args)
                except Exception as exc:
                    if not tx.in_transaction:
                        raise               # SQLite ended the transaction: all of it is lost
                    tx.execute("ROLLBACK TO write")
                    tx.execute("RELEASE write")
                    outcomes.append((False, exc))
                    continue
                tx.execute("RELEASE write")
                outcomes.append((True, value))
            return outcomes

        outcomes = self._transaction(tx, writes)
        self.commits += 1
        self.committed_writes += len(batch)
        return outcomes

    @staticmethod
    def _transaction(tx: sqlite3.Connection, fn, *args):
        """Run ``fn(tx, *args)`` inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error).

        The error that stopped the transaction is the one raised: SQLite may have rolled
        back by itself (a full disk at COMMIT), and a failing ROLLBACK must not hide it.
        """
        tx.execute("BEGIN IMMEDIATE")
        try:
            out = fn(tx, *args)
            tx.execute("COMMIT")
            return out
        except BaseException:
            if tx.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    tx.execute("ROLLBACK")
            raise


class Store:
    """Base of the facades over the table functions (AuditLog, Catalog, ...): holds a
    :class:`Database`, not a subclass of it.

    Built on the shared Database (the server's) or on a data directory, when it opens
    and owns its own (the tests, the offline command line); :meth:`close` closes only a
    Database it opened. ``TABLES``: the schema functions it needs (:func:`table`).
    """

    TABLES: tuple[Callable[[sqlite3.Connection], None], ...] = ()
    FILENAME = FILENAME

    def __init__(self, db: Database | str | Path):
        if isinstance(db, Database):
            self.db, self._owns_db = db, False
        else:
            self.db, self._owns_db = Database(db), True
        for create in self.TABLES:
            self.db.ensure(create)

    @property
    def path(self) -> Path:
        return self.db.path

    @property
    def commits(self) -> int:
        return self.db.commits

    @property
    def committed_writes(self) -> int:
        return self.db.committed_writes

    def close(self) -> None:
        if self._owns_db:
            self.db.close()

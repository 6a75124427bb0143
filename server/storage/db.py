"""The catalog: SQLite in the data directory (one file, WAL, ``synchronous=FULL``, one
connection; the embedded default), or PostgreSQL (``--catalog postgresql://...``,
postgres.py) when several hosts share it.

A committed transaction is on disk, so anything acknowledged survives a crash.
:class:`Database` is the catalog file of one process: it owns THE connection to it,
used from worker threads under one lock (SQLite connections are not thread-safe), and
applies the schema of every table module when opened. The server builds one and hands
it to every store (app.py); the command line and the tests may open their own. Several
processes (servers sharing a data directory, the command line) may open the same file.

The table modules (audit.py, usage.py, keys.py, jobs/catalog.py, ...) keep their SQL as
plain functions taking ``tx``, the sqlite3 connection inside the transaction, passed
explicitly, in one dialect that both backends take (postgres.py); the connection and
transaction handling lives here only (:class:`SqliteBackend`, postgres.PostgresBackend).
A module registers its schema with :func:`table`: ordered migration steps under a name,
applied once each and recorded in the ``schema_versions`` table (the same mechanism on
both backends; ``medcompute catalog migrate`` applies them all); its facade class
(:class:`Store`) holds the shared Database. A caller
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
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["Database", "FILENAME", "Migration", "SqliteBackend", "Store", "add_columns",
           "connect", "notify", "schema", "table"]

FILENAME = "catalog.sqlite3"

#: The migrations of the table modules imported so far (see :func:`table`).
_TABLES: list[Migration] = []

_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_versions (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    applied_at REAL NOT NULL
);
"""


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def notify(tx, channel: str, payload: str) -> None:
    """Tell every front end listening on ``channel`` (:meth:`Database.listen`) once the
    transaction ``tx`` commits (PostgreSQL's NOTIFY; nothing on SQLite, whose front ends
    share one host and poll the catalog)."""
    if not isinstance(tx, sqlite3.Connection):
        tx.execute("SELECT pg_notify(?, ?)", (channel, payload))


class Migration:
    """A table module's schema as ordered steps ``step(tx)`` under ``name``: version N
    of it is its first N steps. A step is written to be idempotent (``CREATE ... IF NOT
    EXISTS``, :func:`add_columns`), so a catalog from before versions were recorded, or
    two processes migrating at once, end the same; the versions make a step run once."""

    def __init__(self, name: str, steps: tuple[Callable, ...]):
        self.name, self.steps = name, steps

    @property
    def version(self) -> int:
        return len(self.steps)

    def __call__(self, tx) -> None:
        for step in self.steps:
            step(tx)

    def __repr__(self) -> str:
        return f"Migration({self.name!r}, version {self.version})"


def _name_of(step: Callable) -> str:
    sql = getattr(step, "sql", None)
    if sql:
        found = re.search(r"CREATE TABLE IF NOT EXISTS (\w+)", sql)
        if found:
            return found.group(1)
    return f"{step.__module__}.{step.__qualname__}"


def table(*steps: Callable, name: str | None = None) -> Migration:
    """Register a table module's schema: ``steps`` in order (each ``step(tx)``), named
    ``name`` (default: the first table a :func:`schema` step creates, else the first
    step's qualified name). Every :class:`Database` opened from now on brings it to its
    version, and one already open does when a store of that module is built on it
    (:meth:`Database.ensure`). A later change to the schema is a step added at the end."""
    migration = Migration(name or _name_of(steps[0]), tuple(steps))
    for known in _TABLES:
        if known.name == migration.name:
            return known
    _TABLES.append(migration)
    return migration


def migrations() -> list[Migration]:
    """The migrations registered so far, in registration order."""
    return list(_TABLES)


def schema(sql: str) -> Callable[[sqlite3.Connection], None]:
    """A schema step that runs the ``CREATE ... IF NOT EXISTS`` script ``sql``."""
    def create(tx) -> None:
        tx.executescript(sql)
    create.sql = sql
    return create


def add_columns(tx, name: str, columns: dict[str, str]) -> None:
    """Migrate a catalog written before these columns of table ``name`` existed: add each
    missing one (``{name: type and default}``); another process may have done it."""
    if not isinstance(tx, sqlite3.Connection):
        tx.add_columns(name, columns)
        return
    have = {r[1] for r in tx.execute(f"PRAGMA table_info({name})")}
    for column, kind in columns.items():
        if column not in have:
            with contextlib.suppress(sqlite3.OperationalError):   # another process did
                tx.execute(f"ALTER TABLE {name} ADD COLUMN {column} {kind}")


class SqliteBackend:
    """THE sqlite3 connection to one catalog file, used from worker threads under one
    lock (SQLite connections are not thread-safe); writers are one at a time through
    ``BEGIN IMMEDIATE``."""

    name = "sqlite"

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self.conn = connect(path)
        self.latency: Callable[[float], None] | None = None

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def stats(self) -> dict[str, int]:
        return {"size": 1, "available": 0 if self._lock.locked() else 1, "waiting": 0,
                "max": 1}

    def run(self, fn, *args):
        if self.latency is None:
            with self._lock:
                return fn(self.conn, *args)
        start = time.perf_counter()
        try:
            with self._lock:
                return fn(self.conn, *args)
        finally:
            self.latency(time.perf_counter() - start)

    @staticmethod
    def begin(tx: sqlite3.Connection) -> None:
        tx.execute("BEGIN IMMEDIATE")

    errors = (sqlite3.Error,)

    def close(self) -> None:
        with self._lock:
            self.conn.close()


class Database:
    """The catalog of one data directory (or the PostgreSQL database ``url`` names) in
    this process: its backend (connection or pool), and group commit.

    - :meth:`write` (async): ``fn(tx, *args)`` joins the next group commit in its own
      SAVEPOINT; returns once the COMMIT holding it is done.
    - :meth:`read` (async): ``fn(tx, *args)`` off the event loop (autocommit).
    - :meth:`run` / :meth:`transaction` (blocking, e.g. the command line): ``fn(tx,
      *args)`` in autocommit, or inside one write transaction.

    :meth:`open` takes what ``--catalog`` does: nothing (the data directory's SQLite
    file), ``sqlite:PATH`` or ``postgresql://...``.
    """

    def __init__(self, data_dir: str | Path | None = None, filename: str = FILENAME, *,
                 url: str | None = None, **options):
        from medcompute.server.storage.postgres import is_url
        if url is None and data_dir is not None and is_url(str(data_dir)):
            url = str(data_dir)             # a catalog URL where a data directory would be
        if url is not None:
            from medcompute.server.storage.postgres import PostgresBackend
            self.path = None
            self.backend = PostgresBackend(url, **options)
        else:
            self.path = Path(data_dir) / filename
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.backend = SqliteBackend(self.path)
        self._closed = False
        self._applied: set = set()
        self._ensure_lock = threading.Lock()
        try:
            self._schema(lambda tx: tx.executescript(_VERSIONS))
            for create in list(_TABLES):
                self.ensure(create)
        except BaseException:               # e.g. the database is unreachable
            self.backend.close()
            raise
        self._pending: list[tuple] = []
        self._flushing = False
        self._flusher: asyncio.Task | None = None
        #: Transactions committed by :meth:`write`, and the writes they held.
        self.commits = 0
        self.committed_writes = 0

    @classmethod
    def open(cls, spec: str | None, data_dir: str | Path | None = None, **options) -> Database:
        """The catalog ``spec`` names (``--catalog``): None or ``""`` for the data
        directory's file, ``sqlite:PATH`` for that SQLite file, ``postgresql://...``
        (``options``: the PostgreSQL backend's, e.g. ``timeout``; SQLite takes none)."""
        from medcompute.server.storage.postgres import is_url
        if spec and is_url(spec):
            return cls(url=spec, **options)
        if spec and spec.startswith("sqlite:"):
            path = Path(spec[len("sqlite:"):])
            return cls(path.parent, path.name)
        if spec:
            raise ValueError(f"--catalog: expected postgresql://... or sqlite:PATH, got "
                             f"{spec.split('://')[0].split(':')[0]!r}")
        if data_dir is None:
            raise ValueError("--catalog: no data directory and no catalog given")
        return cls(data_dir)

    @property
    def kind(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.backend.name

    def describe(self) -> str:
        """Where the catalog is (a PostgreSQL URL without its password)."""
        return self.backend.describe()

    @property
    def connection(self) -> sqlite3.Connection:
        """THE sqlite3 connection (e.g. for a trace callback); use it under :meth:`run`.
        SQLite only."""
        if not isinstance(self.backend, SqliteBackend):
            raise AttributeError("a PostgreSQL catalog has no single connection")
        return self.backend.conn

    def listen(self, channel: str, callback: Callable[[str], None]) -> bool:
        """Call ``callback(payload)`` (from a thread of its own) for each :func:`notify`
        on ``channel`` committed by any process sharing this catalog; False when the
        backend has no notifications (SQLite)."""
        listen = getattr(self.backend, "listen", None)
        if listen is None:
            return False
        listen(channel, callback)
        return True

    def versions(self) -> dict[str, int]:
        """The recorded version of every migration applied to this catalog."""
        return dict(self.run(lambda tx: tx.execute(
            "SELECT name, version FROM schema_versions ORDER BY name").fetchall()))

    def ensure(self, create: Callable) -> None:
        """Bring the catalog to ``create``'s version (a :class:`Migration`, or a plain
        schema function) unless this Database already has."""
        with self._ensure_lock:
            if create in self._applied:
                return
            if isinstance(create, Migration):
                self._schema(self._migrate, create)
            else:
                self._schema(create)
            self._applied.add(create)

    def _schema(self, fn, *args) -> None:
        """Run a schema change: on PostgreSQL in one write transaction (its DDL is
        transactional, and two front ends creating one table at once would collide in
        its catalog without the writers' lock); on SQLite in autocommit (its scripts
        commit on their own; each step is idempotent and SQLite locks the file)."""
        if self.kind == "sqlite":
            self.run(fn, *args)
        else:
            self.transaction(fn, *args)

    def _migrate(self, tx, migration: Migration) -> None:
        """Apply the steps of ``migration`` past the version recorded, then record it;
        each step is idempotent, so two processes migrating at once end the same."""
        row = tx.execute("SELECT version FROM schema_versions WHERE name = ?",
                         (migration.name,)).fetchone()
        done = row[0] if row else 0
        if done >= migration.version:
            return
        for step in migration.steps[done:]:
            step(tx)
        tx.execute("INSERT INTO schema_versions (name, version, applied_at) VALUES (?, ?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET version = excluded.version, "
                   "applied_at = excluded.applied_at WHERE schema_versions.version < "
                   "excluded.version", (migration.name, migration.version, time.time()))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.backend.close()

    def run(self, fn, *args):
        """``fn(tx, *args)`` in autocommit (blocking)."""
        return self.backend.run(fn, *args)

    def transaction(self, fn, *args):
        """``fn(tx, *args)`` in one write transaction (blocking)."""
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

    def _group(self, tx, batch) -> list[tuple[bool, object]]:
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

    def _transaction(self, tx, fn, *args):
        """Run ``fn(tx, *args)`` inside one write transaction (SQLite: BEGIN IMMEDIATE;
        PostgreSQL: BEGIN and the writers' lock), COMMIT, ROLLBACK on any error.

        The error that stopped the transaction is the one raised: SQLite may have rolled
        back by itself (a full disk at COMMIT), and a failing ROLLBACK must not hide it.
        """
        self.backend.begin(tx)
        try:
            out = fn(tx, *args)
            tx.execute("COMMIT")
            return out
        except BaseException:
            if tx.in_transaction:
                with contextlib.suppress(*self.backend.errors):
                    tx.execute("ROLLBACK")
            raise


class Store:
    """Base of the facades over the table functions (AuditLog, Catalog, ...): holds a
    :class:`Database`, not a subclass of it.

    Built on the shared Database (the server's) or on a data directory (or a catalog
    URL), when it opens and owns its own (the tests, the offline command line);
    :meth:`close` closes only a Database it opened. ``TABLES``: the migrations it needs
    (:func:`table`).
    """

    TABLES: tuple[Migration, ...] = ()
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

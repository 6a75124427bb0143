"""SQLite in the data directory: one file, WAL, ``synchronous=FULL``.

A committed transaction is on disk, so anything acknowledged survives a crash.
Each store keeps one connection, used from worker threads under a lock (SQLite
connections are not thread-safe); its coroutines run statements off the event
loop. Several processes (servers sharing a data directory, the command line)
may open the same file.
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

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, fn, *args):
        with self._lock:
            return fn(*args)

    async def _call(self, fn, *args):
        return await asyncio.to_thread(self._run, fn, *args)

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

"""Moving a catalog to another backend: ``medcompute catalog copy --from sqlite:PATH --to
postgresql://...``, verified row for row.

:func:`copy` reads every table of the source catalog (brought to the current schema
version first, as opening it does) and writes its rows into the target, which must be
empty, in ONE write transaction: a copy that fails leaves the target as it was. The
identity columns' sequences (``seq``) then continue after the copied rows. :func:`verify`
compares the two, table by table, as multisets of rows (each row's canonical encoding
hashed, the hashes sorted: no ordering of the backends' own is trusted), and the copy
raises :class:`CopyMismatch` naming the first table that differs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from medcompute.server.errors import FailedPrecondition, Internal
from medcompute.server.storage.db import Database

__all__ = ["CopyMismatch", "CopyReport", "copy", "tables", "verify"]

#: Rows read and written per round trip.
BATCH = 1000

#: The migration mechanism's own table: each catalog keeps its own.
_SKIP = {"schema_versions"}


class CopyMismatch(Internal):
    """The target does not hold the same rows as the source after a copy."""


@dataclass(frozen=True)
class CopyReport:
    """What :func:`copy` moved: rows per table, all of them verified."""

    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def tables(db: Database) -> list[str]:
    """The catalog's tables (the migration mechanism's own left out), by name."""
    def read(tx):
        if db.kind == "sqlite":
            names = [r[0] for r in tx.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                "'sqlite_%' ORDER BY name")]
        else:
            names = tx.tables()
        return [n for n in names if n not in _SKIP]
    return db.run(read)


def _columns(db: Database, table: str) -> list[str]:
    def read(tx):
        if db.kind == "sqlite":
            return [r[1] for r in tx.execute(f"PRAGMA table_info({table})")]
        return tx.columns(table)
    return db.run(read)


def _count(tx, table: str) -> int:
    return int(tx.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _canonical(row) -> bytes:
    values = []
    for v in row:
        if isinstance(v, memoryview):
            v = bytes(v)
        elif isinstance(v, bool):
            v = int(v)
        values.append(v)
    return hashlib.sha256(repr(tuple(values)).encode()).digest()


def _digests(db: Database, table: str, columns: list[str]) -> list[bytes]:
    def read(tx):
        cur = tx.execute(f"SELECT {', '.join(columns)} FROM {table}")
        out = []
        while True:
            rows = cur.fetchmany(BATCH)
            if not rows:
                return sorted(out)
            out.extend(_canonical(r) for r in rows)
    return db.run(read)


def verify(source: Database, target: Database) -> dict[str, int]:
    """Rows per table, once every table of ``source`` holds the same rows in ``target``;
    CopyMismatch naming the first that does not."""
    rows = {}
    for table in tables(source):
        columns = _columns(source, table)
        a, b = _digests(source, table, columns), _digests(target, table, columns)
        if a != b:
            missing = len(set(a) - set(b))
            raise CopyMismatch(
                f"the copy of table {table} differs from the source: {len(a)} rows there, "
                f"{len(b)} in the target, {missing} of the source's not found in it")
        rows[table] = len(a)
    return rows


def copy(source: Database, target: Database) -> CopyReport:
    """Copy every row of ``source`` into the empty ``target`` in one transaction, then
    :func:`verify` the two."""
    names = tables(source)
    have = set(tables(target))
    for table in names:
        if table not in have:
            raise FailedPrecondition(
                f"the target catalog has no table {table}: its schema is older than the "
                "source's; run `medcompute catalog migrate` on it first", "to")
    columns = {t: _columns(source, t) for t in names}
    for table in names:
        missing = set(columns[table]) - set(_columns(target, table))
        if missing:
            raise FailedPrecondition(
                f"the target catalog's table {table} lacks the columns {sorted(missing)}; "
                "run `medcompute catalog migrate` on it first", "to")

    def write(tx):
        for table in names:
            if _count(tx, table):
                raise FailedPrecondition(
                    f"the target catalog is not empty (table {table} has rows); copy into "
                    "a new, empty catalog", "to")
        for table in names:
            cols = columns[table]
            insert = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                      f"({', '.join('?' for _ in cols)})")

            def stream(tx_source, table=table, cols=cols, insert=insert):
                cur = tx_source.execute(f"SELECT {', '.join(cols)} FROM {table}")
                while rows := cur.fetchmany(BATCH):
                    tx.executemany(insert, [tuple(bytes(v) if isinstance(v, memoryview)
                                                  else v for v in r) for r in rows])

            source.run(stream)
        if target.kind == "postgresql":
            _restart_identities(tx)

    target.transaction(write)
    return CopyReport(verify(source, target))


def _restart_identities(tx) -> None:
    """Each identity column's sequence continues after the largest value copied."""
    found = tx.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE "
        "table_schema = current_schema() AND is_identity = 'YES'").fetchall()
    for table, column in found:
        tx.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                   f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)")

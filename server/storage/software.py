"""The software registry's tables: package versions, grants, downloads and uses.

A package version is one wheel, kept as a file named by its SHA-256 (``wheel_path``);
its row holds the metadata the publisher gave, the operations the wheel declares (as
JSON) and its status: ``pending`` until an administrator approves it, then ``approved``,
and ``retired`` once withdrawn. Grants entitle a subscriber to download a package (any
approved version of it); each download and each use of an operation is one row, counted
for the publisher and priced on the invoice.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from medcompute.server.storage.db import Store, schema, table

__all__ = ["PackageRow", "SoftwareBook", "STATUSES", "wheel_path", "write_wheel"]

STATUSES = ("pending", "approved", "retired")

create_tables = table(schema("""
CREATE TABLE IF NOT EXISTS software_packages (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    filename TEXT NOT NULL,
    size INTEGER NOT NULL,
    vendor TEXT NOT NULL,
    licence TEXT NOT NULL,
    fee_per_use REAL NOT NULL,
    publisher TEXT NOT NULL,
    status TEXT NOT NULL,
    operations TEXT NOT NULL,
    added_at REAL NOT NULL,
    decided_at REAL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS software_grants (
    name TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    granted_at REAL NOT NULL,
    PRIMARY KEY (name, subscriber)
);
CREATE TABLE IF NOT EXISTS software_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    kind TEXT NOT NULL,
    fee REAL NOT NULL,
    job_id TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS software_events_subscriber ON software_events (subscriber, at);
"""))


@dataclass(frozen=True)
class PackageRow:
    name: str
    version: str
    sha256: str
    filename: str
    size: int
    vendor: str
    licence: str
    fee_per_use: float
    publisher: str
    status: str
    operations: list = field(default_factory=list)
    added_at: float = 0.0
    decided_at: float | None = None


_COLUMNS = ("name, version, sha256, filename, size, vendor, licence, fee_per_use, publisher, "
            "status, operations, added_at, decided_at")


def _row(r) -> PackageRow:
    values = list(r)
    values[10] = json.loads(values[10])
    return PackageRow(*values)


def insert(tx, row: PackageRow) -> None:
    tx.execute(f"INSERT INTO software_packages ({_COLUMNS}) VALUES "
               "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (row.name, row.version, row.sha256, row.filename, row.size, row.vendor,
                row.licence, row.fee_per_use, row.publisher, row.status,
                json.dumps(row.operations), row.added_at, row.decided_at))


def get(tx, name: str, version: str) -> PackageRow | None:
    r = tx.execute(f"SELECT {_COLUMNS} FROM software_packages WHERE name = ? AND version = ?",
                   (name, version)).fetchone()
    return _row(r) if r else None


def versions(tx, name: str = "") -> list[PackageRow]:
    """Every version (of ``name`` when given), by name and then oldest first."""
    where, args = ("WHERE name = ?", (name,)) if name else ("", ())
    return [_row(r) for r in tx.execute(
        f"SELECT {_COLUMNS} FROM software_packages {where} ORDER BY name, added_at",
        args).fetchall()]


def set_status(tx, name: str, version: str, status: str, at: float) -> None:
    tx.execute("UPDATE software_packages SET status = ?, decided_at = ? "
               "WHERE name = ? AND version = ?", (status, at, name, version))


def grant(tx, name: str, subscriber: str, at: float) -> None:
    tx.execute("INSERT INTO software_grants (name, subscriber, granted_at) VALUES (?, ?, ?) "
               "ON CONFLICT (name, subscriber) DO NOTHING", (name, subscriber, at))


def granted(tx, name: str, subscriber: str) -> bool:
    return tx.execute("SELECT 1 FROM software_grants WHERE name = ? AND subscriber = ?",
                      (name, subscriber)).fetchone() is not None


def add_event(tx, name: str, version: str, subscriber: str, kind: str, fee: float,
              at: float, job_id: str = "") -> None:
    """One download or use (``kind``)."""
    tx.execute("INSERT INTO software_events (name, version, subscriber, kind, fee,"
               " job_id, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
               (name, version, subscriber, kind, fee, job_id, at))


def add_uses(tx, job_id: str, subscriber: str, at: float, record: dict) -> None:
    """A use event for each software line of a job's usage ``record`` (usage.py), written
    in the transaction that records the job's end."""
    for line in record.get("software", ()):
        add_event(tx, line["package"], line["version"], subscriber, "use", line["fee"], at,
                  job_id)


def events(tx, subscriber: str | None, since: float = 0.0, until: float = 0.0) -> list[dict]:
    """The downloads and uses (of ``subscriber``; None: everyone's) in ``[since, until)``."""
    clauses, args = ["at >= ?"], [since]
    if until:
        clauses.append("at < ?")
        args.append(until)
    if subscriber is not None:
        clauses.append("subscriber = ?")
        args.append(subscriber)
    rows = tx.execute("SELECT name, version, subscriber, kind, fee, job_id, at FROM "
                      f"software_events WHERE {' AND '.join(clauses)} ORDER BY seq",
                      args).fetchall()
    keys = ("name", "version", "subscriber", "kind", "fee", "job_id", "at")
    return [dict(zip(keys, r)) for r in rows]


def counts(tx, publisher: str | None) -> list[tuple]:
    """(name, version, uses, downloads, fees of the uses) per version (of the packages of
    ``publisher``; None: all)."""
    where, args = ("WHERE p.publisher = ?", (publisher,)) if publisher is not None else ("", ())
    return tx.execute(
        "SELECT p.name, p.version,"
        " COALESCE(SUM(CASE WHEN e.kind = 'use' THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN e.kind = 'download' THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN e.kind = 'use' THEN e.fee ELSE 0 END), 0)"
        " FROM software_packages p LEFT JOIN software_events e"
        " ON e.name = p.name AND e.version = p.version"
        f" {where} GROUP BY p.name, p.version ORDER BY p.name, p.added_at", args).fetchall()


def wheel_path(data_dir: str | Path, sha256: str) -> Path:
    """Where the wheel with this SHA-256 is kept."""
    return Path(data_dir) / "software" / f"{sha256}.whl"


def write_wheel(data_dir: str | Path, sha256: str, data: bytes) -> Path:
    """The wheel written atomically (temporary file, fsync, rename) under its SHA-256."""
    path = wheel_path(data_dir, sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class SoftwareBook(Store):
    """The registry's tables over the server's Database (or a data directory's)."""

    TABLES = (create_tables,)

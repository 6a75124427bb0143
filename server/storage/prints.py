"""The print jobs: one row per request to print a stored image on a DICOM printer, with
the printer's and the job's status and the sheets printed (metered per subscriber)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from medcompute.server.storage.db import Store, schema, table

__all__ = ["PrintBook", "PrintJob", "add", "jobs", "sheets"]

create = table(schema("""
CREATE TABLE IF NOT EXISTS print_jobs (
    job_id TEXT PRIMARY KEY,
    subscriber TEXT NOT NULL,
    created_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS print_jobs_subscriber ON print_jobs (subscriber, created_at);
"""))


@dataclass(frozen=True)
class PrintJob:
    job_id: str
    subscriber: str
    image_id: str
    printer: str
    display_format: str
    film_size: str
    orientation: str
    copies: int
    bits: int
    #: The slices printed (indices along the first axis); empty with mip or a 2-D image.
    slices: tuple[int, ...] = ()
    mip: bool = False
    #: DONE or FAILED.
    status: str = "FAILED"
    reason: str = ""
    printer_status: str = ""
    printer_status_info: str = ""
    #: Sheets printed: film boxes times copies.
    sheets: int = 0
    created_at: float = 0.0
    film_session_uid: str = field(default="", repr=False)


def add(tx, job: PrintJob) -> None:
    tx.execute("INSERT INTO print_jobs (job_id, subscriber, created_at, record) "
               "VALUES (?, ?, ?, ?)",
               (job.job_id, job.subscriber, job.created_at, json.dumps(asdict(job))))


def _job(text: str) -> PrintJob:
    data = json.loads(text)
    data["slices"] = tuple(data.get("slices", ()))
    return PrintJob(**data)


def jobs(tx, subscriber: str, limit: int = 100) -> list[PrintJob]:
    """The subscriber's print jobs, newest first."""
    return [_job(r[0]) for r in tx.execute(
        "SELECT record FROM print_jobs WHERE subscriber = ? ORDER BY created_at DESC LIMIT ?",
        (subscriber, limit)).fetchall()]


def sheets(tx, subscriber: str | None, since: float = 0.0, until: float = 0.0) -> dict:
    """Sheets printed per subscriber (of ``subscriber``; None: all) in [since, until)."""
    clauses, args = ["created_at >= ?"], [since]
    if until:
        clauses.append("created_at < ?")
        args.append(until)
    if subscriber is not None:
        clauses.append("subscriber = ?")
        args.append(subscriber)
    out: dict[str, int] = {}
    for who, record in tx.execute(f"SELECT subscriber, record FROM print_jobs WHERE "
                                  f"{' AND '.join(clauses)}", args).fetchall():
        out[who] = out.get(who, 0) + int(json.loads(record).get("sheets", 0))
    return out


class PrintBook(Store):
    TABLES = (create,)

"""Jobs and their usage records, in the SQLite catalog of the data directory (db.py)."""

from __future__ import annotations

import json
from dataclasses import asdict

from medcompute.server.db import Database
from medcompute.server.jobs import Job, State

__all__ = ["Catalog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    subscriber TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_subscriber ON jobs (subscriber, created_at);
CREATE TABLE IF NOT EXISTS usage (
    job_id TEXT PRIMARY KEY,
    subscriber TEXT NOT NULL,
    finished_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_subscriber ON usage (subscriber, finished_at);
"""


def _job_row(job: Job) -> tuple:
    record = asdict(job)
    record["state"] = job.state.value
    return (job.id, job.subscriber, job.state.value, job.created_at, job.finished_at,
            json.dumps(record, sort_keys=True))


def _job_from(record: str) -> Job:
    data = json.loads(record)
    data["state"] = State(data["state"])
    for key in ("operations", "inputs"):
        data[key] = tuple(data[key])
    return Job(**data)


class Catalog(Database):
    """Jobs and usage records of one data directory."""

    SCHEMA = _SCHEMA

    # -- jobs ---------------------------------------------------------------
    def _put_job(self, job: Job) -> None:
        self._db.execute(
            "INSERT INTO jobs (id, subscriber, state, created_at, finished_at, record)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
            " finished_at = excluded.finished_at, record = excluded.record",
            _job_row(job),
        )

    async def put_job(self, job: Job) -> None:
        """Insert or update a job; durable when this returns."""
        await self._call(self._put_job, job)

    def _finish(self, job: Job, usage: dict | None) -> None:
        self._put_job(job)
        if usage is not None:
            # Exactly one usage record per job: a second write for the same job is ignored.
            self._db.execute(
                "INSERT OR IGNORE INTO usage (job_id, subscriber, finished_at, record)"
                " VALUES (?, ?, ?, ?)",
                (job.id, job.subscriber, job.finished_at or 0.0,
                 json.dumps(usage, sort_keys=True)),
            )

    async def finish_job(self, job: Job, usage: dict | None) -> None:
        """Store a job's final state and its usage record in one transaction."""
        await self._call(self._transaction, self._finish, job, usage)

    def _get_job(self, job_id: str) -> Job | None:
        row = self._db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job_from(row[0]) if row else None

    async def get_job(self, job_id: str) -> Job | None:
        return await self._call(self._get_job, job_id)

    def _usage(self, job_id: str) -> list[dict]:
        rows = self._db.execute("SELECT record FROM usage WHERE job_id = ?", (job_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    async def usage_for(self, job_id: str) -> list[dict]:
        """Every usage record stored for a job (there is at most one)."""
        return await self._call(self._usage, job_id)

    def _unfinished(self) -> list[Job]:
        rows = self._db.execute(
            "SELECT record FROM jobs WHERE state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED')"
        ).fetchall()
        return [_job_from(r[0]) for r in rows]

    async def unfinished_jobs(self) -> list[Job]:
        return await self._call(self._unfinished)

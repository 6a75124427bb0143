"""Jobs, their usage records, asynchronous requests, leases and deliveries, in the
SQLite catalog of the data directory (db.py).

Every job that has not ended holds a *lease*: the server running it renews it while it
lives. A job whose lease has run out belongs to a server that stopped; any server of the
data directory then takes it over (an asynchronous job is run again from its inputs on
disk) or records it as failed. Ending a job is one transaction that first checks that it
has not ended already, so a job ends once and is billed once whatever the races."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from medcompute.server.errors import Aborted, AlreadyExists
from medcompute.server.jobs.states import Job, State
from medcompute.server.storage import usage as usage_table
from medcompute.server.storage.db import Store, schema, table

__all__ = ["Catalog", "finish_job", "put_job", "queue"]

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
CREATE TABLE IF NOT EXISTS job_requests (
    job_id TEXT PRIMARY KEY,
    subscriber TEXT NOT NULL,
    idempotency_key TEXT,
    request_sha256 TEXT NOT NULL,
    header BLOB NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    destination TEXT NOT NULL DEFAULT '',
    bytes_in INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_reason TEXT,
    result_header BLOB,
    result_path TEXT,
    result_removed_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS job_requests_key ON job_requests (subscriber, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS job_leases (
    job_id TEXT PRIMARY KEY,
    runner TEXT NOT NULL,
    until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS job_leases_runner ON job_leases (runner);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    delivered_at REAL NOT NULL,
    fetched_at REAL
);
CREATE INDEX IF NOT EXISTS deliveries_recipient ON deliveries (recipient, seq);
CREATE TABLE IF NOT EXISTS delivery_rules (
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (sender, recipient)
);
"""

_TERMINAL = "('SUCCEEDED', 'FAILED', 'CANCELLED')"


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



def put_job(tx, job: Job, runner: str = "", lease_seconds: float = 30.0) -> bool:
    """Insert or update ``job`` unless it has ended; False (nothing written) when it had.
    A job that has not ended gets (or renews) ``runner``'s lease for ``lease_seconds``."""
    changed = tx.execute(
        "INSERT INTO jobs (id, subscriber, state, created_at, finished_at, record)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
        " finished_at = excluded.finished_at, record = excluded.record"
        f" WHERE jobs.state NOT IN {_TERMINAL}",
        _job_row(job),
    ).rowcount
    if changed and runner and not job.state.terminal:
        tx.execute(
            "INSERT INTO job_leases (job_id, runner, until) VALUES (?, ?, ?)"
            " ON CONFLICT (job_id) DO UPDATE SET runner = excluded.runner,"
            " until = excluded.until",
            (job.id, runner, time.time() + lease_seconds))
    return bool(changed)


def finish_job(tx, job: Job) -> bool:
    """Store the end of ``job`` (its final state) and drop its lease; False, writing
    nothing, when it had already ended. Its usage record (storage/usage.py ``add``) and
    audit entry (storage/audit.py ``add``) go in the same transaction ``tx``."""
    row = tx.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()
    if row is not None and State(row[0]).terminal:
        return False
    put_job(tx, job)
    tx.execute("DELETE FROM job_leases WHERE job_id = ?", (job.id,))
    return True

def queue(tx, job: Job, bytes_in: int, runner: str = "", lease_seconds: float = 30.0) -> bool:
    """An asynchronous job's inputs are on disk: store it (QUEUED) and the bytes it
    received; False, writing nothing, when it had ended meanwhile."""
    if not put_job(tx, job, runner, lease_seconds):
        return False
    tx.execute("UPDATE job_requests SET bytes_in = ? WHERE job_id = ?", (bytes_in, job.id))
    return True


#: The schema of this module's tables, applied by every Database (db.py).
create = table(schema(_SCHEMA))


class Catalog(Store):
    """Jobs and usage records of one data directory.

    ``runner`` names this server process in the leases of the jobs it runs;
    ``lease_seconds`` is how long a lease lasts without renewal.
    """

    TABLES = (create, usage_table.create)

    def __init__(self, data_dir, *, runner: str = "", lease_seconds: float = 30.0):
        super().__init__(data_dir)
        self.runner = runner
        self.lease_seconds = lease_seconds

    # -- jobs ---------------------------------------------------------------
    def _put_job(self, job: Job) -> bool:
        return put_job(self._db, job, self.runner, self.lease_seconds)

    async def put_job(self, job: Job) -> bool:
        """Insert or update a job that has not ended; durable when this returns. False
        when the job had already ended (nothing is written)."""
        return await self.db.write(put_job, job, self.runner, self.lease_seconds)

    async def put_jobs(self, jobs: list[Job]) -> list[bool]:
        """:meth:`put_job` for many jobs in one write (one savepoint of a group commit)."""
        return await self.db.write(
            lambda tx: [put_job(tx, job, self.runner, self.lease_seconds) for job in jobs])

    async def finish_job(self, job: Job, usage: dict | None, extra=None) -> bool:
        """Store a job's final state and its usage record in one transaction (with
        ``extra(tx)`` run inside it). False, writing nothing, when the job had already
        ended. (The server's job pipeline writes the same, and the call's audit entry,
        itself: ``jobs.pipeline.JobPipeline.finish``.)"""
        def end(tx) -> bool:
            if not finish_job(tx, job):
                return False
            if usage is not None:
                usage_table.add(tx, job.id, job.subscriber, job.finished_at or 0.0, usage)
            if extra is not None:
                extra(tx)
            return True
        return await self.db.write(end)

    def _get_job(self, job_id: str) -> Job | None:
        row = self._db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job_from(row[0]) if row else None

    async def get_job(self, job_id: str) -> Job | None:
        return await self._call(self._get_job, job_id)

    async def usage_for(self, job_id: str) -> list[dict]:
        """Every usage record stored for a job (there is at most one)."""
        return await self.db.read(usage_table.for_job, job_id)

    def _unfinished(self) -> list[Job]:
        rows = self._db.execute(
            f"SELECT record FROM jobs WHERE state NOT IN {_TERMINAL}"
        ).fetchall()
        return [_job_from(r[0]) for r in rows]

    async def unfinished_jobs(self) -> list[Job]:
        return await self._call(self._unfinished)

    # -- asynchronous requests ------------------------------------------------
    def _create(self, job: Job, request: dict) -> tuple[Job, bool]:
        key = request.get("idempotency_key") or None
        if key is not None:
            row = self._db.execute(
                "SELECT r.job_id, r.request_sha256, j.record FROM job_requests r"
                " JOIN jobs j ON j.id = r.job_id WHERE r.subscriber = ? AND r.idempotency_key = ?",
                (job.subscriber, key)).fetchone()
            if row is not None:
                existing = _job_from(row[2])
                if existing.state.terminal and existing.queued_at is None:
                    # Never accepted (its upload failed): the key is free for a new attempt.
                    self._db.execute("UPDATE job_requests SET idempotency_key = NULL"
                                     " WHERE job_id = ?", (existing.id,))
                elif row[1] != request["request_sha256"]:
                    raise AlreadyExists(
                        f"this key was used for a different request (job {existing.id}); "
                        "use a new key for a new request", "header.idempotency_key")
                elif existing.state is State.RECEIVING:
                    raise Aborted(f"job {existing.id} with this key is still receiving its "
                                  "inputs; retry once that upload has ended",
                                  "header.idempotency_key")
                else:
                    return existing, False
        self._put_job(job)
        self._db.execute(
            "INSERT INTO job_requests (job_id, subscriber, idempotency_key, request_sha256,"
            " header, label, destination) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job.id, job.subscriber, key, request["request_sha256"], request["header"],
             request.get("label", ""), request.get("destination", "")))
        return job, True

    async def create_request(self, job: Job, request: dict) -> tuple[Job, bool]:
        """Record a new asynchronous job and its request; with an idempotency key that
        names an earlier job, that job and False instead."""
        return await self._commit(self._create, job, request)

    async def queue(self, job: Job, bytes_in: int, extra=None) -> bool:
        """The job's inputs are on disk: it is QUEUED (durable when this returns), with
        ``extra(tx)`` run in the same transaction."""
        def write(tx) -> bool:
            if not queue(tx, job, bytes_in, self.runner, self.lease_seconds):
                return False
            if extra is not None:
                extra(tx)
            return True
        return await self.db.write(write)

    def _request(self, job_id: str) -> dict | None:
        cur = self._db.execute("SELECT * FROM job_requests WHERE job_id = ?", (job_id,))
        row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row)) if row else None

    async def request(self, job_id: str) -> dict | None:
        """The stored request of an asynchronous job (None for a synchronous one)."""
        return await self._call(self._request, job_id)

    async def request_cancel(self, job_id: str, reason: str) -> None:
        await self._call(self._run_sql, "UPDATE job_requests SET cancel_reason = ?"
                         " WHERE job_id = ? AND cancel_reason IS NULL", (reason, job_id))

    def _run_sql(self, sql: str, args: tuple = ()) -> int:
        return self._db.execute(sql, args).rowcount

    async def pending_jobs(self, subscriber: str) -> int:
        """The subscriber's jobs that have not ended."""
        row = await self._call(lambda: self._db.execute(
            f"SELECT COUNT(*) FROM jobs WHERE subscriber = ? AND state NOT IN {_TERMINAL}",
            (subscriber,)).fetchone())
        return row[0]

    async def keyed_job(self, subscriber: str, key: str) -> Job | None:
        """The job an idempotency key of the subscriber names, if any."""
        row = await self._call(lambda: self._db.execute(
            "SELECT j.record FROM job_requests r JOIN jobs j ON j.id = r.job_id"
            " WHERE r.subscriber = ? AND r.idempotency_key = ?", (subscriber, key)).fetchone())
        return _job_from(row[0]) if row else None

    # -- leases -----------------------------------------------------------------
    async def renew(self) -> list[tuple[str, str]]:
        """Extend the leases of this runner's jobs; return the (job id, reason) of those
        whose cancellation was asked for (by any server)."""
        def renew():
            self._db.execute("UPDATE job_leases SET until = ? WHERE runner = ?",
                             (time.time() + self.lease_seconds, self.runner))
            return self._db.execute(
                "SELECT l.job_id, r.cancel_reason FROM job_leases l JOIN job_requests r"
                " ON r.job_id = l.job_id WHERE l.runner = ? AND r.cancel_reason IS NOT NULL",
                (self.runner,)).fetchall()
        return [tuple(r) for r in await self._call(renew)]

    async def release_leases(self) -> None:
        """Give up this runner's leases (a graceful stop): another server, or the next
        one on this data directory, takes the jobs over at once."""
        await self._call(self._run_sql, "DELETE FROM job_leases WHERE runner = ?",
                         (self.runner,))

    def _orphans(self, now: float) -> list[Job]:
        rows = self._db.execute(
            "SELECT j.record FROM jobs j LEFT JOIN job_leases l ON l.job_id = j.id"
            f" WHERE j.state NOT IN {_TERMINAL} AND (l.until IS NULL OR l.until < ?)",
            (now,)).fetchall()
        return [_job_from(r[0]) for r in rows]

    async def orphans(self, now: float | None = None) -> list[Job]:
        """Jobs that have not ended and whose server stopped (no live lease)."""
        return await self._call(self._orphans, time.time() if now is None else now)

    def _claim(self, job_id: str, now: float) -> int | None:
        row = self._db.execute(
            "SELECT j.state, l.until FROM jobs j LEFT JOIN job_leases l ON l.job_id = j.id"
            " WHERE j.id = ?", (job_id,)).fetchone()
        if row is None or State(row[0]).terminal or (row[1] is not None and row[1] >= now):
            return None
        self._db.execute(
            "INSERT INTO job_leases (job_id, runner, until) VALUES (?, ?, ?)"
            " ON CONFLICT (job_id) DO UPDATE SET runner = excluded.runner, until = excluded.until",
            (job_id, self.runner, now + self.lease_seconds))
        self._db.execute("UPDATE job_requests SET attempts = attempts + 1 WHERE job_id = ?",
                         (job_id,))
        row = self._db.execute("SELECT attempts FROM job_requests WHERE job_id = ?",
                               (job_id,)).fetchone()
        return row[0] if row else 0

    async def claim(self, job_id: str) -> int | None:
        """Take over an orphaned job; the number of take-overs so far, or None when
        another server holds it or it has ended."""
        return await self._commit(self._claim, job_id, time.time())

    # -- results ----------------------------------------------------------------
    @staticmethod
    def store_result(db, job_id: str, header: bytes, path: str) -> None:
        """Inside a finishing transaction: the result of an asynchronous job."""
        db.execute("UPDATE job_requests SET result_header = ?, result_path = ? WHERE job_id = ?",
                   (header, path, job_id))

    async def results_before(self, before: float) -> list[tuple[str, str]]:
        """(job id, result path) of ended asynchronous jobs older than ``before`` whose
        result is still kept."""
        rows = await self._call(lambda: self._db.execute(
            "SELECT r.job_id, r.result_path FROM job_requests r JOIN jobs j ON j.id = r.job_id"
            f" WHERE j.state IN {_TERMINAL} AND j.finished_at < ?"
            " AND r.result_removed_at IS NULL", (before,)).fetchall())
        return [tuple(r) for r in rows]

    async def result_removed(self, job_id: str) -> None:
        await self._call(self._run_sql, "UPDATE job_requests SET result_removed_at = ?"
                         " WHERE job_id = ?", (time.time(), job_id))

    # -- listing ------------------------------------------------------------------
    def _list(self, subscriber: str, states, since, until, operation, label, limit,
              after) -> list[tuple[Job, dict | None]]:
        where, args = ["j.subscriber = ?"], [subscriber]
        if states:
            where.append(f"j.state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        if since:
            where.append("j.created_at >= ?")
            args.append(since)
        if until:
            where.append("j.created_at < ?")
            args.append(until)
        if operation:
            where.append("EXISTS (SELECT 1 FROM json_each(j.record, '$.operations')"
                         " WHERE value = ?)")
            args.append(operation)
        if label:
            where.append("r.label = ?")
            args.append(label)
        if after is not None:
            where.append("(j.created_at < ? OR (j.created_at = ? AND j.id < ?))")
            args.extend([after[0], after[0], after[1]])
        cur = self._db.execute(
            "SELECT j.record, d.delivered_at, d.fetched_at, r.* FROM jobs j"
            " LEFT JOIN job_requests r ON r.job_id = j.id"
            " LEFT JOIN deliveries d ON d.job_id = j.id"
            f" WHERE {' AND '.join(where)} ORDER BY j.created_at DESC, j.id DESC LIMIT ?",
            (*args, limit))
        names = [c[0] for c in cur.description][3:]
        out = []
        for row in cur.fetchall():
            delivery = ({"delivered_at": row[1], "fetched_at": row[2]}
                        if row[1] is not None else None)
            request = dict(zip(names, row[3:])) if row[3] is not None else None
            out.append((_job_from(row[0]), request, delivery))
        return out

    async def list_jobs(self, subscriber: str, *, states=(), since=0.0, until=0.0,
                        operation="", label="", limit=50, after=None):
        """A subscriber's jobs, newest first: (job, its request (None: synchronous), its
        delivery (None: not delivered))."""
        return await self._call(self._list, subscriber, list(states), since, until, operation,
                                label, limit, after)

    # -- deliveries ---------------------------------------------------------------
    @staticmethod
    def deliver(db, job_id: str, recipient: str, sender: str, at: float) -> None:
        """Inside a finishing transaction: the result goes to ``recipient``'s inbox."""
        db.execute("INSERT OR IGNORE INTO deliveries (job_id, recipient, sender, delivered_at)"
                   " VALUES (?, ?, ?, ?)", (job_id, recipient, sender, at))

    def _delivery(self, job_id: str) -> dict | None:
        cur = self._db.execute("SELECT * FROM deliveries WHERE job_id = ?", (job_id,))
        row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row)) if row else None

    async def delivery(self, job_id: str) -> dict | None:
        return await self._call(self._delivery, job_id)

    def _inbox(self, recipient: str, after_seq: int, unfetched_only: bool, limit: int):
        sql = ("SELECT d.*, j.record, r.label, r.result_header FROM deliveries d"
               " JOIN jobs j ON j.id = d.job_id JOIN job_requests r ON r.job_id = d.job_id"
               " WHERE d.recipient = ? AND d.seq > ?")
        if unfetched_only:
            sql += " AND d.fetched_at IS NULL"
        cur = self._db.execute(sql + " ORDER BY d.seq LIMIT ?", (recipient, after_seq, limit))
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    async def inbox(self, recipient: str, *, after_seq: int = 0, unfetched_only: bool = False,
                    limit: int = 100) -> list[dict]:
        """Deliveries to ``recipient`` after ``after_seq``, oldest first."""
        return await self._call(self._inbox, recipient, after_seq, unfetched_only, limit)

    async def last_delivery_seq(self) -> int:
        row = await self._call(lambda: self._db.execute(
            "SELECT MAX(seq) FROM deliveries").fetchone())
        return row[0] or 0

    async def mark_fetched(self, job_id: str) -> None:
        await self._call(self._run_sql, "UPDATE deliveries SET fetched_at = ?"
                         " WHERE job_id = ? AND fetched_at IS NULL", (time.time(), job_id))

    # -- delivery rules -------------------------------------------------------------
    async def allow_delivery(self, sender: str, recipient: str) -> float:
        def allow():
            self._db.execute("INSERT OR IGNORE INTO delivery_rules (sender, recipient,"
                             " created_at) VALUES (?, ?, ?)", (sender, recipient, time.time()))
            return self._db.execute("SELECT created_at FROM delivery_rules WHERE sender = ?"
                                    " AND recipient = ?", (sender, recipient)).fetchone()[0]
        return await self._call(allow)

    async def disallow_delivery(self, sender: str, recipient: str) -> bool:
        return bool(await self._call(self._run_sql, "DELETE FROM delivery_rules WHERE"
                                     " sender = ? AND recipient = ?", (sender, recipient)))

    async def delivery_rules(self, sender: str = "", recipient: str = "") -> list[tuple]:
        sql, args = "SELECT sender, recipient, created_at FROM delivery_rules WHERE 1", []
        if sender:
            sql += " AND sender = ?"
            args.append(sender)
        if recipient:
            sql += " AND recipient = ?"
            args.append(recipient)
        return await self._call(lambda: [tuple(r) for r in self._db.execute(
            sql + " ORDER BY sender, recipient", args).fetchall()])

    async def delivery_allowed(self, sender: str, recipient: str) -> bool:
        return bool(await self.delivery_rules(sender, recipient))

"""Jobs, their usage records, asynchronous requests, leases and deliveries, in the
SQLite catalog of the data directory (db.py).

The SQL is in functions taking ``tx``, the connection inside the transaction (db.py's
``Database.write``/``read``/``transaction`` pass it); :class:`Catalog` is a facade over
them for the job runner and the servicers. A job's end is ``finish_job`` together with
storage/usage.py ``add`` and storage/audit.py ``add`` in one write (jobs/pipeline.py).

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
from medcompute.server.storage import software as software_table
from medcompute.server.storage import usage as usage_table
from medcompute.server.storage.db import Store, notify, schema, table

__all__ = ["Catalog", "allow_delivery", "claim", "create_request", "deliver", "delivery",
           "delivery_rules", "disallow_delivery", "finish_job", "get_job", "inbox", "keyed_job",
           "last_delivery_seq", "list_jobs", "mark_fetched", "orphans", "pending_jobs",
           "put_job", "queue", "release_leases", "renew", "request_cancel", "request_of",
           "result_removed", "results_before", "store_result", "unfinished_jobs"]

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

#: The channel on which a job's change is announced to the other front ends
#: (storage.db.notify; :meth:`Catalog.on_change`).
JOB_EVENTS = "medcompute_jobs"


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
    if changed:
        notify(tx, JOB_EVENTS, job.id)      # watchers on other front ends (PostgreSQL)
    if changed and runner and not job.state.terminal:
        tx.execute(
            "INSERT INTO job_leases (job_id, runner, until) VALUES (?, ?, ?)"
            " ON CONFLICT (job_id) DO UPDATE SET runner = excluded.runner,"
            " until = excluded.until",
            (job.id, runner, time.time() + lease_seconds))
    return bool(changed)


def finish_job(tx, job: Job, runner: str = "") -> bool:
    """Store the end of ``job`` (its final state) and drop its lease; False, writing
    nothing, when it had already ended. Its usage record (storage/usage.py ``add``) and
    audit entry (storage/audit.py ``add``) go in the same transaction ``tx``.

    With ``runner`` (the server whose run ends), the end of a job that started is also
    refused (False) when another server holds the job's lease: its lease ran out (the
    server was cut off from the catalog) and that server took the job over; the job
    then ends once, by the server running it now, with one usage record."""
    row = tx.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()
    if row is not None and State(row[0]).terminal:
        return False
    if runner and job.started_at is not None:
        lease = tx.execute("SELECT runner FROM job_leases WHERE job_id = ?",
                           (job.id,)).fetchone()
        if lease is not None and lease[0] and lease[0] != runner:
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


def get_job(tx, job_id: str) -> Job | None:
    row = tx.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return _job_from(row[0]) if row else None


def unfinished_jobs(tx) -> list[Job]:
    rows = tx.execute(f"SELECT record FROM jobs WHERE state NOT IN {_TERMINAL}").fetchall()
    return [_job_from(r[0]) for r in rows]


def pending_jobs(tx, subscriber: str) -> int:
    """The subscriber's jobs that have not ended."""
    return tx.execute(
        f"SELECT COUNT(*) FROM jobs WHERE subscriber = ? AND state NOT IN {_TERMINAL}",
        (subscriber,)).fetchone()[0]


# -- asynchronous requests --------------------------------------------------------
def create_request(tx, job: Job, request: dict, runner: str = "",
                   lease_seconds: float = 30.0) -> tuple[Job, bool]:
    """Record a new asynchronous job and its request; with an idempotency key that names
    an earlier job, that job and False instead."""
    key = request.get("idempotency_key") or None
    if key is not None:
        row = tx.execute(
            "SELECT r.job_id, r.request_sha256, j.record FROM job_requests r"
            " JOIN jobs j ON j.id = r.job_id WHERE r.subscriber = ? AND r.idempotency_key = ?",
            (job.subscriber, key)).fetchone()
        if row is not None:
            existing = _job_from(row[2])
            if existing.state.terminal and existing.queued_at is None:
                # Never accepted (its upload failed): the key is free for a new attempt.
                tx.execute("UPDATE job_requests SET idempotency_key = NULL WHERE job_id = ?",
                           (existing.id,))
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
    put_job(tx, job, runner, lease_seconds)
    tx.execute(
        "INSERT INTO job_requests (job_id, subscriber, idempotency_key, request_sha256,"
        " header, label, destination) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job.id, job.subscriber, key, request["request_sha256"], request["header"],
         request.get("label", ""), request.get("destination", "")))
    return job, True


def _row_dict(cur) -> dict | None:
    row = cur.fetchone()
    return dict(zip([c[0] for c in cur.description], row)) if row else None


def request_of(tx, job_id: str) -> dict | None:
    """The stored request of an asynchronous job (None for a synchronous one)."""
    return _row_dict(tx.execute("SELECT * FROM job_requests WHERE job_id = ?", (job_id,)))


def request_cancel(tx, job_id: str, reason: str) -> None:
    tx.execute("UPDATE job_requests SET cancel_reason = ? WHERE job_id = ?"
               " AND cancel_reason IS NULL", (reason, job_id))


def keyed_job(tx, subscriber: str, key: str) -> Job | None:
    """The job an idempotency key of the subscriber names, if any."""
    row = tx.execute(
        "SELECT j.record FROM job_requests r JOIN jobs j ON j.id = r.job_id"
        " WHERE r.subscriber = ? AND r.idempotency_key = ?", (subscriber, key)).fetchone()
    return _job_from(row[0]) if row else None


# -- leases -------------------------------------------------------------------------
def renew(tx, runner: str, until: float) -> list[tuple[str, str]]:
    """Extend ``runner``'s leases to ``until``; the (job id, reason) of its jobs whose
    cancellation was asked for."""
    tx.execute("UPDATE job_leases SET until = ? WHERE runner = ?", (until, runner))
    return [tuple(r) for r in tx.execute(
        "SELECT l.job_id, r.cancel_reason FROM job_leases l JOIN job_requests r"
        " ON r.job_id = l.job_id WHERE l.runner = ? AND r.cancel_reason IS NOT NULL",
        (runner,)).fetchall()]


def release_leases(tx, runner: str) -> None:
    tx.execute("DELETE FROM job_leases WHERE runner = ?", (runner,))


def orphans(tx, now: float) -> list[Job]:
    """Jobs that have not ended and have no live lease at ``now``."""
    rows = tx.execute(
        "SELECT j.record FROM jobs j LEFT JOIN job_leases l ON l.job_id = j.id"
        f" WHERE j.state NOT IN {_TERMINAL} AND (l.until IS NULL OR l.until < ?)",
        (now,)).fetchall()
    return [_job_from(r[0]) for r in rows]


def claim(tx, job_id: str, runner: str, now: float, lease_seconds: float) -> int | None:
    """Take over an orphaned job for ``runner``; the number of take-overs so far, or None
    when another runner holds it or it has ended. On PostgreSQL the job's row is locked
    for the claim (``FOR UPDATE ... SKIP LOCKED``): a job another transaction is claiming
    or ending at that moment is skipped (None), not waited for."""
    lock = (" FOR UPDATE OF j SKIP LOCKED" if getattr(tx, "dialect", "") == "postgresql"
            else "")                # SQLite: BEGIN IMMEDIATE already excludes other writers
    row = tx.execute(
        "SELECT j.state, l.until FROM jobs j LEFT JOIN job_leases l ON l.job_id = j.id"
        " WHERE j.id = ?" + lock, (job_id,)).fetchone()
    if row is None or State(row[0]).terminal or (row[1] is not None and row[1] >= now):
        return None
    tx.execute(
        "INSERT INTO job_leases (job_id, runner, until) VALUES (?, ?, ?)"
        " ON CONFLICT (job_id) DO UPDATE SET runner = excluded.runner, until = excluded.until",
        (job_id, runner, now + lease_seconds))
    tx.execute("UPDATE job_requests SET attempts = attempts + 1 WHERE job_id = ?", (job_id,))
    row = tx.execute("SELECT attempts FROM job_requests WHERE job_id = ?", (job_id,)).fetchone()
    return row[0] if row else 0


# -- results --------------------------------------------------------------------------
def store_result(tx, job_id: str, header: bytes, path: str) -> None:
    """Inside a finishing transaction: the result of an asynchronous job."""
    tx.execute("UPDATE job_requests SET result_header = ?, result_path = ? WHERE job_id = ?",
               (header, path, job_id))


def results_before(tx, before: float) -> list[tuple[str, str]]:
    """(job id, result path) of ended asynchronous jobs older than ``before`` whose result
    is still kept."""
    return [tuple(r) for r in tx.execute(
        "SELECT r.job_id, r.result_path FROM job_requests r JOIN jobs j ON j.id = r.job_id"
        f" WHERE j.state IN {_TERMINAL} AND j.finished_at < ?"
        " AND r.result_removed_at IS NULL", (before,)).fetchall()]


def result_removed(tx, job_id: str, at: float) -> None:
    tx.execute("UPDATE job_requests SET result_removed_at = ? WHERE job_id = ?", (at, job_id))


# -- listing ----------------------------------------------------------------------------
def list_jobs(tx, subscriber: str, states, since, until, operation, label, limit,
              after) -> list[tuple[Job, dict | None, dict | None]]:
    """A subscriber's jobs, newest first: (job, its request (None: synchronous), its
    delivery (None: not delivered))."""
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
    cur = tx.execute(
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


# -- deliveries -------------------------------------------------------------------------
def deliver(tx, job_id: str, recipient: str, sender: str, at: float) -> None:
    """Inside a finishing transaction: the result goes to ``recipient``'s inbox."""
    tx.execute("INSERT INTO deliveries (job_id, recipient, sender, delivered_at)"
               " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", (job_id, recipient, sender, at))


def delivery(tx, job_id: str) -> dict | None:
    return _row_dict(tx.execute("SELECT * FROM deliveries WHERE job_id = ?", (job_id,)))


def inbox(tx, recipient: str, after_seq: int, unfetched_only: bool, limit: int) -> list[dict]:
    """Deliveries to ``recipient`` after ``after_seq``, oldest first."""
    sql = ("SELECT d.*, j.record, r.label, r.result_header FROM deliveries d"
           " JOIN jobs j ON j.id = d.job_id JOIN job_requests r ON r.job_id = d.job_id"
           " WHERE d.recipient = ? AND d.seq > ?")
    if unfetched_only:
        sql += " AND d.fetched_at IS NULL"
    cur = tx.execute(sql + " ORDER BY d.seq LIMIT ?", (recipient, after_seq, limit))
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def last_delivery_seq(tx) -> int:
    return tx.execute("SELECT MAX(seq) FROM deliveries").fetchone()[0] or 0


def mark_fetched(tx, job_id: str, at: float) -> None:
    tx.execute("UPDATE deliveries SET fetched_at = ? WHERE job_id = ? AND fetched_at IS NULL",
               (at, job_id))


# -- delivery rules ---------------------------------------------------------------------
def allow_delivery(tx, sender: str, recipient: str, at: float) -> float:
    """Let ``sender`` deliver to ``recipient``; when the rule was made."""
    tx.execute("INSERT INTO delivery_rules (sender, recipient, created_at)"
               " VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (sender, recipient, at))
    return tx.execute("SELECT created_at FROM delivery_rules WHERE sender = ?"
                      " AND recipient = ?", (sender, recipient)).fetchone()[0]


def disallow_delivery(tx, sender: str, recipient: str) -> bool:
    return bool(tx.execute("DELETE FROM delivery_rules WHERE sender = ? AND recipient = ?",
                           (sender, recipient)).rowcount)


def delivery_rules(tx, sender: str = "", recipient: str = "") -> list[tuple]:
    sql, args = "SELECT sender, recipient, created_at FROM delivery_rules WHERE 1 = 1", []
    if sender:
        sql += " AND sender = ?"
        args.append(sender)
    if recipient:
        sql += " AND recipient = ?"
        args.append(recipient)
    return [tuple(r) for r in tx.execute(sql + " ORDER BY sender, recipient", args).fetchall()]


#: The schema of this module's tables, applied by every Database (db.py).
create = table(schema(_SCHEMA))


class Catalog(Store):
    """Jobs and usage records of one data directory.

    ``runner`` names this server process in the leases of the jobs it runs;
    ``lease_seconds`` is how long a lease lasts without renewal.
    """

    TABLES = (create, usage_table.create, software_table.create_tables)

    def __init__(self, data_dir, *, runner: str = "", lease_seconds: float = 30.0):
        super().__init__(data_dir)
        self.runner = runner
        self.lease_seconds = lease_seconds

    def on_change(self, callback) -> bool:
        """Call ``callback(job_id)`` (from another thread) when any front end sharing the
        catalog changes a job; False on a backend without notifications (SQLite: the
        watchers poll)."""
        return self.db.listen(JOB_EVENTS, callback)

    # -- jobs ---------------------------------------------------------------
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
                software_table.add_uses(tx, job.id, job.subscriber, job.finished_at or 0.0,
                                        usage)
            if extra is not None:
                extra(tx)
            return True
        return await self.db.write(end)

    async def get_job(self, job_id: str) -> Job | None:
        return await self.db.read(get_job, job_id)

    async def usage_for(self, job_id: str) -> list[dict]:
        """Every usage record stored for a job (there is at most one)."""
        return await self.db.read(usage_table.for_job, job_id)

    async def unfinished_jobs(self) -> list[Job]:
        return await self.db.read(unfinished_jobs)

    # -- asynchronous requests ------------------------------------------------
    async def create_request(self, job: Job, request: dict) -> tuple[Job, bool]:
        """Record a new asynchronous job and its request; with an idempotency key that
        names an earlier job, that job and False instead."""
        return await self.db.write(create_request, job, request, self.runner,
                                   self.lease_seconds)

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

    async def request(self, job_id: str) -> dict | None:
        """The stored request of an asynchronous job (None for a synchronous one)."""
        return await self.db.read(request_of, job_id)

    async def request_cancel(self, job_id: str, reason: str) -> None:
        await self.db.read(request_cancel, job_id, reason)

    async def pending_jobs(self, subscriber: str) -> int:
        """The subscriber's jobs that have not ended."""
        return await self.db.read(pending_jobs, subscriber)

    async def keyed_job(self, subscriber: str, key: str) -> Job | None:
        """The job an idempotency key of the subscriber names, if any."""
        return await self.db.read(keyed_job, subscriber, key)

    # -- leases -----------------------------------------------------------------
    async def renew(self) -> list[tuple[str, str]]:
        """Extend the leases of this runner's jobs; return the (job id, reason) of those
        whose cancellation was asked for (by any server)."""
        return await self.db.read(renew, self.runner, time.time() + self.lease_seconds)

    async def release_leases(self) -> None:
        """Give up this runner's leases (a graceful stop): another server, or the next
        one on this data directory, takes the jobs over at once."""
        await self.db.read(release_leases, self.runner)

    async def orphans(self, now: float | None = None) -> list[Job]:
        """Jobs that have not ended and whose server stopped (no live lease)."""
        return await self.db.read(orphans, time.time() if now is None else now)

    async def claim(self, job_id: str) -> int | None:
        """Take over an orphaned job; the number of take-overs so far, or None when
        another server holds it or it has ended."""
        return await self.db.write(claim, job_id, self.runner, time.time(),
                                   self.lease_seconds)

    # -- results ----------------------------------------------------------------
    @staticmethod
    def store_result(db, job_id: str, header: bytes, path: str) -> None:
        """Inside a finishing transaction: the result of an asynchronous job
        (:func:`store_result`)."""
        store_result(db, job_id, header, path)

    async def results_before(self, before: float) -> list[tuple[str, str]]:
        """(job id, result path) of ended asynchronous jobs older than ``before`` whose
        result is still kept."""
        return await self.db.read(results_before, before)

    async def result_removed(self, job_id: str) -> None:
        await self.db.read(result_removed, job_id, time.time())

    # -- listing ------------------------------------------------------------------
    async def list_jobs(self, subscriber: str, *, states=(), since=0.0, until=0.0,
                        operation="", label="", limit=50, after=None):
        """A subscriber's jobs, newest first: (job, its request (None: synchronous), its
        delivery (None: not delivered))."""
        return await self.db.read(list_jobs, subscriber, list(states), since, until,
                                  operation, label, limit, after)

    # -- deliveries ---------------------------------------------------------------
    @staticmethod
    def deliver(db, job_id: str, recipient: str, sender: str, at: float) -> None:
        """Inside a finishing transaction: the result goes to ``recipient``'s inbox
        (:func:`deliver`)."""
        deliver(db, job_id, recipient, sender, at)

    async def delivery(self, job_id: str) -> dict | None:
        return await self.db.read(delivery, job_id)

    async def inbox(self, recipient: str, *, after_seq: int = 0, unfetched_only: bool = False,
                    limit: int = 100) -> list[dict]:
        """Deliveries to ``recipient`` after ``after_seq``, oldest first."""
        return await self.db.read(inbox, recipient, after_seq, unfetched_only, limit)

    async def last_delivery_seq(self) -> int:
        return await self.db.read(last_delivery_seq)

    async def mark_fetched(self, job_id: str) -> None:
        await self.db.read(mark_fetched, job_id, time.time())

    # -- delivery rules -------------------------------------------------------------
    async def allow_delivery(self, sender: str, recipient: str) -> float:
        return await self.db.read(allow_delivery, sender, recipient, time.time())

    async def disallow_delivery(self, sender: str, recipient: str) -> bool:
        return await self.db.read(disallow_delivery, sender, recipient)

    async def delivery_rules(self, sender: str = "", recipient: str = "") -> list[tuple]:
        return await self.db.read(delivery_rules, sender, recipient)

    async def delivery_allowed(self, sender: str, recipient: str) -> bool:
        return bool(await self.delivery_rules(sender, recipient))

"""The SQLite catalog: durable settings, one usage record per job, survives a reopen."""

import asyncio
import sqlite3

import pytest

from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog

pytestmark = pytest.mark.timeout(30)


def _run(coro):
    return asyncio.run(coro)


def _finished(job_id="j1"):
    job = jobs.new_job(subscriber="local", operations=["gaussian"], inputs=["inline:8"],
                       device="cpu", created_at=10.0, job_id=job_id)
    job = jobs.apply(job, jobs.InputsReceived(11.0))
    job = jobs.apply(job, jobs.Started(12.0, "tcp://w"))
    return job, jobs.apply(job, jobs.Succeeded(13.0))


def test_wal_and_full_sync(tmp_path):
    catalog = Catalog(tmp_path)
    try:
        assert catalog.db.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert catalog.db.connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        catalog.close()


def test_exactly_one_usage_record_per_job(catalog_at):
    catalog = Catalog(catalog_at)
    running, done = _finished()
    try:
        _run(catalog.put_job(running))
        _run(catalog.finish_job(done, {"job_id": "j1", "compute_seconds": 1.0}))
        # A second finish (a retried task reporting again) does not add or replace a record.
        _run(catalog.finish_job(done, {"job_id": "j1", "compute_seconds": 9.0}))
        records = _run(catalog.usage_for("j1"))
        assert records == [{"job_id": "j1", "compute_seconds": 1.0}]
    finally:
        catalog.close()


def test_jobs_survive_a_reopen(catalog_at):
    catalog = Catalog(catalog_at)
    running, done = _finished()
    _run(catalog.put_job(running))
    catalog.close()
    again = Catalog(catalog_at)
    try:
        assert _run(again.get_job("j1")) == running
        assert [j.id for j in _run(again.unfinished_jobs())] == ["j1"]
        _run(again.finish_job(done, None))
        assert _run(again.get_job("j1")).state is jobs.State.SUCCEEDED
        assert _run(again.unfinished_jobs()) == []
        assert _run(again.get_job("nope")) is None
    finally:
        again.close()


def test_a_failed_transaction_leaves_nothing_half_written(tmp_path, catalog_at):
    catalog = Catalog(catalog_at)
    running, done = _finished()
    try:
        _run(catalog.put_job(running))
        with pytest.raises(TypeError):
            _run(catalog.finish_job(done, {"unserialisable": object()}))
        assert _run(catalog.get_job("j1")).state is jobs.State.RUNNING
        assert _run(catalog.usage_for("j1")) == []
    finally:
        catalog.close()
    if catalog_at == tmp_path:                       # SQLite: the file is whole
        with sqlite3.connect(tmp_path / Catalog.FILENAME) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_job_table_functions_store_a_job_once_ended_and_its_lease(catalog_at):
    from medcompute.server.jobs import catalog as job_table
    from medcompute.server.storage.db import Database

    db = Database(catalog_at)
    try:
        running, done = _finished()
        assert db.transaction(job_table.put_job, running, "runner-1", 30.0)
        leases = db.run(lambda tx: tx.execute("SELECT job_id, runner FROM job_leases").fetchall())
        assert leases == [("j1", "runner-1")]
        assert db.transaction(job_table.finish_job, done)
        assert db.run(lambda tx: tx.execute("SELECT COUNT(*) FROM job_leases").fetchone()) == (0,)
        # Ended once: a second end, or any later write, changes nothing.
        assert not db.transaction(job_table.finish_job, done)
        assert not db.transaction(job_table.put_job, running, "runner-1", 30.0)
        assert not db.transaction(job_table.queue, running, 100)
        assert _run(Catalog(db).get_job("j1")) == done
    finally:
        db.close()


def test_the_table_functions_for_requests_leases_and_deliveries(catalog_at):
    from medcompute.server.jobs import catalog as job_table
    from medcompute.server.storage.db import Database

    db = Database(catalog_at)
    try:
        running, done = _finished()
        request = {"idempotency_key": "k", "request_sha256": "s", "header": b"h", "label": "L"}
        job, created = db.transaction(job_table.create_request, running, request, "r1", 30.0)
        assert created and job == running
        assert db.transaction(job_table.create_request, running, request, "r1", 30.0) == (
            running, False)
        assert db.run(job_table.keyed_job, "local", "k") == running
        assert db.run(job_table.request_of, "j1")["label"] == "L"
        assert db.run(job_table.pending_jobs, "local") == 1
        assert db.run(job_table.unfinished_jobs) == [running]
        # Leases: r1 holds it until its lease runs out; then r2 takes it over.
        assert db.run(job_table.orphans, 0.0) == []
        assert db.transaction(job_table.claim, "j1", "r2", 0.0, 30.0) is None
        db.run(job_table.request_cancel, "j1", "asked")
        assert db.run(job_table.renew, "r1", 50.0) == [("j1", "asked")]
        assert db.run(job_table.orphans, 60.0) == [running]
        assert db.transaction(job_table.claim, "j1", "r2", 60.0, 30.0) == 1
        db.run(job_table.release_leases, "r2")
        assert db.run(job_table.orphans, 61.0) == [running]
        # The end, with its result and delivery, in one transaction.
        def end(tx):
            assert job_table.finish_job(tx, done)
            job_table.store_result(tx, "j1", b"res", "/r")
            job_table.deliver(tx, "j1", "bob", "local", 14.0)
        db.transaction(end)
        assert db.run(job_table.results_before, 100.0) == [("j1", "/r")]
        db.run(job_table.result_removed, "j1", 15.0)
        assert db.run(job_table.results_before, 100.0) == []
        assert [d["job_id"] for d in db.run(job_table.inbox, "bob", 0, True, 10)] == ["j1"]
        assert db.run(job_table.last_delivery_seq) == 1
        db.run(job_table.mark_fetched, "j1", 16.0)
        assert db.run(job_table.inbox, "bob", 0, True, 10) == []
        assert db.run(job_table.delivery, "j1")["fetched_at"] == 16.0
        listed = db.run(job_table.list_jobs, "local", [], 0.0, 0.0, "", "L", 10, None)
        assert [(j.id, r["label"], d["fetched_at"]) for j, r, d in listed] == [("j1", "L", 16.0)]
        # Delivery rules.
        assert db.run(job_table.allow_delivery, "local", "bob", 5.0) == 5.0
        assert db.run(job_table.allow_delivery, "local", "bob", 6.0) == 5.0
        assert db.run(job_table.delivery_rules, "local") == [("local", "bob", 5.0)]
        assert db.run(job_table.disallow_delivery, "local", "bob")
        assert not db.run(job_table.disallow_delivery, "local", "bob")
    finally:
        db.close()


@pytest.mark.postgres
def test_a_job_row_another_transaction_holds_is_skipped_by_a_claim_on_postgresql(postgres):
    """The takeover locks the job's row (FOR UPDATE ... SKIP LOCKED): while another
    transaction holds it, a claim passes it by (None) instead of waiting; then takes it."""
    import psycopg

    from medcompute.server.jobs import catalog as job_table
    from medcompute.server.storage.db import Database

    url = postgres.fresh_url()
    db = Database(url)
    try:
        running, _ = _finished()
        request = {"idempotency_key": "k", "request_sha256": "s", "header": b"h", "label": ""}
        db.transaction(job_table.create_request, running, request, "r1", 30.0)
        with psycopg.connect(url) as other:         # a transaction of its own, left open
            other.execute("SELECT id FROM jobs WHERE id = 'j1' FOR UPDATE")
            assert db.transaction(job_table.claim, "j1", "r2", 1e10, 30.0) is None
            other.rollback()
        assert db.transaction(job_table.claim, "j1", "r2", 1e10, 30.0) == 1
    finally:
        db.close()


def test_a_run_whose_job_was_taken_over_does_not_end_it(catalog_at):
    """Server r1 ran the job, lost the catalog, and its lease ran out; r2 took the job over.
    r1's late end is refused; r2's is recorded, once; without a runner (or for a job that
    never started, e.g. cancelled while queued) the end is not bound to the lease."""
    from medcompute.server.jobs import catalog as job_table
    from medcompute.server.storage.db import Database

    db = Database(catalog_at)
    try:
        running, done = _finished()
        request = {"idempotency_key": "k", "request_sha256": "s", "header": b"h", "label": ""}
        db.transaction(job_table.create_request, running, request, "r1", 30.0)
        assert db.transaction(job_table.claim, "j1", "r2", 1e10, 30.0) == 1
        assert db.transaction(job_table.finish_job, done, "r1") is False
        assert db.run(job_table.get_job, "j1").state is jobs.State.RUNNING
        assert db.transaction(job_table.finish_job, done, "r2") is True
        assert db.transaction(job_table.finish_job, done, "r1") is False     # ended once
        assert db.run(job_table.get_job, "j1").state is jobs.State.SUCCEEDED

        queued = jobs.apply(jobs.new_job(subscriber="local", operations=["gaussian"],
                                         inputs=["inline:8"], device="cpu", created_at=10.0,
                                         job_id="j2"), jobs.InputsReceived(11.0))
        db.transaction(job_table.put_job, queued, "r1", 30.0)
        cancelled = jobs.apply(queued, jobs.Failure(12.0, jobs.Fault.CANCELLED, "asked"))
        assert db.transaction(job_table.finish_job, cancelled, "r2") is True
    finally:
        db.close()

"""The catalog file's Database: one connection shared by the stores, group commit (concurrent
writes share one COMMIT, across tables; an acknowledged write is on disk)."""

import asyncio
import gc
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from medcompute.server.jobs import catalog as job_table
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.storage import audit as audit_table
from medcompute.server.storage import usage as usage_table
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.db import FILENAME, Database
from medcompute.server.storage.keys import KeyStore
from medcompute.server.storage.usage import UsageBook

pytestmark = pytest.mark.timeout(60)


def _job(job_id: str) -> jobs.Job:
    job = jobs.new_job(subscriber="local", operations=["mean"], inputs=["inline:8"],
                       device="cpu", created_at=10.0, job_id=job_id)
    return jobs.apply(job, jobs.InputsReceived(11.0))


def _ids_on_disk(data_dir) -> set[str]:
    """The job ids another connection sees (what is committed)."""
    db = sqlite3.connect(data_dir / FILENAME)
    try:
        return {r[0] for r in db.execute("SELECT id FROM jobs")}
    finally:
        db.close()


def test_concurrent_writes_share_commits_and_are_committed_when_they_return(tmp_path):
    catalog = Catalog(tmp_path)

    async def main():
        done = await asyncio.gather(*[catalog.put_job(_job(f"j{k}")) for k in range(50)])
        # Seen by another connection as soon as the awaits have returned.
        assert _ids_on_disk(tmp_path) == {f"j{k}" for k in range(50)}
        return done

    try:
        assert asyncio.run(main()) == [True] * 50
        assert catalog.committed_writes == 50
        assert catalog.commits < 50          # one fsync for many
    finally:
        catalog.close()


def test_a_write_that_raises_is_rolled_back_alone(tmp_path):
    catalog = Catalog(tmp_path)

    def half_then_fail(tx):
        job_table.put_job(tx, _job("bad"))
        raise ValueError("refused after writing")

    async def main():
        return await asyncio.gather(catalog.put_job(_job("a")), catalog.db.write(half_then_fail),
                                    catalog.put_job(_job("b")), return_exceptions=True)

    try:
        first, failed, last = asyncio.run(main())
        assert first is True and last is True
        assert isinstance(failed, ValueError)
        assert _ids_on_disk(tmp_path) == {"a", "b"}
    finally:
        catalog.close()


def test_a_lost_transaction_fails_every_write_it_held(tmp_path):
    catalog = Catalog(tmp_path)

    def ends_the_transaction(tx):
        tx.execute("ROLLBACK")      # as SQLite does on some I/O errors
        raise sqlite3.OperationalError("disk I/O error")

    async def main():
        return await asyncio.gather(catalog.put_job(_job("a")),
                                    catalog.db.write(ends_the_transaction),
                                    catalog.put_job(_job("b")), return_exceptions=True)

    try:
        outcomes = asyncio.run(main())
        # "a" was written before the transaction was lost: it is not acknowledged either.
        assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes[:2])
        assert "a" not in _ids_on_disk(tmp_path)
        # The next write works again.
        assert asyncio.run(catalog.put_job(_job("c"))) is True
        assert "c" in _ids_on_disk(tmp_path)
    finally:
        catalog.close()


def test_audit_entries_join_the_catalogs_commits(tmp_path):
    db = Database(tmp_path)
    catalog = Catalog(db)
    audit = AuditLog(db)

    async def main():
        await asyncio.gather(*[catalog.put_job(_job(f"j{k}")) for k in range(5)],
                             *[audit.record("local", "process", f"j{k}", "OK") for k in range(5)])

    try:
        asyncio.run(main())
        assert catalog.committed_writes == 10 and catalog.commits < 10
        assert [e.object_id for e in audit.list()] == [f"j{k}" for k in range(5)]
    finally:
        audit.close()
        catalog.close()
        db.close()


def _connections_to(path) -> int:
    """The open sqlite3 connections of this process to the database file ``path``."""
    gc.collect()
    found = 0
    for obj in gc.get_objects():
        if isinstance(obj, sqlite3.Connection):
            try:
                found += str(path) in [row[2] for row in obj.execute("PRAGMA database_list")]
            except sqlite3.ProgrammingError:        # closed
                continue
    return found


def test_stores_on_one_database_share_its_one_connection(tmp_path):
    db = Database(tmp_path)
    stores = [Catalog(db), AuditLog(db), UsageBook(db), KeyStore(db)]
    try:
        assert _connections_to(tmp_path / FILENAME) == 1
        assert all(store.db is db and store.db.connection is db.connection for store in stores)
        for store in stores:
            store.close()                   # a shared Database stays open
        assert db.run(lambda tx: tx.execute("SELECT COUNT(*) FROM jobs").fetchone()) == (0,)
    finally:
        db.close()
    assert _connections_to(tmp_path / FILENAME) == 0


def test_a_store_on_a_data_directory_opens_and_closes_its_own(tmp_path):
    log = AuditLog(tmp_path)
    assert _connections_to(tmp_path / FILENAME) == 1
    log.close()
    assert _connections_to(tmp_path / FILENAME) == 0


def test_opening_applies_every_table_modules_schema(tmp_path):
    db = Database(tmp_path)
    try:
        tables = {r[0] for r in db.run(lambda tx: tx.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall())}
        assert {"jobs", "usage", "audit", "job_requests", "api_keys"} <= tables
    finally:
        db.close()


def test_a_group_commit_spans_the_tables_of_two_modules(tmp_path):
    """A job's end with its usage record, and audit entries of other calls, written
    concurrently through one Database: fewer commits than writes, all on disk."""
    db = Database(tmp_path)

    def end(tx, job):
        assert job_table.finish_job(tx, job)
        usage_table.add(tx, job.id, job.subscriber, job.finished_at, {"job_id": job.id})
        audit_table.add(tx, audit_table.entry("local", "process", job.id, "OK"))
        return job.id

    async def main():
        await asyncio.gather(*[db.write(job_table.put_job, _job(f"j{k}")) for k in range(5)])
        before = db.commits
        ended = [jobs.apply(jobs.apply(_job(f"j{k}"), jobs.Started(11.5, "w")),
                            jobs.Succeeded(12.0)) for k in range(5)]
        done = await asyncio.gather(
            *[db.write(end, job) for job in ended],
            *[db.write(audit_table.add, audit_table.entry("other", "Store.Get", f"i{k}", "OK"))
              for k in range(5)])
        return done, db.commits - before

    try:
        done, commits = asyncio.run(main())
        assert done[:5] == [f"j{k}" for k in range(5)]
        assert commits < 10                 # the job ends and the other entries shared commits
    finally:
        db.close()
    other = sqlite3.connect(tmp_path / FILENAME)
    try:
        assert other.execute("SELECT COUNT(*) FROM usage").fetchone() == (5,)
        assert other.execute("SELECT COUNT(*) FROM audit").fetchone() == (10,)
        assert {r[0] for r in other.execute("SELECT state FROM jobs")} == {"SUCCEEDED"}
    finally:
        other.close()


def test_a_failing_write_on_a_shared_database_is_rolled_back_alone(tmp_path):
    db = Database(tmp_path)

    def job_end_then_fail(tx):
        usage_table.add(tx, "bad", "local", 1.0, {"job_id": "bad"})
        audit_table.add(tx, audit_table.entry("local", "process", "bad", "OK"))
        raise ValueError("refused after writing")

    async def main():
        return await asyncio.gather(
            db.write(audit_table.add, audit_table.entry("local", "process", "a", "OK")),
            db.write(job_end_then_fail),
            db.write(usage_table.add, "b", "local", 2.0, {"job_id": "b"}),
            return_exceptions=True)

    try:
        first, failed, last = asyncio.run(main())
        assert first is None and last is None
        assert isinstance(failed, ValueError)
        assert [e.object_id for e in db.run(audit_table.list_entries)] == ["a"]
        assert [r["job_id"] for r in db.run(usage_table.records, None)] == ["b"]
    finally:
        db.close()


def test_blocking_transaction_commits_or_rolls_back(tmp_path):
    db = Database(tmp_path)
    try:
        db.transaction(audit_table.add, audit_table.entry("local", "cli", "k1", "OK"))

        def half(tx):
            audit_table.add(tx, audit_table.entry("local", "cli", "k2", "OK"))
            raise RuntimeError("stop")
        with pytest.raises(RuntimeError):
            db.transaction(half)
        assert [e.object_id for e in db.run(audit_table.list_entries)] == ["k1"]
        assert not db.connection.in_transaction
    finally:
        db.close()


_WRITER = textwrap.dedent("""
    import asyncio, sys
    from medcompute.server.jobs import states as jobs
    from medcompute.server.jobs.catalog import Catalog

    catalog = Catalog(sys.argv[1])

    async def one(k):
        job = jobs.new_job(subscriber="local", operations=["mean"], inputs=["inline:8"],
                           device="cpu", created_at=1.0, job_id=f"j{k}")
        await catalog.put_job(job)
        print(job.id, flush=True)            # acknowledged

    async def main():
        k = 0
        while True:
            await asyncio.gather(*[one(k + i) for i in range(8)])
            k += 8

    asyncio.run(main())
""")


def test_a_killed_writer_loses_no_acknowledged_write(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    acknowledged = []
    try:
        while len(acknowledged) < 200:
            line = proc.stdout.readline()
            assert line, "the writer stopped"
            acknowledged.append(line.strip())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert set(acknowledged) <= _ids_on_disk(tmp_path)

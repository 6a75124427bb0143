"""Group commit: concurrent writes share one COMMIT, and an acknowledged write is on disk."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.db import FILENAME, Database

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

    def half_then_fail():
        catalog._put_job(_job("bad"))
        raise ValueError("refused after writing")

    async def main():
        return await asyncio.gather(catalog.put_job(_job("a")), catalog._commit(half_then_fail),
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

    def ends_the_transaction():
        catalog._db.execute("ROLLBACK")      # as SQLite does on some I/O errors
        raise sqlite3.OperationalError("disk I/O error")

    async def main():
        return await asyncio.gather(catalog.put_job(_job("a")),
                                    catalog._commit(ends_the_transaction),
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

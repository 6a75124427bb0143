"""Moving a catalog from SQLite to PostgreSQL (storage/transfer.py and ``medcompute
catalog copy|migrate``), verified row for row, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import pytest

from medcompute.client.cli import main
from medcompute.server.errors import FailedPrecondition
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.serve import catalog_copy, open_catalog
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.db import FILENAME
from medcompute.server.storage.keys import KeyStore
from medcompute.server.storage.transfer import CopyMismatch, copy, verify

pytestmark = [pytest.mark.timeout(90), pytest.mark.postgres]


def _fill(data_dir) -> None:
    """A SQLite catalog with jobs, a usage record, audit entries (identity column) and a
    key (blobs and NULLs among the values)."""
    catalog = Catalog(data_dir)
    job = jobs.new_job(subscriber="h1", operations=["gaussian"], inputs=["inline:8"],
                       device="cpu", created_at=10.5, job_id="j1")
    done = jobs.apply(jobs.apply(jobs.apply(job, jobs.InputsReceived(11.0)),
                                 jobs.Started(12.0, "tcp://w")), jobs.Succeeded(13.25))
    try:
        asyncio.run(catalog.put_job(jobs.apply(job, jobs.InputsReceived(11.0))))
        asyncio.run(catalog.finish_job(done, {"job_id": "j1", "compute_seconds": 1.5}))
    finally:
        catalog.close()
    log = AuditLog(data_dir)
    try:
        for k in range(3):
            asyncio.run(log.record("h1", "Process", f"o{k}", "OK", "d"))
    finally:
        log.close()
    keys = KeyStore(data_dir)
    try:
        keys.create("h1", "process")
    finally:
        keys.close()


def test_a_sqlite_catalog_is_copied_and_verified_row_for_row(tmp_path, postgres):
    _fill(tmp_path)
    url = postgres.fresh_url()
    report = catalog_copy(f"sqlite:{tmp_path / FILENAME}", url)
    assert report.rows["jobs"] == 1 and report.rows["usage"] == 1
    assert report.rows["audit"] == 3 and report.rows["api_keys"] == 1
    moved = Catalog(url)
    try:
        assert asyncio.run(moved.get_job("j1")).state is jobs.State.SUCCEEDED
        assert len(asyncio.run(moved.usage_for("j1"))) == 1
    finally:
        moved.close()
    log = AuditLog(url)                      # the identity column goes on after the copy
    try:
        asyncio.run(log.record("h1", "Process", "o3", "OK", "d"))
        assert [e.seq for e in log.list()] == [1, 2, 3, 4]
    finally:
        log.close()


def test_a_copy_into_a_catalog_with_rows_is_refused_and_changes_nothing(tmp_path, postgres):
    _fill(tmp_path)
    url = postgres.fresh_url()
    catalog_copy(f"sqlite:{tmp_path / FILENAME}", url)
    with pytest.raises(FailedPrecondition, match="the target catalog is not empty"):
        catalog_copy(f"sqlite:{tmp_path / FILENAME}", url)
    target = open_catalog(url)
    try:
        assert target.run(lambda tx: tx.execute("SELECT COUNT(*) FROM audit").fetchone()[0]) == 3
    finally:
        target.close()


def test_verify_finds_a_row_that_differs(tmp_path, postgres):
    _fill(tmp_path)
    source, target = open_catalog(f"sqlite:{tmp_path / FILENAME}"), open_catalog(
        postgres.fresh_url())
    try:
        copy(source, target)
        target.run(lambda tx: tx.execute("UPDATE audit SET detail = 'changed' WHERE seq = 2"))
        with pytest.raises(CopyMismatch, match="the copy of table audit differs from the "
                           "source: 3 rows there, 3 in the target, 1 of the source's"):
            verify(source, target)
    finally:
        source.close()
        target.close()


def test_the_command_line_migrates_and_copies(tmp_path, postgres, capsys):
    _fill(tmp_path)
    url = postgres.fresh_url()
    assert main(["catalog", "migrate", "--catalog", url, "--json"]) == 0
    versions = json.loads(capsys.readouterr().out)["versions"]
    assert versions["jobs"] == 1 and versions["audit"] == 1 and "dicom_rule" in versions
    assert main(["catalog", "copy", "--from", f"sqlite:{tmp_path / FILENAME}", "--to", url,
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] is True and out["rows"]["audit"] == 3
    assert main(["catalog", "copy", "--from", f"sqlite:{tmp_path / FILENAME}", "--to", url]) == 3
    assert "FAILED_PRECONDITION: to: the target catalog is not empty" in capsys.readouterr().err


def test_the_command_line_refuses_a_catalog_of_neither_backend(capsys):
    assert main(["catalog", "migrate", "--catalog", "mysql://db/x"]) == 2
    assert "expected postgresql://... or sqlite:PATH, got 'mysql'" in capsys.readouterr().err


def test_a_target_catalog_of_an_older_schema_is_refused_naming_the_table(tmp_path, postgres):
    """copy() checks the target's tables and columns before any row moves (catalog_copy
    migrates the target first; a target opened by another version may still be older)."""
    _fill(tmp_path)
    source = open_catalog(None, tmp_path)
    target = open_catalog(postgres.fresh_url())
    try:
        target.transaction(lambda tx: tx.execute("DROP TABLE api_keys"))
        with pytest.raises(FailedPrecondition) as caught:
            copy(source, target)
        assert caught.value.field == "to"
        assert caught.value.message == (
            "the target catalog has no table api_keys: its schema is older than the "
            "source's; run `medcompute catalog migrate` on it first")
    finally:
        target.close()
    older = open_catalog(postgres.fresh_url())          # every table, at the current version
    try:
        older.transaction(lambda tx: tx.execute("ALTER TABLE audit DROP COLUMN detail"))
        with pytest.raises(FailedPrecondition) as caught:
            copy(source, older)
        assert caught.value.field == "to"
        assert caught.value.message == ("the target catalog's table audit lacks the columns "
                                         "['detail']; run `medcompute catalog migrate` on it "
                                         "first")
        assert older.run(lambda tx: tx.execute("SELECT COUNT(*) FROM audit").fetchone()[0]) == 0
    finally:
        older.close()
        source.close()

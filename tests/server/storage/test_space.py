"""The free-space reserve and the mapping of storage faults (server/storage/space.py).

The reserve's arithmetic is tested with ``FakeStatvfs``, a fake of ``os.statvfs`` (what
a filesystem reports cannot be chosen otherwise); everything that needs a disk that is
really full runs on a tmpfs mounted by the test (tests/space_helpers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import sqlite3
import time

import grpc
import numpy as np
import pytest

from medcompute.proto.v1 import image_pb2
from medcompute.server.api.status import status_of
from medcompute.server.config import ServerConfig
from medcompute.server.errors import (
    InvalidArgument,
    ResourceExhausted,
    StorageFailure,
    StorageFull,
    Unavailable,
)
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.process import ProcessingService
from medcompute.server.storage.space import FreeSpaceReserve, MinFree, parse_min_free, storage_fault
from tests.space_helpers import MIB, FakeStatvfs, fill, free_bytes, tmpfs


@pytest.mark.parametrize(("text", "expected"), [
    ("512", MinFree(bytes=512 * MIB)), ("0", MinFree()), ("0.5", MinFree(bytes=MIB // 2)),
    ("5%", MinFree(percent=5.0)), (" 2.5 % ", MinFree(percent=2.5))])
def test_min_free_parses_mib_and_percent(text, expected):
    assert parse_min_free(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1", "nan", "inf", "100%", "-3%", "5 MB"])
def test_min_free_refuses_anything_else_saying_what_is_expected(text):
    with pytest.raises(ValueError, match="MiB"):
        parse_min_free(text)


def test_reserve_in_bytes_refuses_a_write_below_it_naming_location_free_and_reserve(tmp_path):
    statvfs = FakeStatvfs(total=1000 * MIB, free=100 * MIB)
    reserve = FreeSpaceReserve(tmp_path, MinFree(bytes=64 * MIB), statvfs=statvfs)
    reserve.check("blobs", "catalog")                     # 100 MiB free: fine
    reserve.check("blobs", incoming=36 * MIB)             # exactly the reserve left
    with pytest.raises(StorageFull) as refused:
        reserve.check("catalog", "blobs", incoming=37 * MIB)
    assert isinstance(refused.value, ResourceExhausted)
    text = refused.value.details
    assert "catalog location has 100.0 MB" in text and "37.0 MB" in text
    assert "64.0 MB" in text and "(67108864 bytes) are reserved" in text
    assert "--min-free 64 MiB" in text
    statvfs.free = 10 * MIB
    assert reserve.below() == ["catalog", "blobs", "spool", "jobs"]
    assert reserve.status()["spool"] == (10 * MIB, 64 * MIB)
    # A folder not made yet is asked about on its parent's filesystem.
    assert all(os.path.exists(p) for p in statvfs.asked)


def test_reserve_in_percent_is_a_share_of_the_filesystem(tmp_path):
    statvfs = FakeStatvfs(total=2000 * MIB, free=150 * MIB)
    reserve = FreeSpaceReserve(tmp_path, MinFree(percent=5), statvfs=statvfs)
    assert reserve.reserved_bytes("jobs") == 100 * MIB
    reserve.check("jobs", incoming=50 * MIB)
    with pytest.raises(StorageFull, match=r"--min-free 5%"):
        reserve.check("jobs", incoming=51 * MIB)
    with pytest.raises(ValueError, match="unknown storage location 'disk'"):
        reserve.free_bytes("disk")


def test_reserve_comes_from_the_config(tmp_path):
    config = ServerConfig(data_dir=tmp_path, min_free_bytes=3 * MIB, min_free_percent=0.0)
    assert FreeSpaceReserve.from_config(config).min_free == MinFree(bytes=3 * MIB)
    assert ServerConfig().min_free_bytes == 1 << 30       # the documented default


@pytest.mark.parametrize(("exc", "kind", "code"), [
    (OSError(errno.ENOSPC, "No space left on device"), StorageFull, "RESOURCE_EXHAUSTED"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), StorageFull, "RESOURCE_EXHAUSTED"),
    (OSError(errno.EIO, "Input/output error"), StorageFailure, "UNAVAILABLE"),
    (sqlite3.OperationalError("database or disk is full"), StorageFull, "RESOURCE_EXHAUSTED"),
    (sqlite3.OperationalError("disk I/O error"), StorageFailure, "UNAVAILABLE")])
def test_storage_faults_become_resource_exhausted_or_unavailable_never_internal(exc, kind,
                                                                                 code):
    fault = storage_fault(exc)
    assert isinstance(fault, kind) and fault.platform_fault
    status, details = status_of(exc)
    assert status is grpc.StatusCode[code]
    assert "storage" in details or "catalog" in details
    assert "internal error" not in details


@pytest.mark.parametrize("exc", [OSError(errno.ENOENT, "missing"), ValueError("x"),
                                 sqlite3.OperationalError("no such table: t"),
                                 InvalidArgument("bad", "f"), Unavailable("no cluster")])
def test_other_errors_are_not_storage_faults(exc):
    assert storage_fault(exc) is None


# -- on a real full disk ------------------------------------------------------------------

def test_reserve_reads_the_real_filesystem(tmp_path):
    with tmpfs(tmp_path / "fs", 8) as fs:
        reserve = FreeSpaceReserve(fs, MinFree(bytes=2 * MIB))
        assert abs(reserve.free_bytes("blobs") - 8 * MIB) <= 64 << 10
        reserve.check("blobs")
        filler = fill(fs, leave=MIB)
        with pytest.raises(StorageFull, match="blobs location has 1.0 MB"):
            reserve.check("blobs")
        filler.unlink()
        reserve.check("blobs", incoming=5 * MIB)
        assert FreeSpaceReserve(fs, MinFree(percent=50)).reserved_bytes("catalog") == 4 * MIB


def _job(subscriber="s") -> jobs.Job:
    job = jobs.new_job(subscriber=subscriber, operations=["gaussian"], device="cpu",
                       inputs=["inline:16"], created_at=time.time())
    return jobs.apply(job, jobs.InputsReceived(time.time()))


def test_a_job_end_met_by_a_full_disk_is_recorded_failed_unbilled_once_space_returns(
        tmp_path):
    """SQLite's 'database or disk is full' at the end of a job: the job is kept and
    recorded FAILED as the platform's fault once the catalog can be written, never left
    RUNNING; exactly one usage record."""
    with tmpfs(tmp_path / "fs", 4) as fs:
        config = ServerConfig(data_dir=fs, min_free_bytes=0)
        catalog = Catalog(fs, runner="r1")
        service = ProcessingService(config, catalog, dispatcher=None, spool=None)

        async def main():
            job = jobs.apply(_job(), jobs.Started(time.time(), "w"))
            await catalog.put_job(job)
            filler = fill(fs)
            error = None
            for _ in range(200):   # the WAL's last page may still hold a few records
                try:
                    await catalog.put_job(jobs.apply(_job(), jobs.Started(time.time(), "w")))
                except sqlite3.OperationalError as exc:
                    error = exc
                    break
            assert error is not None, "the catalog never met the full disk"
            assert status_of(error)[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
            await service.fail(job, error, bytes_in=16, n_images=1)
            assert set(service.unrecorded) == {job.id}
            assert (await catalog.get_job(job.id)).state is jobs.State.RUNNING
            assert await service.record_unrecorded() == 1       # still full: kept
            filler.unlink()
            assert await service.record_unrecorded() == 0
            ended = await catalog.get_job(job.id)
            assert ended.state is jobs.State.FAILED and ended.platform_fault
            assert ended.error_code == "RESOURCE_EXHAUSTED"
            [usage] = await catalog.usage_for(job.id)
            assert usage["platform_fault"] and usage["state"] == "FAILED"
            # The catalog serves again without being reopened.
            assert await catalog.put_job(_job())
        try:
            asyncio.run(asyncio.wait_for(main(), 60))
        finally:
            catalog.close()
        assert free_bytes(fs) > 0


# -- how it is exposed ----------------------------------------------------------------------

def test_serve_takes_min_free_in_mib_or_percent_with_a_default():
    from medcompute.client.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve"]).min_free == MinFree(bytes=1024 * MIB)
    assert parser.parse_args(["serve", "--min-free", "5%"]).min_free == MinFree(percent=5)
    assert parser.parse_args(["serve", "--min-free", "512"]).min_free == MinFree(bytes=512 * MIB)


def test_serve_refuses_a_bad_min_free_naming_the_option(capsys):
    from medcompute.client.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--min-free", "lots"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--min-free" in err and "expected MiB (e.g. 512) or a percentage" in err


def test_gauges_of_free_and_reserved_bytes_per_location(tmp_path):
    from medcompute.server.monitoring.metrics import Metrics

    metrics = Metrics(gpu=False)
    reserve = FreeSpaceReserve(tmp_path, MinFree(bytes=5 * MIB),
                               statvfs=FakeStatvfs(total=100 * MIB, free=40 * MIB))
    metrics.set_storage_source(reserve.status)
    text = metrics.render().decode()
    samples = dict(re.findall(r'^(medcompute_storage_\w+{location="\w+"}) (\S+)$', text,
                              re.M))
    for location in ("catalog", "blobs", "spool", "jobs"):
        label = f'{{location="{location}"}}'
        assert float(samples["medcompute_storage_free_bytes" + label]) == 40 * MIB
        assert float(samples["medcompute_storage_reserved_bytes" + label]) == 5 * MIB

    def broken():
        raise OSError(errno.EIO, "Input/output error")
    metrics.set_storage_source(broken)
    text = metrics.render().decode()     # the scrape still answers, without those samples
    assert "medcompute_storage_free_bytes" not in text and "medcompute_jobs_total" in text


# -- the image store on a full disk ---------------------------------------------------------

def _register(store, array, *, fill_after: int | None = None, fs=None, leave: int = 0):
    """Register ``array``; with ``fill_after``, another process fills the disk (to
    ``leave`` bytes free) once that many chunks have been sent, after the call's check."""
    from tests.store_helpers import payloads, raw_descriptor, register

    async def chunks():
        pieces = payloads(array.tobytes(), chunk_size=256 << 10)
        for i, data in enumerate(pieces, 1):
            yield i, image_pb2.Chunk(data=data)
            if i == fill_after:
                fill(fs, leave=leave)
    return register(store, raw_descriptor(array), chunks(), owner="s")


def test_an_upload_met_by_a_full_disk_leaves_nothing_and_succeeds_once_space_returns(
        tmp_path):
    from medcompute.server.store import admin as store_admin
    from tests.store_helpers import with_store

    array = np.random.default_rng(1).integers(0, 1 << 15, (48, 256, 256)).astype(np.int16)
    with tmpfs(tmp_path / "fs", 12) as fs:
        async def body(store):
            with pytest.raises(OSError) as met:     # 6 MiB; the disk fills after 1 MiB
                await _register(store, array, fill_after=4, fs=fs)
            assert status_of(met.value)[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert list(store.blobs.tmp.iterdir()) == []
            assert await store.catalog.count() == 0
            for filler in fs.glob("filler-*"):
                filler.unlink()
            record, existing, _ = await _register(store, array)
            assert not existing
            report = await store_admin.verify(store)
            assert report.ok and report.images == 1 and report.unreferenced == 0
        with_store(fs / "data", body, min_free_bytes=0)


def test_a_catalog_row_that_cannot_be_committed_leaves_no_blob_behind(tmp_path):
    """The blob is written and installed, then SQLite finds the disk full: neither the row
    nor the blob is kept (no row without its blob, no blob taking space without a row)."""
    from medcompute.server.store import admin as store_admin
    from tests.store_helpers import with_store

    first = np.ones((4, 4), np.int16)
    array = np.zeros((256, 256), np.int16)     # 128 KiB that compress to one page
    with tmpfs(tmp_path / "fs", 8) as fs:
        async def body(store):
            await _register(store, first)
            before = sorted(store.blobs.digests())
            with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
                await _register(store, array, fill_after=1, fs=fs, leave=4096)
            assert sorted(store.blobs.digests()) == before
            assert list(store.blobs.tmp.iterdir()) == []
            report = await store_admin.verify(store)
            assert report.ok and report.images == 1 and report.unreferenced == 0
            for filler in fs.glob("filler-*"):
                filler.unlink()
            _, existing, _ = await _register(store, array)      # served again, no reopening
            assert not existing and await store.catalog.count() == 2
        with_store(fs / "data", body, min_free_bytes=0)


def test_a_fetch_whose_mark_meets_a_full_disk_still_succeeds(tmp_path):
    from medcompute.server.jobs.runner import JobRunner

    with tmpfs(tmp_path / "fs", 4) as fs:
        config = ServerConfig(data_dir=fs, min_free_bytes=0)
        catalog = Catalog(fs, runner="r1")
        runner = JobRunner(config, service=None, catalog=catalog)
        job = _job("sender")

        async def main():
            await catalog.put_job(job)
            await catalog.db.write(Catalog.deliver, job.id, "reader", "sender", time.time())
            filler = fill(fs)
            await runner.fetched(job.id)                    # no error for the caller
            assert (await catalog.delivery(job.id))["fetched_at"] is None
            filler.unlink()
            await runner.fetched(job.id)
            assert (await catalog.delivery(job.id))["fetched_at"] is not None
        try:
            asyncio.run(asyncio.wait_for(main(), 60))
        finally:
            catalog.close()


def test_audit_and_job_upkeep_on_a_full_disk_warn_and_go_on(tmp_path, caplog):
    import logging

    from medcompute.server.api.guard import Call, Guard
    from medcompute.server.jobs.runner import JobRunner
    from medcompute.server.storage.audit import AuditLog
    from medcompute.server.storage.keys import Principal

    with tmpfs(tmp_path / "fs", 4) as fs:
        config = ServerConfig(data_dir=fs, min_free_bytes=0)
        catalog = Catalog(fs, runner="r1", lease_seconds=0.6)
        audit = AuditLog(fs)
        guard = Guard(config, keys=None, audit=audit)
        runner = JobRunner(config, ProcessingService(config, catalog, None, None), catalog)

        async def main():
            await catalog.put_job(jobs.apply(_job(), jobs.Started(time.time(), "w")))  # a lease
            fill(fs)
            call = Call("store.get", Principal("s", frozenset()), object_id="x")
            await guard.record(call, "OK")                   # the served call stays served
            upkeep = asyncio.create_task(runner._upkeep())
            await asyncio.sleep(0.7)
            upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upkeep
        try:
            with caplog.at_level(logging.WARNING):
                asyncio.run(asyncio.wait_for(main(), 60))
        finally:
            audit.close()
            catalog.close()
        messages = [r.getMessage() for r in caplog.records]
        assert any("could not write the audit entry of store.get" in m for m in messages)
        assert any("job upkeep: the catalog cannot be written" in m for m in messages)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_storage_health_follows_the_reserve_and_an_unreadable_filesystem(tmp_path):
    from grpc_health.v1 import health, health_pb2

    from medcompute.server.api.health import publisher
    from medcompute.server.monitoring.health import STORAGE_HEALTH_NAME, watch_storage

    async def _watch_storage(space, servicer, was):
        return await watch_storage(space, publisher(servicer), was)

    statvfs = FakeStatvfs(total=100 * MIB, free=50 * MIB)
    reserve = FreeSpaceReserve(tmp_path, MinFree(bytes=10 * MIB), statvfs=statvfs)

    async def main():
        servicer = health.aio.HealthServicer()

        async def status():
            reply = await servicer.Check(
                health_pb2.HealthCheckRequest(service=STORAGE_HEALTH_NAME), None)
            return reply.status
        state = await _watch_storage(reserve, servicer, None)
        assert state and await status() == health_pb2.HealthCheckResponse.SERVING
        statvfs.free = 5 * MIB
        state = await _watch_storage(reserve, servicer, state)
        assert not state and await status() == health_pb2.HealthCheckResponse.NOT_SERVING
        statvfs.free = 50 * MIB
        state = await _watch_storage(reserve, servicer, state)
        assert state and await status() == health_pb2.HealthCheckResponse.SERVING

        def unreadable(path):     # a filesystem that cannot be asked (gone, I/O error)
            raise OSError(errno.EIO, "Input/output error")
        reserve._statvfs = unreadable
        state = await _watch_storage(reserve, servicer, state)
        assert not state and await status() == health_pb2.HealthCheckResponse.NOT_SERVING
    asyncio.run(asyncio.wait_for(main(), 30))

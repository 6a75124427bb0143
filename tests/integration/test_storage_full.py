"""A full disk is refused cleanly and nothing acknowledged is lost.

The first test runs wherever the reserve can be tested without a real small filesystem:
the server's free-space reserve reads a fake statvfs (``FakeStatvfs``), set by the test.

The server's data directory is a 40 MiB tmpfs mounted by the test (a real filesystem that
really fills up). Uploads fill it to the free-space reserve; another process's file then
takes it past the reserve while concurrent submits and a large result write to it. Every
call ends OK or RESOURCE_EXHAUSTED/UNAVAILABLE, never INTERNAL; every job ends (none is
left RUNNING) with one usage record; after space is freed the same requests succeed
without a restart, `store verify` finds every acknowledged image intact and results equal
a fresh computation.
"""

from __future__ import annotations

import re
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from medcompute.client import Client, ServiceError
from medcompute.proto.v1 import jobs_pb2
from medcompute.server.config import ServerConfig
from medcompute.server.monitoring.health import STORAGE_HEALTH_NAME
from tests.space_helpers import MIB, FakeStatvfs, fill, free_bytes, tmpfs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RESERVE = 6 * MIB
CLEAN = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
SMOOTH = ["gaussian:sigma=1"]


def _image(k: int) -> np.ndarray:
    """~2 MiB of voxels that compress little, different for each k."""
    return np.random.default_rng(k).integers(0, 1 << 15, (16, 256, 256)).astype(np.int16)


def _health(address: str, wanted: int, timeout: float = 15.0) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = stub.Check(health_pb2.HealthCheckRequest(service=STORAGE_HEALTH_NAME),
                                timeout=5).status
            if status == wanted:
                return
            time.sleep(0.2)
    pytest.fail(f"storage health stayed {status}, expected {wanted}")


def _gauge(text: str, name: str, location: str) -> float:
    match = re.search(rf'^{name}{{location="{location}"}} (\S+)$', text, re.M)
    assert match, f"{name}{{location={location}}} is not exposed"
    return float(match.group(1))


def _refused(exc: ServiceError) -> None:
    assert exc.code in CLEAN, f"{exc.code.name}: {exc.details}"
    assert "internal error" not in exc.details


def test_the_reserve_refuses_writes_keeps_reads_and_lifts_without_a_restart_fake_statvfs(
        tmp_path, server_thread):
    """The reserve with a fake statvfs: runs where no tmpfs can be mounted (non-root)."""
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path / "data", workers=1,
                          min_free_bytes=100 * MIB)
    with server_thread(config) as server, Client(server.address, timeout=120) as c:
        fake = FakeStatvfs(total=1 << 30, free=500 * MIB)
        server.running.store.space._statvfs = fake     # the one reserve every path uses
        kept = c.store.register(_image(1))
        small = _image(2)[0, :64, :64].astype(np.float32)
        fake.free = 50 * MIB
        for write in (lambda: c.store.register(_image(3)), lambda: c.submit(small, SMOOTH),
                      lambda: c.process(small, SMOOTH),
                      lambda: c.process("id:" + kept.image_id, SMOOTH)):
            with pytest.raises(ServiceError) as exc:
                write()
            assert exc.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "has 50.0 MB (52428800 bytes) free" in exc.value.details
            assert "100.0 MB (104857600 bytes) are reserved" in exc.value.details
        _health(server.address, health_pb2.HealthCheckResponse.NOT_SERVING)
        metrics = server.running.metrics.render().decode()
        assert _gauge(metrics, "medcompute_storage_free_bytes", "jobs") == 50 * MIB
        assert np.array_equal(c.store.get(kept).array, _image(1))
        assert c.store.verify()["problems"] == []
        assert c.store.purge()["image_ids"] == []
        fake.free = 500 * MIB                            # an operator made room
        _health(server.address, health_pb2.HealthCheckResponse.SERVING)
        again = c.store.register(_image(3))
        job = c.wait(c.submit(small, SMOOTH).job_id, timeout=60)
        assert job.state == jobs_pb2.JOB_STATE_SUCCEEDED
        assert c.process(small, SMOOTH).array.shape == small.shape
        assert c.store.delete(again) > 0


def test_a_filling_disk_is_refused_cleanly_and_serves_again_once_space_is_freed(
        tmp_path, server_thread):
    with tmpfs(tmp_path / "fs", 40) as fs:
        data = fs / "data"
        config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=1,
                              min_free_bytes=RESERVE, job_lease_seconds=3)
        # Chunks, not shared memory: this test's images and results are to pass through
        # the data directory's disk (a region's bytes never touch it).
        with server_thread(config) as server, \
                Client(server.address, timeout=120, shared_memory=False) as c:
            _run(server, c, fs, data)


def _run(server, c: Client, fs, data) -> None:
    store = c.store
    acked: dict[str, int] = {}

    # 1. Uploads until the reserve refuses them, at once, naming free and reserved space.
    for k in range(40):
        try:
            acked[store.register(_image(k)).image_id] = k
        except ServiceError as exc:
            assert exc.code is grpc.StatusCode.RESOURCE_EXHAUSTED, exc
            assert re.search(r"location has [\d.]+ MB \(\d+ bytes\) free", exc.details)
            assert "6.0 MB (6291456 bytes) are reserved (--min-free 6 MiB)" in exc.details
            refused = k
            break
    else:
        pytest.fail("40 uploads of ~2 MiB fit on a 40 MiB disk")
    assert len(acked) >= 8
    # A little more taken by another process: now below the reserve itself.
    squeeze = fill(fs, leave=RESERVE - MIB)
    _health(server.address, health_pb2.HealthCheckResponse.NOT_SERVING)
    metrics = server.running.metrics.render().decode()
    assert abs(_gauge(metrics, "medcompute_storage_free_bytes", "blobs") - free_bytes(fs)) \
        < 2 * MIB
    assert _gauge(metrics, "medcompute_storage_reserved_bytes", "spool") == RESERVE

    # Below the reserve every write is refused at once; reads, previews, verify, key
    # administration and deletes still work.
    small = _image(100)[0, :64, :64].astype(np.float32)     # 16 KiB
    for write in (lambda: c.submit(small, SMOOTH), lambda: c.process(small, SMOOTH)):
        with pytest.raises(ServiceError) as exc:
            write()
        assert exc.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "reserved" in exc.value.details
    first = next(iter(acked))
    assert np.array_equal(store.get(first).array, _image(acked[first]))
    assert len(store.find()) == len(acked)
    assert store.preview(first).png.startswith(b"\x89PNG")
    assert store.verify()["problems"] == []
    # The key of the same subscriber (the first key makes keys required from now on).
    admin = c.create_key("local", "admin,store,process").api_key
    with Client(server.address, timeout=120, api_key=admin, shared_memory=False) as a:
        assert [k.subscriber for k in a.list_keys()] == ["local"]
        for image_id in list(acked)[:3]:
            assert a.store.delete(image_id) > 0
            del acked[image_id]
        squeeze.unlink()
        _run_with_room(server, a, fs, data, acked, refused)


def _run_with_room(server, c: Client, fs, data, acked: dict, refused: int) -> None:
    store = c.store
    # 2. Once images are deleted, the refused request succeeds: no restart.
    _health(server.address, health_pb2.HealthCheckResponse.SERVING)
    acked[store.register(_image(refused)).image_id] = refused

    # 3. Another process fills the disk to just above the reserve; a large result and
    # concurrent submits then meet a disk that is really full.
    filler = fill(fs, leave=RESERVE + 3 * MIB)
    big = np.random.default_rng(7).integers(0, 255, (1536, 1536)).astype(np.uint8)
    with pytest.raises(ServiceError) as exc:   # 2.25 MiB in, an 18 MiB float64 result
        c.process(big, SMOOTH, output_dtype="float64")
    _refused(exc.value)
    inputs = [np.random.default_rng(50 + i).random((512, 512), dtype=np.float32)
              for i in range(6)]
    submitted: dict[int, str] = {}
    refusals: list[int] = []

    def submit(i: int) -> None:
        try:
            submitted[i] = c.submit(inputs[i], SMOOTH).job_id
        except ServiceError as exc:
            _refused(exc)
            refusals.append(i)
    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(submitted) + len(refusals) == len(inputs)
    time.sleep(1.0)                    # the accepted jobs run against the full disk
    filler.unlink()

    # 4. Every job ends; succeeded results equal a fresh computation; once images are
    # deleted, the refused submits succeed.
    for image_id in list(acked)[:4]:
        store.delete(image_id)
        del acked[image_id]
    for i in refusals:
        submitted[i] = c.submit(inputs[i], SMOOTH).job_id
    failed = []
    for i, job_id in submitted.items():
        info = c.wait(job_id, timeout=90)
        if info.state == jobs_pb2.JOB_STATE_FAILED:   # met the full disk: the platform's fault
            assert info.error_code in ("RESOURCE_EXHAUSTED", "UNAVAILABLE"), info.error
            assert info.platform_fault, info
            failed.append(i)
            continue
        assert info.state == jobs_pb2.JOB_STATE_SUCCEEDED, info
    for i in failed:                        # the same request, now that there is room
        submitted[i] = c.submit(inputs[i], SMOOTH).job_id
    for i, job_id in submitted.items():
        assert c.wait(job_id, timeout=90).state == jobs_pb2.JOB_STATE_SUCCEEDED
        fresh = c.process(inputs[i], SMOOTH).array
        assert np.array_equal(c.fetch(job_id).array, fresh)
    everything = c.jobs(limit=1000).jobs
    assert len(everything) >= len(submitted) + 1
    for job in everything:
        assert job.state in (jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED), job
        if job.state == jobs_pb2.JOB_STATE_FAILED:
            assert job.platform_fault and job.error_code in ("RESOURCE_EXHAUSTED",
                                                              "UNAVAILABLE"), job
        assert len(server.call(server.catalog.usage_for(job.job_id))) == 1
    # The large result needs 20 MiB beyond the reserve: deleting images makes the room.
    while free_bytes(fs) < RESERVE + 21 * MIB:
        image_id = next(iter(acked))
        store.delete(image_id)
        del acked[image_id]
    assert acked, "no image is left to check"
    result = c.process(big, SMOOTH, output_dtype="float64").array
    assert result.shape == big.shape and result.dtype == np.float64

    # 5. Nothing acknowledged is lost, nothing half-written is left.
    report = store.verify()
    assert report["problems"] == [] and report["images"] == len(acked), report
    assert report["unreferenced_blobs"] == 0
    for image_id, k in acked.items():
        assert np.array_equal(store.get(image_id).array, _image(k))
    assert list((data / "spool").iterdir()) == []
    assert list((data / "blobs" / "tmp").iterdir()) == []
    assert not list((data / "jobs").glob("*/in*"))

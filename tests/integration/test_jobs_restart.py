"""Jobs survive the server: `medcompute serve` killed with SIGKILL while jobs are
receiving, queued and running; a new server on the same data directory completes or
visibly fails every one of them, none twice, none billed twice. And a Dask worker killed
under an asynchronous job does not bill it twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from medcompute.client import Client
from medcompute.proto.v1 import image_pb2, jobs_pb2, jobs_pb2_grpc
from medcompute.server.config import ServerConfig
from tests.served import Served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SLOW = ["median:size=5"] * 16          # several seconds on one worker
HELD = ["median:size=5"] * 2           # the job a server holds RUNNING (tests/hold_jobs.py)


def _vol(seed, shape=(24, 96, 96)):
    return np.random.default_rng(seed).normal(100, 20, shape).astype(np.float32)


def _wait_state(c: Client, job_id: str, states, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        info = c.job(job_id)
        if info.state in states:
            return info
        assert time.monotonic() < deadline, f"job stayed {jobs_pb2.JobState.Name(info.state)}"
        time.sleep(0.1)


def _slow_upload(address: str, image: np.ndarray, key: str, stop: threading.Event):
    """A submit whose chunks trickle in until ``stop`` (the server dies first)."""
    from medcompute.client.request import _header

    header, _ = _header(image, ["gaussian:sigma=1"], spacing=None, operands=(), device="auto",
                        output_dtype="float32", compute_dtype="float32", output="array",
                        compression="none", allow_fallback=False, store_result=False,
                        retention=None, recompute=False)
    data = image.tobytes()

    def messages():
        yield jobs_pb2.SubmitRequest(header=jobs_pb2.SubmitHeader(
            process=header, idempotency_key=key, label="interrupted-upload"))
        yield jobs_pb2.SubmitRequest(chunk=image_pb2.Chunk(data=data[:1 << 20]))
        stop.wait(120)

    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError):
            jobs_pb2_grpc.JobsServiceStub(channel).Submit(messages(), timeout=120)


def test_sigkill_with_jobs_in_every_state_then_restart_ends_each_once(tmp_path):
    data, held = tmp_path / "data", tmp_path / "held"
    held.mkdir()
    flags = ("--job-lease", "2", "--max-queue", "1")
    # The first server holds the job it runs RUNNING until it is killed (tests/hold_jobs.py):
    # its one slot stays taken, so the other jobs stay QUEUED.
    first = Served(data, tmp_path / "first.log", *flags,
                   program=(sys.executable, "-m", "tests.hold_jobs", str(held)))
    stop_upload = threading.Event()
    try:
        with Client(first.address, timeout=60) as c:
            running = c.submit(_vol(1), HELD, device="cpu", label="running")
            queued = [c.submit(_vol(s, (8, 64, 64)), ["gaussian:sigma=2"], label="queued")
                      for s in (2, 3)]
            with ThreadPoolExecutor(1) as pool:
                upload = pool.submit(_slow_upload, first.address, _vol(4, (16, 256, 256)),
                                     "upload-1", stop_upload)
                deadline = time.monotonic() + 30
                while not [j for j in c.jobs(states=["receiving"]).jobs]:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                assert _wait_state(c, running.job_id, [jobs_pb2.JOB_STATE_RUNNING]).state == \
                    jobs_pb2.JOB_STATE_RUNNING
                assert [c.job(q.job_id).state for q in queued] == [jobs_pb2.JOB_STATE_QUEUED] * 2
                first.kill()
                stop_upload.set()
                upload.result(30)
    finally:
        stop_upload.set()
        if first.proc.poll() is None:
            first.kill()

    second = Served(data, tmp_path / "second.log", *flags)
    try:
        with Client(second.address, timeout=60) as c:
            for job in [running, *queued]:
                info = c.wait(job.job_id, timeout=120)
                assert info.state == jobs_pb2.JOB_STATE_SUCCEEDED, info.error
            np.testing.assert_array_equal(c.fetch(running.job_id).array,
                                          c.process(_vol(1), HELD, device="cpu").array)
            [receiving] = [j for j in c.jobs(limit=100).jobs if j.label == "interrupted-upload"]
            assert receiving.state == jobs_pb2.JOB_STATE_FAILED and receiving.platform_fault
            assert "stopped while receiving the inputs" in receiving.error
            # Its key was never answered: a retry makes the job anew.
            retry = c.submit(_vol(4, (16, 256, 256)), ["gaussian:sigma=1"],
                             idempotency_key="upload-1")
            assert retry.job_id != receiving.job_id
            assert c.wait(retry.job_id, timeout=60).state == jobs_pb2.JOB_STATE_SUCCEEDED
            usage = c.usage(include_records=True)
    finally:
        second.stop()

    with sqlite3.connect(data / "catalog.sqlite3") as db:
        per_job = dict(db.execute("SELECT job_id, COUNT(*) FROM usage GROUP BY job_id"))
        records = {r[0]: json.loads(r[1]) for r in db.execute("SELECT job_id, record FROM usage")}
        unended = db.execute("SELECT COUNT(*) FROM jobs WHERE state NOT IN"
                             " ('SUCCEEDED', 'FAILED', 'CANCELLED')").fetchone()[0]
        attempts = dict(db.execute("SELECT job_id, attempts FROM job_requests"))
    assert unended == 0
    assert set(per_job.values()) == {1}                      # one usage record per job
    assert records[receiving.job_id]["platform_fault"] is True
    assert attempts[running.job_id] == 1                     # taken over once
    # Billing: every job but the platform's failure is charged, each once.
    assert usage.totals.jobs == len(records)
    assert usage.totals.platform_failures == 1
    assert usage.totals.billable_jobs == len(records) - 1
    assert len({r.job_id for r in usage.records}) == len(usage.records) == len(records)


def test_a_worker_killed_under_an_asynchronous_job_bills_it_once(tmp_path, server_thread):
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, workers=2, gpu_workers=0)
    with server_thread(config) as server, Client(server.address, timeout=60) as c:
        async def pids():
            return await server.running.dispatcher.client.run(os.getpid)

        worker_pids = server.call(pids())
        started = threading.Event()
        seen = {}

        def listener(message):
            if message.get("event") in ("started", "sent") and not started.is_set():
                seen.update(message)
                started.set()

        server.running.dispatcher.add_listener(listener)
        try:
            job = c.submit(_vol(7), ["median:size=5"] * 12, device="cpu")
            assert started.wait(60)
            os.kill(worker_pids[seen["worker"]], signal.SIGKILL)
            info = c.wait(job.job_id, timeout=180)
        finally:
            server.running.dispatcher.remove_listener(listener)
        assert info.state == jobs_pb2.JOB_STATE_SUCCEEDED and info.worker != seen["worker"]
        usage = c.usage(include_records=True)
        assert [r.job_id for r in usage.records].count(job.job_id) == 1
        assert usage.totals.billable_jobs == 1


def test_a_graceful_stop_hands_running_jobs_to_the_next_server_at_once(tmp_path,
                                                                       server_thread):
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, workers=1, gpu_workers=0,
                          job_lease_seconds=600)         # no waiting for a lease to run out
    with server_thread(config) as first, Client(first.address, timeout=60) as c:
        job = c.submit(_vol(8), SLOW, device="cpu")
        _wait_state(c, job.job_id, [jobs_pb2.JOB_STATE_RUNNING])
    with server_thread(config) as second, Client(second.address, timeout=60) as c:
        info = c.wait(job.job_id, timeout=120)
        assert info.state == jobs_pb2.JOB_STATE_SUCCEEDED
        usage = c.usage(include_records=True)
    assert [r.job_id for r in usage.records] == [job.job_id]

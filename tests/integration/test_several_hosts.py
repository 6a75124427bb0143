"""Several front ends on one PostgreSQL catalog, as on several hosts: real ``medcompute
serve`` processes sharing a data directory (separate spool folders) and a real
PostgreSQL. One front end SIGKILLed mid-load: the other takes its jobs over, follows them
to their end (``jobs watch`` on host B of a job host A ran), every acknowledged job ends
once with one usage record. PostgreSQL stopped and started under load: the calls get
UNAVAILABLE, then succeed, without restarting the service."""

from __future__ import annotations

import sys
import time

import grpc
import numpy as np
import psycopg
import pytest

from medcompute.client import Client, ServiceError
from medcompute.proto.v1 import jobs_pb2
from medcompute.server.config import ServerConfig
from tests.postgres_peer import PostgresServer
from tests.served import Served

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(300)]

HELD = ["median:size=5"] * 2           # the job a server holds RUNNING (tests/hold_jobs.py)
ENDED = (jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED)


def _vol(seed, shape=(8, 64, 64)):
    return np.random.default_rng(seed).normal(100, 20, shape).astype(np.float32)


def _wait_state(c: Client, job_id: str, states, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        info = c.job(job_id)
        if info.state in states:
            return info
        assert time.monotonic() < deadline, f"job stayed {jobs_pb2.JobState.Name(info.state)}"
        time.sleep(0.1)


def test_a_front_end_killed_mid_load_has_its_jobs_ended_once_by_the_other(tmp_path, postgres):
    url = postgres.fresh_url()
    data = tmp_path / "shared-data"
    flags = ("--catalog", url, "--catalog-timeout", "2", "--job-lease", "2", "--max-queue", "1")
    held = tmp_path / "held"
    held.mkdir()
    # Host A holds the job it runs RUNNING until it is killed (tests/hold_jobs.py): the
    # kill finds it running whatever the machine's load.
    host_a = Served(data, tmp_path / "a.log", *flags, "--spool-name", "a",
                    program=(sys.executable, "-m", "tests.hold_jobs", str(held)))
    host_b = Served(data, tmp_path / "b.log", *flags, "--spool-name", "b")
    acknowledged = []
    try:
        with Client(host_a.address, timeout=60) as a, Client(host_b.address, timeout=60) as b:
            running = a.submit(_vol(1, (24, 96, 96)), HELD, device="cpu", label="running")
            acknowledged.append(running.job_id)
            for seed in range(2, 5):
                acknowledged.append(a.submit(_vol(seed), ["gaussian:sigma=2"]).job_id)
                acknowledged.append(b.submit(_vol(seed + 10), ["gaussian:sigma=2"]).job_id)
            _wait_state(a, running.job_id, (jobs_pb2.JOB_STATE_RUNNING,))
            # Host B sees host A's job in the shared catalog.
            assert b.job(running.job_id).state == jobs_pb2.JOB_STATE_RUNNING
            host_a.kill()
            # Host B takes it over and its watch follows it to the end.
            final = b.wait(running.job_id, timeout=180)
            assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final.error
            assert b.fetch(running.job_id).array.shape == (24, 96, 96)
            for job_id in acknowledged:
                info = b.wait(job_id, timeout=180)
                assert info.state == jobs_pb2.JOB_STATE_SUCCEEDED, (job_id, info.error)
    finally:
        if host_a.proc.poll() is None:
            host_a.kill()
        host_b.stop()

    with psycopg.connect(url) as db:
        per_job = dict(db.execute("SELECT job_id, COUNT(*) FROM usage GROUP BY job_id"))
        states = dict(db.execute("SELECT id, state FROM jobs"))
        attempts = dict(db.execute("SELECT job_id, attempts FROM job_requests"))
    assert all(per_job.get(job_id) == 1 for job_id in acknowledged)    # one record each
    assert all(states[job_id] == "SUCCEEDED" for job_id in acknowledged)
    assert attempts[running.job_id] == 1                              # taken over once


def test_postgresql_stopped_and_started_under_load_gives_unavailable_then_success(
        tmp_path, server_thread):
    with PostgresServer() as pg:
        config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path / "data", workers=1,
                              gpu_workers=0, catalog=pg.url, catalog_timeout=2.0)
        with server_thread(config) as server, Client(server.address, timeout=60) as c:
            before = c.submit(_vol(1), ["gaussian:sigma=1"])
            assert c.wait(before.job_id, timeout=60).state == jobs_pb2.JOB_STATE_SUCCEEDED
            pg.stop()
            with pytest.raises(ServiceError) as err:
                c.submit(_vol(2), ["gaussian:sigma=1"])
            assert err.value.code == grpc.StatusCode.UNAVAILABLE
            assert "catalog database could not be reached" in err.value.details
            with pytest.raises(ServiceError) as err:
                c.job(before.job_id)
            assert err.value.code == grpc.StatusCode.UNAVAILABLE
            pg.start()
            # The same service recovers by itself: the next calls succeed.
            deadline = time.monotonic() + 60
            while True:
                try:
                    after = c.submit(_vol(3), ["gaussian:sigma=1"])
                    break
                except ServiceError as exc:
                    assert exc.code == grpc.StatusCode.UNAVAILABLE
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            assert c.wait(after.job_id, timeout=60).state == jobs_pb2.JOB_STATE_SUCCEEDED
            assert c.job(before.job_id).state == jobs_pb2.JOB_STATE_SUCCEEDED
            with psycopg.connect(pg.url) as db:
                per_job = dict(db.execute("SELECT job_id, COUNT(*) FROM usage GROUP BY job_id"))
            assert per_job[before.job_id] == 1 and per_job[after.job_id] == 1

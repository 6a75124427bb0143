"""Several servers on one data directory behind a client's round-robin target: the calls
are spread over them, and a server killed with SIGKILL loses no acknowledged job."""

from __future__ import annotations

import sqlite3
import sys
import time

import numpy as np
import pytest

from medcompute.client import Client
from medcompute.proto.v1 import jobs_pb2
from tests.served import Served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PIPELINE = ["median:size=5", "mean:size=3"]


def _vol(seed, shape=(16, 96, 96)):
    return np.random.default_rng(seed).normal(100, 20, shape).astype(np.float32)


def test_two_servers_share_the_calls_and_a_killed_one_loses_no_acknowledged_job(tmp_path):
    data, held = tmp_path / "data", tmp_path / "held"
    held.mkdir()
    flags = ("--job-lease", "2")
    # The jobs a runs are held RUNNING there until it is killed (tests/hold_jobs.py).
    a = Served(data, tmp_path / "a.log", *flags,
               program=(sys.executable, "-m", "tests.hold_jobs", str(held)))
    b = Served(data, tmp_path / "b.log", *flags)
    try:
        target = f"ipv4:{a.address},{b.address}"
        with Client(target, timeout=120) as c:
            small = np.arange(64, dtype=np.uint8).reshape(8, 8)
            answered = [c.process(small, ["mean:size=3"]) for _ in range(10)]
            # Each server has its own Dask worker: both took calls.
            assert len({r.header.worker for r in answered}) == 2
            items = list(c.process_many([small + k for k in range(8)], ["mean:size=3"],
                                        streams=2))
            assert sorted(i.index for i in items) == list(range(8))
            assert len({i.result.header.worker for i in items}) == 2
            submitted = [c.submit(_vol(k), PIPELINE, device="cpu", label=f"job-{k}")
                         for k in range(4)]
        deadline = time.monotonic() + 120      # a generous bound on a's taking one
        while not (running := [j.job_id for j in submitted if (held / j.job_id).exists()]):
            assert time.monotonic() < deadline, "no submitted job is running on a"
            time.sleep(0.1)
        a.kill()                       # with some of its submitted jobs not ended yet
        with sqlite3.connect(data / "catalog.sqlite3") as db:
            states = dict(db.execute("SELECT id, state FROM jobs"))
        assert all(states[j] == "RUNNING" for j in running)
        with Client(b.address, timeout=120) as c:
            for job in submitted:      # the survivor takes over the killed server's jobs
                info = c.wait(job.job_id, timeout=180)
                assert info.state == jobs_pb2.JOB_STATE_SUCCEEDED, info.error
            np.testing.assert_array_equal(c.fetch(submitted[0].job_id).array,
                                          c.process(_vol(0), PIPELINE, device="cpu").array)
    finally:
        for served in (a, b):
            if served.proc.poll() is None:
                served.stop()
    with sqlite3.connect(data / "catalog.sqlite3") as db:
        states = dict(db.execute("SELECT id, state FROM jobs"))
        usage = dict(db.execute("SELECT job_id, COUNT(*) FROM usage GROUP BY job_id"))
    acknowledged = [r.job_id for r in answered] + [i.job_id for i in items] + \
        [j.job_id for j in submitted]
    assert all(states[j] == "SUCCEEDED" for j in acknowledged)
    assert all(usage[j] == 1 for j in acknowledged)       # one usage record each


def _listeners(root_pid: int, port: int) -> set[int]:
    """The pids in ``root_pid``'s process tree listening on ``port``."""
    import psutil

    root = psutil.Process(root_pid)
    pids = set()
    for proc in [root, *root.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            pids.add(proc.pid)
    return pids


def test_serve_processes_runs_several_servers_on_one_address(tmp_path):
    data = tmp_path / "data"
    served = Served(data, tmp_path / "serve.log", "--processes", "2")
    try:
        port = int(served.address.rsplit(":", 1)[1])
        assert len(_listeners(served.proc.pid, port)) == 2      # SO_REUSEPORT
        jobs = []
        for k in range(6):             # a new connection each: the kernel spreads them
            with Client(served.address, timeout=120) as c:
                r = c.process(np.full((8, 8), k, np.uint8), ["mean:size=3"])
                np.testing.assert_allclose(r.array, k)
                jobs.append(c.submit(np.full((8, 8), k, np.uint8), ["mean:size=3"]).job_id)
        with Client(served.address, timeout=120) as c:
            for job_id in jobs:        # one catalog: every job is seen from any process
                assert c.wait(job_id, timeout=120).state == jobs_pb2.JOB_STATE_SUCCEEDED
    finally:
        served.stop()
    with sqlite3.connect(data / "catalog.sqlite3") as db:
        usage = dict(db.execute("SELECT job_id, COUNT(*) FROM usage GROUP BY job_id"))
    assert all(usage[j] == 1 for j in jobs)


def test_a_killed_front_end_is_started_again_and_the_address_serves_on(tmp_path):
    import os
    import signal
    import time

    data = tmp_path / "data"
    log = tmp_path / "serve.log"
    served = Served(data, log, "--processes", "2")
    try:
        port = int(served.address.rsplit(":", 1)[1])
        listeners = _listeners(served.proc.pid, port)
        [extra] = listeners - {served.proc.pid}
        os.kill(extra, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = _listeners(served.proc.pid, port)
            if len(now) == 2 and extra not in now:
                break
            time.sleep(0.5)
        assert len(now) == 2 and extra not in now, "no process took the killed one's place"
        for k in range(4):             # new connections, spread over both again
            with Client(served.address, timeout=120) as c:
                r = c.process(np.full((8, 8), k, np.uint8), ["mean:size=3"])
                np.testing.assert_allclose(r.array, k)
    finally:
        served.stop()
    assert "server process p1 ended (exit status -9); starting it again" in log.read_text()


def test_serve_refuses_zero_processes(tmp_path):
    import subprocess

    from tests.served import BIN

    done = subprocess.run([str(BIN / "medcompute"), "serve", "--processes", "0",
                           "--data-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "--processes: expected >= 1" in done.stderr


def test_default_processes_suit_the_machine():
    from medcompute.server.front_ends import default_processes

    assert [default_processes(n) for n in (1, 2, 4, 16, 64)] == [1, 1, 1, 4, 8]


def test_a_second_serve_on_a_taken_address_exits_naming_it(tmp_path):
    """Only the processes of one `serve --processes N` share an address: another `serve`
    on it, alone or as a group of its own, stops at once (exit status 2)."""
    import subprocess

    from tests.served import BIN

    served = Served(tmp_path / "data", tmp_path / "serve.log", "--processes", "2")
    try:
        for extra in ((), ("--processes", "2")):
            second = subprocess.Popen(
                [str(BIN / "medcompute"), "serve", "--address", served.address, "--data-dir",
                 str(tmp_path / f"other{len(extra)}"), "--workers", "1", *extra],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                out, err = second.communicate(timeout=120)
            except subprocess.TimeoutExpired:       # it serves: the address was shared
                second.kill()
                out, err = second.communicate()
            assert second.returncode == 2, out + err
            assert f"--address: address {served.address} is in use" in err
            assert "serving on" not in out
        with Client(served.address, timeout=120) as c:     # the first serves on
            np.testing.assert_allclose(c.process(np.ones((8, 8), np.uint8),
                                                 ["mean:size=3"]).array, 1)
    finally:
        served.stop()

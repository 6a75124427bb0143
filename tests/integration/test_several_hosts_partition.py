"""A network partition between a front end and the PostgreSQL catalog: real ``medcompute
serve`` processes, a real PostgreSQL, and a real TCP relay in front of it for host A
that the test cuts (every connection closed, new ones refused) and restores. Host A
loses the database mid-job; host B takes the job over once A's lease runs out; A's run
ends while it is cut off and its end is kept; once A is reconnected, its late end is
refused (B holds the job): the job ends once, by B, with one usage record."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import numpy as np
import psycopg
import pytest

from medcompute.client import Client
from medcompute.proto.v1 import jobs_pb2
from tests.dicom_peers import free_port
from tests.served import Served

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(300)]

SLOW = ["median:size=5"] * 8


class Relay:
    """A TCP relay on a free loopback port to ``port``: :meth:`cut` closes every
    connection through it and refuses new ones until :meth:`restore`."""

    def __init__(self, port: int):
        self.target = port
        self.port = free_port()
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        self._server.close()


def _until(check, timeout=120.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.1)


def test_a_front_end_cut_off_mid_job_does_not_end_it_a_second_time(tmp_path, postgres):
    url = postgres.fresh_url()
    relay = Relay(postgres.port)
    relayed = url.replace(f":{postgres.port}/", f":{relay.port}/")
    data = tmp_path / "shared-data"
    # A lease longer than the catalog timeout: host A's run ends, and its end fails to be
    # recorded, about when host B takes the job over, long before B's run (from the
    # start) ends; host A is reconnected while B runs it.
    flags = ("--catalog-timeout", "2", "--job-lease", "6")
    host_a = Served(data, tmp_path / "a.log", "--catalog", relayed, *flags,
                    "--spool-name", "a", "--log-level", "info")
    host_b = Served(data, tmp_path / "b.log", "--catalog", url, *flags, "--spool-name", "b")

    def row(sql, *args):
        with psycopg.connect(url) as db:
            return db.execute(sql, args).fetchone()

    try:
        with Client(host_a.address, timeout=60) as a, Client(host_b.address, timeout=60) as b:
            vol = np.random.default_rng(1).normal(100, 20, (24, 96, 96)).astype(np.float32)
            job_id = a.submit(vol, SLOW, device="cpu").job_id
            _until(lambda: b.job(job_id).state == jobs_pb2.JOB_STATE_RUNNING,
                   what="the job running on host A")
            relay.cut()
            # Host B takes the job over once host A's lease has run out ...
            _until(lambda: row("SELECT attempts FROM job_requests WHERE job_id = %s",
                               job_id)[0] >= 1, what="host B's takeover")
            # ... and host A's run ends while it cannot reach the catalog: its end is kept.
            log_a = tmp_path / "a.log"
            _until(lambda: f"could not record the end of job {job_id}" in log_a.read_text(),
                   timeout=180, what="host A's run ending while cut off")
            relay.restore()
            # Host A, reconnected, deals with the end it kept (refused: B holds the job).
            _until(lambda: f"job {job_id}: its end" in log_a.read_text(), timeout=60,
                   what="host A's kept end reconciled")
            final = b.wait(job_id, timeout=180)
            assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final.error
    finally:
        host_a.stop()
        host_b.stop()
        relay.close()
    assert row("SELECT COUNT(*) FROM usage WHERE job_id = %s", job_id)[0] == 1
    assert row("SELECT state FROM jobs WHERE id = %s", job_id)[0] == "SUCCEEDED"
    assert row("SELECT attempts FROM job_requests WHERE job_id = %s", job_id)[0] == 1

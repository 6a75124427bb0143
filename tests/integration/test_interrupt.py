"""Ctrl-C on `medcompute serve`: SIGINT to the whole process group (the server and its
embedded Dask workers), as a terminal sends it. The server stops with status 0 and its
log holds no traceback: the workers ignore SIGINT (server/worker/interrupts.py) and are
closed by the server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from medcompute.client import Client
from tests.served import BIN

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_ctrl_c_stops_the_server_and_its_workers_without_a_traceback(tmp_path):
    log = tmp_path / "server.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [str(BIN / "medcompute"), "serve", "--address", "127.0.0.1:0", "--data-dir",
             str(tmp_path / "data"), "--workers", "2"],
            stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    try:
        address = re.search(r"serving on (\S+)", proc.stdout.readline()).group(1)
        with Client(address) as c:            # the workers have run a job
            r = c.process(np.ones((32, 32), np.float32), ["gaussian:sigma=1"])
            assert r.array.shape == (32, 32)
        os.killpg(proc.pid, signal.SIGINT)    # what Ctrl-C in its terminal does
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    text = log.read_text()
    for word in ("Traceback", "KeyboardInterrupt", "CommClosedError"):
        assert word not in text, text[-4000:]
    deadline = time.monotonic() + 60           # a generous bound: the group's last exits
    while _group_alive(proc.pid):
        assert time.monotonic() < deadline, _group(proc.pid)
        time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _group(pgid: int) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) == pgid:
                found.append(open(f"/proc/{pid}/cmdline").read().replace("\0", " "))
        except (ProcessLookupError, FileNotFoundError):
            pass
    return found

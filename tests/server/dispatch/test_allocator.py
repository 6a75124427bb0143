"""The server's allocator settings: large buffers come back with their pages instead of
faulting them in again; an operator's own malloc settings are kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the thresholds are glibc's, on Linux")

# Builds and serialises 200 chunk messages of 1 MiB, as the server does for a result, and
# prints whether the thresholds were set and the page faults the loop took.
LOOP = """
import os, resource, sys
from medcompute.proto import wire
from medcompute.proto.v1 import processing_pb2
from medcompute.server.dispatch.allocator import keep_large_buffers
kept = keep_large_buffers() if sys.argv[1] == "keep" else None
payload = os.urandom(1 << 20)
wire.chunk_message(processing_pb2.ProcessResponse, payload).SerializeToString()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    wire.chunk_message(processing_pb2.ProcessResponse, payload).SerializeToString()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _environ(**env) -> dict:
    """This environment without malloc settings (nor this process's answer about them)."""
    return {**{k: v for k, v in os.environ.items()
               if not k.startswith("MALLOC_") and k != "MEDCOMPUTE_MALLOC_BY_OPERATOR"}, **env}


def _loop(mode: str, **env) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", LOOP, mode], capture_output=True, text=True,
                         check=True, env=_environ(**env), timeout=60).stdout.split()
    return out[0], int(out[1])


def test_kept_buffers_reuse_their_pages():
    kept, faults_kept = _loop("keep")
    assert kept == "True"
    _, faults_default = _loop("default")
    # By default each 1 MiB buffer faults in its 256 pages again; kept, they are reused.
    assert faults_default > 200 * 100
    assert faults_kept < faults_default / 10


def test_an_operators_malloc_settings_are_kept():
    kept, faults = _loop("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert kept == "False"
    assert faults > 200 * 100          # the operator's (here: glibc's default) behaviour


def test_the_embedded_workers_start_with_the_workers_thresholds(server):
    from medcompute.server.dispatch.allocator import WORKER_MMAP_THRESHOLD, WORKER_TRIM_THRESHOLD

    async def environ():
        return await server.running.dispatcher.client.run(
            lambda: (os.environ.get("MALLOC_MMAP_THRESHOLD_"),
                     os.environ.get("MALLOC_TRIM_THRESHOLD_")))

    found = set(server.call(environ()).values())
    assert found == {(str(WORKER_MMAP_THRESHOLD), str(WORKER_TRIM_THRESHOLD))}


def test_no_worker_settings_where_the_operator_set_their_own():
    show = ("from medcompute.server.dispatch.allocator import worker_settings; "
            "print(worker_settings())")

    def settings(**env):
        return subprocess.run([sys.executable, "-c", show], capture_output=True, text=True,
                              check=True, env=_environ(**env), timeout=60).stdout.strip()

    assert "MALLOC_MMAP_THRESHOLD_" in settings()
    assert settings(MALLOC_MMAP_THRESHOLD_="1048576") == "{}"


def test_the_server_processes_started_later_keep_the_first_ones_answer():
    # What a nanny leaves in the environment is not the operator's: a process started from
    # the server after its cluster (an extra front end) still keeps large buffers.
    child = "from medcompute.server.dispatch.allocator import keep_large_buffers as k; print(k())"
    parent = ("import os, subprocess, sys\n"
              "import medcompute.server.dispatch.allocator\n"
              "os.environ['MALLOC_TRIM_THRESHOLD_'] = '65536'    # as a nanny leaves it\n"
              f"subprocess.run([sys.executable, '-c', {child!r}], check=True)\n")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True,
                         check=True, env=_environ(), timeout=60)
    assert out.stdout.strip() == "True", out.stderr

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
from medcompute.server.allocator import keep_large_buffers
kept = keep_large_buffers() if sys.argv[1] == "keep" else None
payload = os.urandom(1 << 20)
wire.chunk_message(processing_pb2.ProcessResponse, payload).SerializeToString()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    wire.chunk_message(processing_pb2.ProcessResponse, payload).SerializeToString()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _loop(mode: str, **env) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", LOOP, mode], capture_output=True, text=True,
                         check=True, env={**environ, **env}, timeout=60).stdout.split()
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

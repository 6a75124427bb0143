"""`medcompute serve --scheduler` on a cluster started with the standard `dask scheduler` and
`dask worker` commands, and the health service following that cluster's state."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from medcompute.client import Client
from medcompute.server.config import ServerConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DASK = str(Path(sys.executable).parent / "dask")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name, *args, env=None):
        log = open(self.log_dir / f"{name}.log", "ab")
        self.running[name] = subprocess.Popen(
            [DASK, *args], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
        log.close()

    def kill(self, name):
        proc = self.running.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self):
        for name in list(self.running):
            self.kill(name)


def _wait_for(address, wanted, timeout=90):
    """Follow the health service's Watch stream until it reports ``wanted``."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="medcompute.v1.ProcessingService")
        for reply in stub.Watch(request, timeout=timeout):
            if reply.status == wanted:
                return


def _wait_for_workers(scheduler: str, n: int, timeout: float = 120) -> None:
    """Until the scheduler has ``n`` workers (asked of the scheduler itself: the server's
    health is SERVING as soon as one worker is alive)."""
    from distributed import Client as DaskClient

    with DaskClient(scheduler, timeout=timeout, set_as_default=False) as dask_client:
        dask_client.wait_for_workers(n, timeout=timeout)


def test_external_cluster_and_health(tmp_path, server_thread):
    port = _free_port()
    scheduler = f"tcp://127.0.0.1:{port}"
    procs = Processes(tmp_path)
    sched_args = ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    worker_args = ["worker", scheduler, "--nthreads", "1", "--no-dashboard", "--host",
                   "127.0.0.1"]
    gpu_args = [*worker_args, "--resources", "GPU=1", "--name", "fake-gpu"]
    fake = {"MEDCOMPUTE_GPU_BACKEND": "fake"}
    try:
        procs.start("scheduler", *sched_args)
        procs.start("worker", *worker_args)
        procs.start("gpu-worker", *gpu_args, env=fake)
        config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path / "data",
                              scheduler=scheduler)
        with server_thread(config) as server:
            _wait_for(server.address, SERVING)      # one live worker is enough for that
            _wait_for_workers(scheduler, 2)          # the GPU worker too, for device="gpu"
            with Client(server.address, timeout=120) as c:
                image = np.arange(64, dtype=np.float32).reshape(8, 8)
                cpu = c.process(image, ["gaussian:sigma=1"], device="cpu")
                gpu = c.process(image, ["gaussian:sigma=1"], device="gpu")
            assert cpu.header.backend == "numpy" and gpu.header.backend == "fake-gpu"
            assert cpu.header.worker != gpu.header.worker

            # No worker alive: NOT_SERVING; a worker back: SERVING.
            procs.kill("worker")
            procs.kill("gpu-worker")
            _wait_for(server.address, NOT_SERVING)
            procs.start("worker", *worker_args)
            _wait_for(server.address, SERVING)

            # The scheduler gone: NOT_SERVING; back on its address: SERVING, and working.
            procs.kill("scheduler")
            _wait_for(server.address, NOT_SERVING)
            procs.kill("worker")
            procs.start("scheduler", *sched_args)
            procs.start("worker", *worker_args)
            _wait_for(server.address, SERVING)
            with Client(server.address, timeout=120) as c:
                again = c.process(image, ["gaussian:sigma=1"], device="cpu")
            np.testing.assert_array_equal(again.array, cpu.array)
    finally:
        procs.stop_all()

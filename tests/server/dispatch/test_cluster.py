"""Worker specs of the embedded cluster: GPU workers pinned and declaring GPU=1; a
worker whose process dies is started again by its nanny, whatever the cluster's timers."""

import os
import subprocess
import sys

import pytest

from medcompute.server.dispatch.cluster import GpuInfo, detect_gpus, worker_specs
from medcompute.server.worker import fakegpu


def test_cpu_and_gpu_worker_specs():
    gpus = [GpuInfo(0, "A", 1 << 34), GpuInfo(3, "B", 1 << 34)]
    specs = worker_specs(cpu_workers=2, gpus=gpus, memory_limit="2GiB")
    assert sorted(specs) == ["cpu-0", "cpu-1", "gpu-0", "gpu-3"]
    for name in ("cpu-0", "cpu-1"):
        options = specs[name]["options"]
        assert "resources" not in options and "env" not in options
        assert options["host"] == "127.0.0.1" and options["memory_limit"] == "2GiB"
    gpu3 = specs["gpu-3"]["options"]
    assert gpu3["resources"] == {"GPU": 1}
    assert gpu3["env"]["CUDA_VISIBLE_DEVICES"] == "3"
    assert gpu3["env"]["MEDCOMPUTE_GPU_BACKEND"] == "cupy"
    assert all(s["options"]["nthreads"] == 1 for s in specs.values())


def test_fake_gpu_workers_are_named_as_such():
    specs = worker_specs(cpu_workers=1, gpus=[], fake_gpu_workers=1, fake_gpu_memory=123,
                         fake_gpu_control="/tmp/ctl.json")
    fake = specs["fake-gpu-0"]["options"]
    assert fake["resources"] == {"GPU": 1}
    assert fake["env"] == {"MEDCOMPUTE_GPU_BACKEND": "fake", fakegpu.MEMORY_ENV: "123",
                           fakegpu.CONTROL_ENV: "/tmp/ctl.json"}


def test_detect_gpus_returns_a_list_here_or_anywhere():
    gpus = detect_gpus()
    assert all(isinstance(g, GpuInfo) and g.memory > 0 for g in gpus)


def test_gpu_workers_name_their_device_by_uuid_in_bus_order_and_keep_their_kernels():
    gpus = [GpuInfo(0, "A", 1 << 34, "MIG-4f1c"), GpuInfo(1, "B", 1 << 34)]
    specs = worker_specs(cpu_workers=1, gpus=gpus, kernel_cache="/data/kernel-cache/cupy")
    mig, plain = specs["gpu-0"]["options"]["env"], specs["gpu-1"]["options"]["env"]
    assert mig["CUDA_VISIBLE_DEVICES"] == "MIG-4f1c"      # a MIG slice is reachable
    assert plain["CUDA_VISIBLE_DEVICES"] == "1"
    assert mig["CUDA_DEVICE_ORDER"] == plain["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert mig["CUPY_CACHE_DIR"] == "/data/kernel-cache/cupy"
    assert "env" not in specs["cpu-0"]["options"]


_RESTARTED = """
import asyncio, os, signal, sys, time
from distributed import Client
from distributed.deploy.spec import SpecCluster
from medcompute.server.dispatch import cluster as embedded

async def main():
    if sys.argv[1] == "stock":       # what the server would do without its own class
        embedded._nanny_keeping = lambda spec_cluster: spec_cluster
    cluster = await embedded.start_embedded(cpu_workers=1, gpu_workers=0)
    async with Client(cluster, asynchronous=True) as client:
        [(address, pid)] = (await client.run(os.getpid)).items()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60          # a generous bound for a slow start
        while time.monotonic() < deadline:
            workers = (await client.scheduler.identity())["workers"]
            if any(w["name"] == "cpu-0" and a != address for a, w in workers.items()):
                print("back")
                break
            if "cpu-0" not in cluster.workers:     # its nanny closed: it never comes back
                print("lost")
                break
            await asyncio.sleep(0.2)
        else:
            print("neither")
    await cluster.close()

asyncio.run(main())
"""


@pytest.mark.parametrize(("cluster_class", "expected"), [("ours", "back"), ("stock", "lost")])
def test_a_killed_worker_comes_back_even_when_the_lost_worker_timer_fires_first(
        cluster_class, expected):
    # SpecCluster closes a removed worker's nanny when no worker of its name is known
    # lost-worker-timeout after the removal; at 0 s its timer always fires before the
    # nanny's new process registers (the race a worker restarted twice in a row meets).
    env = {**os.environ, "DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT": "0s"}
    done = subprocess.run([sys.executable, "-c", _RESTARTED, cluster_class], env=env,
                          capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1:] == [expected], done.stderr[-2000:]

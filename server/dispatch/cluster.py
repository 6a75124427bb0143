"""The embedded Dask cluster: CPU worker processes and one worker per GPU.

GPU workers are pinned to their device with ``CUDA_VISIBLE_DEVICES`` (the device's
UUID where NVML gives it, which also names a MIG slice; else its index, with
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that CUDA numbers devices as NVML does) and declare
the Dask resource ``GPU=1``; tasks that need a GPU ask for it. Their compiled kernels
are kept under the data directory (``CUPY_CACHE_DIR``). Everything listens on loopback
only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from medcompute.server.dispatch.allocator import worker_settings
from medcompute.server.worker import interrupts
from medcompute.server.worker.kernel_cache import CACHE_ENV

__all__ = ["GpuInfo", "detect_gpus", "worker_specs", "start_embedded"]

log = logging.getLogger(__name__)

GPU_BACKEND_ENV = "MEDCOMPUTE_GPU_BACKEND"

#: Dask's own monitoring, sampled less often than its defaults (psutil every 500 ms in the
#: scheduler and in every worker, each nanny's memory every 100 ms, host disk counters,
#: the event loops' health every 20 ms, the workers' statistical profiler every 10 ms): on
#: a 2-core machine, idle, that sampling took a fifth of a core across the server and its
#: workers. The nanny still checks its worker's memory five times a second, and the
#: dashboard's profiles still fill, more coarsely.
QUIET_MONITORING = {
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.system-monitor.disk": False,
    "distributed.admin.tick.interval": "100ms",
    "distributed.worker.memory.monitor-interval": "200ms",
    "distributed.worker.profile.interval": "100ms",
    "distributed.worker.profile.cycle": "10s",
}


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory: int
    uuid: str = ""      # "GPU-..." or "MIG-..." as NVML gives it; "" when it does not

    @property
    def visible(self) -> str:
        """This device as ``CUDA_VISIBLE_DEVICES`` names it."""
        return self.uuid or str(self.index)


def detect_gpus() -> list[GpuInfo]:
    """GPUs that NVML reports and CuPy can use; empty without either."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        log.info("no GPU: NVML is not available (%s)", exc)
        return []
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            try:
                uuid = pynvml.nvmlDeviceGetUUID(handle)
                uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
            except pynvml.NVMLError:
                uuid = ""
            gpus.append(GpuInfo(i, name.decode() if isinstance(name, bytes) else name, memory,
                                uuid))
    finally:
        pynvml.nvmlShutdown()
    if gpus:
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CuPy missing or unable to use the driver
            log.warning("NVML reports %d GPU(s) but CuPy cannot use them (%s); "
                        "install the 'gpu' extra to use them", len(gpus), exc)
            return []
    return gpus


def worker_specs(*, cpu_workers: int, gpus: list[GpuInfo], fake_gpu_workers: int = 0,
                 fake_gpu_memory: int | None = None, fake_gpu_control: str | None = None,
                 memory_limit: str | int = "auto", kernel_cache: str | None = None) -> dict:
    """SpecCluster worker specs: ``cpu-N`` plain workers, ``gpu-N`` workers with ``GPU=1``
    (``kernel_cache``: the folder GPU workers keep their compiled kernels in)."""
    from distributed import Nanny

    from medcompute.server.worker import fakegpu

    base = {"nthreads": 1, "host": "127.0.0.1", "memory_limit": memory_limit,
            "dashboard_address": None}
    specs = {f"cpu-{i}": {"cls": Nanny, "options": {**base, "name": f"cpu-{i}"}}
             for i in range(cpu_workers)}
    for gpu in gpus:
        env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": gpu.visible,
               GPU_BACKEND_ENV: "cupy"}
        if kernel_cache:
            env[CACHE_ENV] = kernel_cache
        specs[f"gpu-{gpu.index}"] = {"cls": Nanny, "options": {
            **base, "name": f"gpu-{gpu.index}", "resources": {"GPU": 1}, "env": env}}
    for i in range(fake_gpu_workers):
        env = {GPU_BACKEND_ENV: "fake"}
        if fake_gpu_memory is not None:
            env[fakegpu.MEMORY_ENV] = str(fake_gpu_memory)
        if fake_gpu_control is not None:
            env[fakegpu.CONTROL_ENV] = fake_gpu_control
        specs[f"fake-gpu-{i}"] = {"cls": Nanny, "options": {
            **base, "name": f"fake-gpu-{i}", "resources": {"GPU": 1}, "env": env}}
    return specs


def _nanny_keeping(spec_cluster):
    """``SpecCluster`` without its closing of a lost worker's nanny.

    When the scheduler removes a worker, SpecCluster waits ``lost-worker-timeout`` (15 s)
    and then closes that worker's nanny for good unless a worker of the same name is
    known by then. Here every worker has a nanny that starts a new process when its
    worker exits (a crash, a broken GPU context, a cancelled kernel): a worker restarted
    twice within those seconds, its new process not yet known when the first timer fires,
    lost its nanny, and the cluster lost that worker for as long as the server ran."""
    from distributed.deploy.cluster import Cluster

    class NannyKeepingCluster(spec_cluster):
        def _update_worker_status(self, op, msg):
            Cluster._update_worker_status(self, op, msg)

    return NannyKeepingCluster


async def start_embedded(*, cpu_workers: int | None, gpu_workers: int | None,
                         fake_gpu_workers: int = 0, fake_gpu_memory: int | None = None,
                         fake_gpu_control: str | None = None,
                         memory_limit: str | int = "auto", kernel_cache: str | None = None):
    """Start a SpecCluster on loopback; return it (already running)."""
    import dask
    from distributed import Scheduler, SpecCluster

    dask.config.set({**QUIET_MONITORING, **worker_settings()})
    preload = list(dask.config.get("distributed.worker.preload", default=None) or [])
    if interrupts.PRELOAD not in preload:     # Ctrl-C is the server's to act on
        dask.config.set({"distributed.worker.preload": [*preload, interrupts.PRELOAD]})
    gpus = detect_gpus()
    if gpu_workers is not None:
        gpus = gpus[:gpu_workers]
    if cpu_workers is None:
        cpu_workers = max(1, (os.cpu_count() or 1) - len(gpus))
    specs = worker_specs(cpu_workers=cpu_workers, gpus=gpus, fake_gpu_workers=fake_gpu_workers,
                         fake_gpu_memory=fake_gpu_memory, fake_gpu_control=fake_gpu_control,
                         memory_limit=memory_limit, kernel_cache=kernel_cache)
    if kernel_cache and gpus:
        os.makedirs(kernel_cache, exist_ok=True)
    scheduler = {"cls": Scheduler, "options": {
        "host": "127.0.0.1", "port": 0, "dashboard_address": "127.0.0.1:0"}}
    cluster = await _nanny_keeping(SpecCluster)(
        workers=specs, scheduler=scheduler, asynchronous=True, silence_logs=logging.WARNING,
        name="medcompute")
    log.info("started a Dask cluster at %s: %d CPU worker(s), %d GPU worker(s)%s",
             cluster.scheduler_address, cpu_workers, len(gpus),
             f", {fake_gpu_workers} FakeGPU test worker(s)" if fake_gpu_workers else "")
    return cluster

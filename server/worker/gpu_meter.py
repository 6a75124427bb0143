"""What a GPU worker measures of its device: the free memory placement compares jobs
against (:func:`free_memory`), and a job's energy, from NVML's total-energy counter,
only where it is the job's (:class:`GpuMeter`).

The counter is the whole device's: idle power and every other process on the GPU are
in it, and it moves about every 10 ms. So a job is given the counter's difference only
when it had the device alone (no other process used it during the job) and ran long
enough for the counter to mean something (:data:`MIN_SECONDS`); otherwise its energy
is absent, and :attr:`GpuMeter.absent` says why. NVML is initialised once per worker
process, and the device's handle looked up once.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["MIN_SECONDS", "GpuMeter", "free_memory"]

#: Jobs shorter than this get no energy: the counter moves about every 10 ms.
MIN_SECONDS = 0.1

_lock = threading.Lock()
_handles: dict = {}


def free_memory() -> int:
    """Free device memory of this GPU worker, in bytes: the driver's free memory and what
    CuPy's pool holds unused (it is handed out again first); the FakeGPU's memory on a
    fake GPU worker."""
    if os.environ.get("MEDCOMPUTE_GPU_BACKEND") == "fake":
        from medcompute.server.worker.fakegpu import fake_memory

        return fake_memory()
    import cupy

    pool = cupy.get_default_memory_pool()
    return int(cupy.cuda.runtime.memGetInfo()[0]) + int(pool.free_bytes())


def _nvml():
    import pynvml

    return pynvml


def _handle(nvml, bus_id: str):
    """The device's NVML handle; NVML initialised on the first call in this process."""
    with _lock:
        key = (id(nvml), bus_id)
        if key not in _handles:
            nvml.nvmlInit()
            _handles[key] = nvml.nvmlDeviceGetHandleByPciBusId(bus_id)
        return _handles[key]


class GpuMeter:
    """Start at construction; :meth:`joules` at the job's end.

    ``bus_id``: the device's PCI bus id (None: not a CUDA device, no energy).
    ``nvml``: the NVML module (pynvml by default)."""

    def __init__(self, bus_id: str | None, *, nvml=None, pid: int | None = None):
        self.absent = ""
        self.handle = None
        self.pid = os.getpid() if pid is None else pid
        if bus_id is None:
            self.absent = "not measured: not a CUDA device"
            return
        try:
            self.nvml = nvml or _nvml()
            self.handle = _handle(self.nvml, bus_id)
            self.others = self._others()
            self.start_mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception as exc:  # no NVML, or a GPU without an energy counter
            self.handle = None
            self.absent = f"not measured: NVML has no energy counter here ({type(exc).__name__})"
        self.started = time.perf_counter()

    def _others(self) -> set[int]:
        processes = self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        return {p.pid for p in processes} - {self.pid}

    def joules(self) -> float | None:
        """The job's energy, or None (then :attr:`absent` says why)."""
        if self.handle is None:
            return None
        seconds = time.perf_counter() - self.started
        try:
            end_mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            others = self.others | self._others()
        except Exception as exc:
            self.absent = f"not measured: NVML failed ({type(exc).__name__})"
            return None
        if others:
            self.absent = (f"not attributed: {len(others)} other process(es) used the GPU "
                           "during the job")
            return None
        if seconds < MIN_SECONDS:
            self.absent = (f"not attributed: the job ran {seconds * 1e3:.0f} ms, shorter "
                           f"than the {MIN_SECONDS * 1e3:.0f} ms the counter needs")
            return None
        return (end_mj - self.start_mj) / 1000.0

"""FakeGPU: a test double of a GPU backend, NumPy underneath.

A worker that declares the Dask resource ``GPU=1`` but has no GPU can run this
backend instead of CuPy, so GPU routing, fallback and metering are exercised on
machines without one. It is never chosen unless the cluster is built with fake
GPU workers (``ServerConfig.fake_gpu_workers``); results report the backend
``fake-gpu`` and the device ``FakeGPU (NumPy test double)``.

Its behaviour is read, at task time, from a JSON control file named by the
worker's ``MEDCOMPUTE_FAKE_GPU_CONTROL`` environment variable, so a test can
change it while the cluster runs and it survives a worker restart::

    {"fail": "oom"}      # every upload to the device raises an out-of-memory error
    {"fail": "driver"}   # ... raises a driver error
    {"fail": "crash"}    # ... kills the worker process (os._exit)
    {"fail": null}       # works
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from medcompute.kernels import Backend, cpu_backend

__all__ = ["FakeGPUBackend", "FakeGPUError", "FakeGPUOutOfMemory", "FakeGPUDriverError",
           "fake_gpu_backend", "CONTROL_ENV", "MEMORY_ENV", "DEVICE_NAME", "fake_memory"]

CONTROL_ENV = "MEDCOMPUTE_FAKE_GPU_CONTROL"
MEMORY_ENV = "MEDCOMPUTE_FAKE_GPU_MEMORY"
DEVICE_NAME = "FakeGPU (NumPy test double)"
DEFAULT_MEMORY = 1 << 30


class FakeGPUError(RuntimeError):
    """A failure of the fake device (stands in for CuPy's CUDA errors)."""


class FakeGPUOutOfMemory(FakeGPUError, MemoryError):
    pass


class FakeGPUDriverError(FakeGPUError):
    pass


def _control() -> dict:
    path = os.environ.get(CONTROL_ENV)
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def fake_memory() -> int:
    """The fake device's memory in bytes (what placement compares a job against)."""
    return int(os.environ.get(MEMORY_ENV, DEFAULT_MEMORY))


@dataclass(frozen=True)
class FakeGPUBackend(Backend):
    def asarray(self, host_array: Any) -> Any:
        fail = _control().get("fail")
        if fail == "oom":
            nbytes = getattr(host_array, "nbytes", 0)
            raise FakeGPUOutOfMemory(f"out of memory allocating {nbytes} bytes on {self.device}")
        if fail == "driver":
            raise FakeGPUDriverError(f"driver error on {self.device}: device lost")
        if fail == "crash":
            os._exit(70)
        return super().asarray(host_array)


def fake_gpu_backend() -> FakeGPUBackend:
    cpu = cpu_backend()
    return FakeGPUBackend(name="fake-gpu", xp=cpu.xp, ndimage=cpu.ndimage, fft=cpu.fft,
                          device=DEVICE_NAME)

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
    {"fail": "crash_in_kernel"}  # uploads work; the first kernel kills the worker process
    {"fail": "after_upload"}  # uploads work; the first kernel raises a driver error
    {"fail": "sticky"}   # the first kernel breaks the context: every later device call
                         # in this worker process fails too, until the process restarts
    {"fail": null}       # works
    {"compile_delay": 2.0}  # each new kernel configuration sleeps this long on first use
    {"fail": ..., "fail_warm_up": true}  # the failure hits the worker's kernel warm-up
                                         # too (else only jobs: a test's failure must not
                                         # break a worker restarted meanwhile)

Like CuPy, the fake "compiles" a kernel the first time a configuration is used in a
process: the configuration is the ndimage function, the input's dtype and every
parameter except the weights' values (their shape counts), so ``cval`` and the
window's radius make new kernels and the values of a Gaussian's weights do not. With
``compile_delay`` that first use sleeps, so tests see compile time apart from kernel
time. Uploads larger than the fake's device memory (``MEDCOMPUTE_FAKE_GPU_MEMORY``)
raise its out-of-memory error, as a volume larger than a GPU's memory does.

Its streams are the CPU's stand-in (kernels/streams.py: a download runs when its event
is waited for), and it records, in this process, the order in which the slab loop
queued uploads and downloads and waited for them (:func:`stream_events`), so that tests
check the overlap the loop would give on a device.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from medcompute.kernels import Backend, cpu_backend, register_backend

__all__ = ["FakeGPUBackend", "FakeGPUError", "FakeGPUOutOfMemory", "FakeGPUDriverError",
           "FakeGPUContextError", "fake_gpu_backend", "CONTROL_ENV", "MEMORY_ENV",
           "DEVICE_NAME", "fake_memory", "compiled", "restart", "FakeDeviceArray",
           "stream_events"]

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


class FakeGPUContextError(FakeGPUDriverError):
    """A sticky error: the process's device context is unusable until it restarts (as
    CUDA's illegal-address and launch-failure errors)."""


#: Set once a sticky error happened in this process; cleared only by a new process.
_broken: list[str] = []
#: Kernel configurations "compiled" in this process (CuPy's in-memory kernel cache).
_compiled: set = set()
#: The stream work queued and done in this process, in order: ("upload", n) when the
#: n-th upload was queued, ("download", n) when the n-th download was queued,
#: ("downloaded", n) when it was done (its event waited for).
_events: list[tuple[str, int]] = []


def stream_events() -> list[tuple[str, int]]:
    """The stream work of this process so far (see ``_events``)."""
    return list(_events)


def _control() -> dict:
    path = os.environ.get(CONTROL_ENV)
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        control = json.load(f)
    from medcompute.server.worker.kernel_cache import warming

    if warming() and not control.get("fail_warm_up"):
        control.pop("fail", None)
    return control


def fake_memory() -> int:
    """The fake device's memory in bytes (what placement compares a job against)."""
    return int(os.environ.get(MEMORY_ENV, DEFAULT_MEMORY))


class FakeDeviceArray(np.ndarray):
    """An array "on" the fake device: NumPy's, but kernels given one run on the fake's
    backend (its ndimage, with its failures and compile delay), as a CuPy array selects
    CuPy's."""


def _on_device(value):
    return value.view(FakeDeviceArray) if isinstance(value, np.ndarray) else value


def compiled() -> int:
    """Kernel configurations compiled in this process so far."""
    return len(_compiled)


def restart() -> None:
    """What a new worker process starts with: a working context, no compiled kernel
    (for tests that run the fake in their own process)."""
    _broken.clear()
    _compiled.clear()
    _events.clear()


def _check_context() -> None:
    if _broken:
        raise FakeGPUContextError(f"{DEVICE_NAME}: {_broken[0]} (sticky: the context is "
                                  "unusable until the process restarts)")


def _config(name: str, args: tuple, kwargs: dict) -> tuple:
    """What a CuPy kernel's source depends on: arrays by dtype and shape of the
    parameters (the input's shape does not count), everything else by value."""
    def part(value):
        if isinstance(value, np.ndarray):
            return ("array", value.dtype.str, value.shape)
        if isinstance(value, (list, tuple)):
            return tuple(part(v) for v in value)
        return repr(value)

    image = args[0] if args else None
    dtype = image.dtype.str if isinstance(image, np.ndarray) else None
    return (name, dtype, tuple(part(a) for a in args[1:]),
            tuple(sorted((k, part(v)) for k, v in kwargs.items() if k != "output")))


class _FakeNdimage:
    """``scipy.ndimage`` behind the fake device's failures and compile delay."""

    def __init__(self, ndimage):
        self._ndimage = ndimage

    def __getattr__(self, name):
        fn = getattr(self._ndimage, name)
        if not callable(fn):
            return fn

        def on_device(*args, **kwargs):
            _check_context()
            control = _control()
            fail = control.get("fail")
            if fail == "crash_in_kernel":
                os._exit(70)
            if fail == "after_upload":
                raise FakeGPUDriverError(f"{DEVICE_NAME}: kernel launch failed ({name})")
            if fail == "sticky":
                _broken.append(f"illegal memory access in {name}")
                _check_context()
            key = _config(name, args, kwargs)
            if key not in _compiled:
                time.sleep(float(control.get("compile_delay") or 0.0))
                _compiled.add(key)
            return _on_device(fn(*args, **kwargs))
        return on_device


@dataclass(frozen=True)
class FakeGPUBackend(Backend):
    def asarray(self, host_array: Any) -> Any:
        _check_context()
        fail = _control().get("fail")
        nbytes = getattr(host_array, "nbytes", 0)
        if fail == "oom" or nbytes > fake_memory():
            raise FakeGPUOutOfMemory(f"out of memory allocating {nbytes} bytes on {self.device}")
        if fail == "driver":
            raise FakeGPUDriverError(f"driver error on {self.device}: device lost")
        if fail == "crash":
            os._exit(70)
        return _on_device(np.array(host_array))

    def to_host(self, array: Any) -> np.ndarray:
        _check_context()
        return np.asarray(array)

    def upload(self, host_array: Any, stream: Any) -> Any:
        device = super().upload(host_array, stream)     # asarray: the fake's failures
        _events.append(("upload", sum(1 for e in _events if e[0] == "upload")))
        return device

    def download(self, array: Any, stream: Any, out: np.ndarray) -> None:
        _check_context()
        n = sum(1 for e in _events if e[0] == "download")
        _events.append(("download", n))

        def copy() -> None:
            np.copyto(out, self.to_host(array))
            _events.append(("downloaded", n))
        stream.defer(copy)


@functools.cache
def fake_gpu_backend() -> FakeGPUBackend:
    cpu = cpu_backend()
    return FakeGPUBackend(name="fake-gpu", xp=cpu.xp, ndimage=_FakeNdimage(cpu.ndimage),
                          fft=cpu.fft, device=DEVICE_NAME,
                          device_errors=(FakeGPUError,), context_errors=(FakeGPUContextError,))


register_backend(FakeDeviceArray, lambda array: fake_gpu_backend())

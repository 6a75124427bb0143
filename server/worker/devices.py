"""Which device a task runs on, and how its failures and energy are told: the backend
for a task's ``device`` (CuPy, or the FakeGPU on a fake GPU worker), a device failure
classified by its type as a :class:`GpuFailure` (the dispatcher re-runs the job on CPU),
the job's energy meter, and the address of the worker a task runs on."""

from __future__ import annotations

import os

__all__ = ["GpuFailure", "device_backend", "gpu_failure", "meter", "worker_address"]


def worker_address() -> str:
    """The address of the Dask worker running this task (``local:<pid>`` outside one)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:  # not inside a Dask worker (called directly, e.g. in a test)
        return f"local:{os.getpid()}"


class GpuFailure(Exception):
    """The GPU could not run the task (out of memory, driver or kernel error); the
    dispatcher re-runs it on a CPU worker. ``restart``: the worker's device context is
    broken for good (a sticky CUDA error), so the dispatcher restarts that worker too.
    Carries only text and a flag, so it unpickles anywhere."""

    def __init__(self, reason: str, restart: bool = False, worker: str = ""):
        self.reason = reason
        self.restart = restart
        self.worker = worker
        super().__init__(reason)

    def __reduce__(self):
        return (type(self), (self.reason, self.restart, self.worker))


def gpu_failure(exc: BaseException, backend) -> GpuFailure | None:
    """``exc`` as a :class:`GpuFailure` when the backend classifies its type as a device
    failure (never by the module it was raised in); None when it is not one."""
    from medcompute.kernels import BackendUnavailable

    if not (isinstance(exc, BackendUnavailable) or backend.is_device_error(exc)):
        return None
    restart = backend.is_context_error(exc)
    return GpuFailure(f"{type(exc).__name__} on {backend.device}: {exc}"
                      + ("; the worker's device context is broken: it is restarted"
                         if restart else ""), restart, worker_address())


def device_backend(device: str):
    """The backend of a task's ``device``: NumPy for "cpu"; for "gpu", the FakeGPU on a
    fake GPU worker, else CuPy on the worker's one visible GPU."""
    from medcompute import kernels

    if device != "gpu":
        return kernels.cpu_backend()
    # Read at task time, set per worker process by the cluster (cluster.py).
    if os.environ.get("MEDCOMPUTE_GPU_BACKEND") == "fake":
        from medcompute.server.worker.fakegpu import fake_gpu_backend

        return fake_gpu_backend()
    return kernels.gpu_backend(0)  # the worker is pinned to its GPU by CUDA_VISIBLE_DEVICES


def meter(backend):
    """The energy meter of a job on ``backend`` (gpu_meter.py)."""
    from medcompute.server.worker.gpu_meter import GpuMeter

    bus_id = None
    if backend.name == "cupy":   # CuPy backend: the device NVML reads the counter of
        bus_id = backend.xp.cuda.Device(backend.index or 0).pci_bus_id
    return GpuMeter(bus_id)

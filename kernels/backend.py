"""The one seam between the kernels and the array library that runs them.

A :class:`Backend` bundles the array namespace (``numpy`` or ``cupy``), the
matching ``ndimage`` and ``fft`` modules and the device name. Every kernel
starts with ``backend_for(image)`` and then uses only ``backend.xp``,
``backend.ndimage`` and ``backend.fft``, so the same code runs on the CPU and
on a GPU. CuPy is imported lazily, inside :func:`gpu_backend`, and only when a
CuPy array or an explicit GPU request asks for it.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "STICKY_CUDA_ERRORS",
    "Backend",
    "BackendUnavailable",
    "backend_for",
    "cpu_backend",
    "gpu_backend",
    "register_backend",
]


class BackendUnavailable(RuntimeError):
    """Raised when a requested backend cannot run here (no CuPy, no CUDA device)."""


#: CUDA error codes (the runtime's and the driver's share them) after which the
#: process's context is unusable: every later call fails the same way until the process
#: restarts. 700 illegal address, 702 launch timeout, 714 hardware stack error, 715
#: illegal instruction, 716 misaligned address, 717 invalid address space, 718 invalid
#: program counter, 719 launch failure.
STICKY_CUDA_ERRORS = frozenset({700, 702, 714, 715, 716, 717, 718, 719})

#: CuPy's exception classes for device failures, by module and name (looked up lazily:
#: CuPy moves some between releases, and it is not installed everywhere).
CUPY_ERROR_CLASSES = (
    ("cupy.cuda.runtime", "CUDARuntimeError"),
    ("cupy.cuda.driver", "CUDADriverError"),
    ("cupy.cuda.memory", "OutOfMemoryError"),
    ("cupy_backends.cuda.api.runtime", "CUDARuntimeError"),
    ("cupy_backends.cuda.api.driver", "CUDADriverError"),
    ("cupy.cuda.compiler", "CompileException"),
    ("cupy_backends.cuda.libs.nvrtc", "NVRTCError"),
    ("cupy.cuda.cufft", "CuFFTError"),
)
#: Of those, the ones whose ``status`` may be one of :data:`STICKY_CUDA_ERRORS`.
CUPY_STATUS_CLASSES = (
    ("cupy.cuda.runtime", "CUDARuntimeError"),
    ("cupy.cuda.driver", "CUDADriverError"),
    ("cupy_backends.cuda.api.runtime", "CUDARuntimeError"),
    ("cupy_backends.cuda.api.driver", "CUDADriverError"),
)


def exception_classes(paths) -> tuple[type, ...]:
    """The exception classes named by ``(module, name)`` pairs that can be imported here
    (none without CuPy); each once."""
    import importlib

    found: list[type] = []
    for module, name in paths:
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


@dataclass(frozen=True)
class Backend:
    """Array namespace, ``ndimage``, ``fft`` and device that a kernel runs on.

    Parameters
    ----------
    name : str
        ``"numpy"`` or ``"cupy"``.
    xp : module
        The array namespace (``numpy`` or ``cupy``).
    ndimage : module
        ``scipy.ndimage`` or ``cupyx.scipy.ndimage``.
    fft : module
        ``scipy.fft`` or ``cupy.fft``.
    device : str
        ``"cpu"`` or the GPU's name as the driver reports it.
    index : int or None
        The GPU's ordinal as CUDA numbers it; None on the CPU.
    device_errors : tuple of type
        Exception classes that mean the device failed (out of memory, driver, runtime,
        compiler): the job can run again elsewhere. Classified by type, never by the
        module an exception comes from (a ``ValueError`` raised inside CuPy is the
        caller's). Empty on the CPU.
    context_errors : tuple of type
        Exception classes that always mean the device context is broken for good.
    status_errors : tuple of type
        Exception classes whose ``status`` in :data:`STICKY_CUDA_ERRORS` means the same.

    Examples
    --------
    >>> import numpy as np
    >>> backend = cpu_backend()
    >>> backend.name, backend.device
    ('numpy', 'cpu')
    >>> backend.to_host(backend.asarray([1, 2])).tolist()
    [1, 2]
    """

    name: str
    xp: ModuleType
    ndimage: ModuleType
    fft: ModuleType
    device: str
    index: int | None = None
    device_errors: tuple = ()
    context_errors: tuple = ()
    status_errors: tuple = ()

    def is_device_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a failure of the device rather than of the request."""
        return isinstance(exc, self.device_errors + self.context_errors)

    def is_context_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` left the device context unusable until the process restarts.

        Examples
        --------
        >>> class CUDARuntimeError(RuntimeError):
        ...     status = 700
        >>> b = Backend("x", np, np, np, "gpu", 0, (CUDARuntimeError,), (), (CUDARuntimeError,))
        >>> b.is_context_error(CUDARuntimeError()), b.is_context_error(ValueError())
        (True, False)
        """
        if isinstance(exc, self.context_errors):
            return True
        return isinstance(exc, self.status_errors) and \
            getattr(exc, "status", None) in STICKY_CUDA_ERRORS

    def asarray(self, host_array: Any) -> Any:
        """Move a host array onto this backend (a no-op for NumPy)."""
        if self.index is None:
            return self.xp.asarray(host_array)
        # CuPy backend: allocate on this backend's GPU, not the current one.
        with self.xp.cuda.Device(self.index):
            return self.xp.asarray(host_array)

    def to_host(self, array: Any) -> np.ndarray:
        """Return ``array`` as a NumPy array in host memory."""
        # CuPy backend: device arrays are copied back with xp.asnumpy.
        asnumpy = getattr(self.xp, "asnumpy", None)
        if asnumpy is None:
            return np.asarray(array)
        return asnumpy(array)

    def synchronize(self) -> None:
        """Wait for queued device work to finish (a no-op on the CPU)."""
        if self.index is None:
            return
        # CuPy backend: kernels are queued on a stream; wait for them (timing, hand-over).
        with self.xp.cuda.Device(self.index):
            self.xp.cuda.get_current_stream().synchronize()

    # -- streams: the seam of the double-buffered slab loop (streams.run_slabs) ---------
    def new_stream(self) -> Any:
        """A stream of its own: CuPy's non-blocking CUDA stream; on the CPU the stand-in
        :class:`~medcompute.kernels.streams.HostStream`."""
        if self.index is None:
            from .streams import HostStream

            return HostStream()
        with self.xp.cuda.Device(self.index):
            return self.xp.cuda.Stream(non_blocking=True)

    def on_stream(self, stream: Any):
        """A context in which kernels are queued on ``stream``."""
        if self.index is None:
            return contextlib.nullcontext()
        return stream               # CuPy: a stream is the current one inside ``with``

    def pinned_empty(self, shape, dtype) -> np.ndarray:
        """A host buffer copies can be queued from and into (page-locked on a GPU)."""
        if self.index is None:
            return np.empty(shape, dtype)
        import cupyx

        return cupyx.empty_pinned(shape, dtype)

    def upload(self, host_array: np.ndarray, stream: Any) -> Any:
        """``host_array`` (pinned) copied to the device, the copy queued on ``stream``."""
        if self.index is None:
            return self.asarray(host_array)
        with self.xp.cuda.Device(self.index):
            out = self.xp.empty(host_array.shape, host_array.dtype)
            out.set(host_array, stream=stream)
            return out

    def download(self, array: Any, stream: Any, out: np.ndarray) -> None:
        """Queue the copy of ``array`` into the host buffer ``out`` on ``stream``: it is
        there once an event recorded after it (:meth:`record`) was waited for."""
        if self.index is None:
            stream.defer(lambda: np.copyto(out, self.to_host(array)))
            return
        self.xp.asnumpy(array, stream=stream, out=out, blocking=False)

    def record(self, stream: Any) -> Any:
        """An event at this point of ``stream``."""
        return stream.record()

    def wait(self, event: Any) -> None:
        """Wait until the work queued before ``event`` is done."""
        event.synchronize()

    def elapsed(self, start: Any, end: Any) -> float:
        """Seconds between two events that were waited for (CUDA: measured on the
        device)."""
        if self.index is None:
            start.synchronize()
            end.synchronize()
            return max(0.0, end.at - start.at)
        return self.xp.cuda.get_elapsed_time(start, end) / 1000.0


@functools.cache
def cpu_backend() -> Backend:
    """Return the NumPy/SciPy backend.

    Returns
    -------
    Backend
        ``name="numpy"``, ``device="cpu"``; the same object on every call.

    Examples
    --------
    >>> cpu_backend().xp.__name__
    'numpy'
    """
    import scipy.fft
    import scipy.ndimage

    return Backend(name="numpy", xp=np, ndimage=scipy.ndimage, fft=scipy.fft, device="cpu")


def gpu_backend(device_id: int = 0) -> Backend:
    """Return the CuPy backend for one CUDA device.

    Parameters
    ----------
    device_id : int, optional
        CUDA ordinal of the GPU (after ``CUDA_VISIBLE_DEVICES``), default 0.

    Returns
    -------
    Backend
        ``name="cupy"``; ``device`` is the GPU's name.

    Raises
    ------
    BackendUnavailable
        CuPy is not installed, the CUDA driver cannot be queried, or there is
        no device with that ordinal.
    ValueError
        ``device_id`` is not an integer >= 0.

    Examples
    --------
    >>> try:
    ...     backend = gpu_backend()
    ... except BackendUnavailable:
    ...     backend = cpu_backend()
    >>> backend.name in ("numpy", "cupy")
    True
    """
    if (
        isinstance(device_id, bool)
        or not isinstance(device_id, numbers.Integral)
        or device_id < 0
    ):
        raise ValueError(f"device_id: must be an integer >= 0, got {device_id!r}")
    return _gpu_backend(int(device_id))


@functools.cache
def _gpu_backend(device_id: int) -> Backend:
    # Failures raise, and functools.cache does not keep raised calls, so a GPU
    # that appears later (driver loaded, device freed) is found on the next call.
    try:
        import cupy
        import cupy.fft
        import cupyx.scipy.ndimage
    except ImportError as exc:
        raise BackendUnavailable(
            "CuPy is not installed: install the 'gpu' extra (cupy-cuda12x) "
            f"to run kernels on a GPU ({exc})"
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if device_id >= count:
            raise BackendUnavailable(
                f"no CUDA device {device_id}: {count} device(s) visible to CuPy"
            )
        props = cupy.cuda.runtime.getDeviceProperties(device_id)
    except BackendUnavailable:
        raise
    except Exception as exc:  # any driver or runtime failure means "no GPU here"
        raise BackendUnavailable(f"CUDA is not usable: {exc}") from exc
    name = props["name"]
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return Backend(
        name="cupy",
        xp=cupy,
        ndimage=cupyx.scipy.ndimage,
        fft=cupy.fft,
        device=str(name),
        index=device_id,
        device_errors=exception_classes(CUPY_ERROR_CLASSES),
        status_errors=exception_classes(CUPY_STATUS_CLASSES),
    )


_REGISTRY: dict[type, Callable[[Any], Backend]] = {}


def register_backend(array_type: type, factory: Callable[[Any], Backend]) -> None:
    """Make :func:`backend_for` map arrays of ``array_type`` to ``factory(array)``.

    This is how an array type other than NumPy's and CuPy's (a test double of a
    device array, say) gets its own backend without changing any kernel.

    Parameters
    ----------
    array_type : type
        The array class; subclasses match too.
    factory : callable
        Called with the array, returns its :class:`Backend`.

    Returns
    -------
    None

    Examples
    --------
    >>> class Tagged(np.ndarray):
    ...     pass
    >>> register_backend(Tagged, lambda array: cpu_backend())
    >>> backend_for(np.zeros(2).view(Tagged)).name
    'numpy'
    """
    if not isinstance(array_type, type):
        raise TypeError(f"array_type: must be a class, got {array_type!r}")
    if not callable(factory):
        raise TypeError(f"factory: must be callable, got {factory!r}")
    _REGISTRY[array_type] = factory


def backend_for(array: Any) -> Backend:
    """Return the backend that owns ``array``.

    Parameters
    ----------
    array : array_like
        A ``cupy.ndarray`` selects the CuPy backend on the array's device;
        a registered array type selects its registered backend; anything else
        selects the NumPy backend.

    Returns
    -------
    Backend

    Examples
    --------
    >>> backend_for(np.zeros((2, 2))).name
    'numpy'
    """
    for array_type in type(array).__mro__:
        factory = _REGISTRY.get(array_type)
        if factory is not None:
            return factory(array)
    # CuPy backend: recognised by the array's module so that CuPy is never
    # imported for NumPy input.
    if type(array).__module__.split(".", 1)[0] == "cupy":
        return gpu_backend(int(array.device.id))
    return cpu_backend()

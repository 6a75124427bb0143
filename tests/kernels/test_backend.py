import subprocess
import sys

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage

from medcompute.kernels import (
    Backend,
    BackendUnavailable,
    backend_for,
    cpu_backend,
    gaussian,
    gpu_backend,
    register_backend,
)
from medcompute.kernels import backend as backend_module


def test_cpu_backend_fields():
    backend = cpu_backend()
    assert backend.name == "numpy"
    assert backend.xp is np
    assert backend.ndimage is scipy.ndimage
    assert backend.fft is scipy.fft
    assert backend.device == "cpu"
    assert backend.index is None
    assert cpu_backend() is backend


def test_cpu_backend_boundary_methods_are_plain():
    backend = cpu_backend()
    host = np.arange(6, dtype=np.int16).reshape(2, 3)
    assert backend.asarray(host) is host
    assert backend.to_host(host) is host
    assert backend.asarray([1, 2]).dtype.kind == "i"
    assert backend.synchronize() is None


def test_backend_is_frozen():
    with pytest.raises(AttributeError):
        cpu_backend().name = "other"


def test_backend_for_host_arrays():
    assert backend_for(np.zeros(3)) is cpu_backend()
    assert backend_for([1.0, 2.0]) is cpu_backend()
    assert backend_for(np.float32(1.0)) is cpu_backend()


def test_backend_for_the_xp_fixture(xp):
    backend = backend_for(xp.zeros((2, 2)))
    assert backend.xp is xp
    out = gaussian(xp.asarray(np.ones((4, 4), np.uint8)), 1.0)
    assert type(out) is type(xp.zeros(1))
    assert backend.to_host(out).shape == (4, 4)
    backend.synchronize()


@pytest.mark.gpu
def test_gpu_backend_when_a_gpu_is_present():
    try:
        backend = gpu_backend(0)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    assert backend.name == "cupy" and backend.index == 0 and backend.device
    device_array = backend.asarray(np.arange(3))
    assert backend_for(device_array) is backend
    np.testing.assert_array_equal(backend.to_host(device_array), [0, 1, 2])


def test_gpu_backend_without_cupy_raises_backend_unavailable(monkeypatch):
    backend_module._gpu_backend.cache_clear()
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(BackendUnavailable, match="CuPy is not installed"):
        gpu_backend()
    backend_module._gpu_backend.cache_clear()


def test_gpu_backend_device_id_is_checked():
    with pytest.raises(ValueError, match="^device_id: must be an integer >= 0, got -1"):
        gpu_backend(-1)
    with pytest.raises(ValueError, match="^device_id: must be an integer >= 0"):
        gpu_backend("0")


def test_backend_unavailable_is_a_runtime_error():
    assert issubclass(BackendUnavailable, RuntimeError)


class _TaggedArray(np.ndarray):
    pass


class _SubTaggedArray(_TaggedArray):
    pass


def test_register_backend_maps_an_array_type_and_its_subclasses():
    tagged = Backend("tagged", np, scipy.ndimage, scipy.fft, "tagged-device")
    register_backend(_TaggedArray, lambda array: tagged)
    assert backend_for(np.zeros(2).view(_TaggedArray)) is tagged
    assert backend_for(np.zeros(2).view(_SubTaggedArray)) is tagged
    assert backend_for(np.zeros(2)) is cpu_backend()
    with pytest.raises(TypeError, match="^array_type: must be a class"):
        register_backend("ndarray", lambda array: tagged)
    with pytest.raises(TypeError, match="^factory: must be callable"):
        register_backend(_TaggedArray, tagged)


def test_importing_the_package_does_not_import_cupy():
    code = (
        "import sys, medcompute.kernels as k; k.gaussian(__import__('numpy').ones((3, 3)), 1.0);"
        "sys.exit('cupy' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr.decode()


class CUDARuntimeError(RuntimeError):
    """Shaped as CuPy's: a ``status`` code."""

    def __init__(self, status):
        self.status = status
        super().__init__(f"cudaError {status}")


class OutOfMemoryError(MemoryError):
    pass


def _device_backend():
    from medcompute.kernels.backend import Backend

    cpu = cpu_backend()
    return Backend("cupy", cpu.xp, cpu.ndimage, cpu.fft, "GPU", 0,
                   device_errors=(CUDARuntimeError, OutOfMemoryError),
                   status_errors=(CUDARuntimeError,))


def test_device_errors_are_classified_by_type_not_by_module():
    backend = _device_backend()
    raised_in_cupy = type("ValueError", (ValueError,), {"__module__": "cupy._core"})
    assert backend.is_device_error(OutOfMemoryError("out of memory"))
    assert backend.is_device_error(CUDARuntimeError(2))
    assert not backend.is_device_error(raised_in_cupy("axis out of range"))  # the caller's
    assert not cpu_backend().is_device_error(OutOfMemoryError())


@pytest.mark.parametrize("status, sticky", [(700, True), (719, True), (2, False), (None, False)])
def test_a_sticky_cuda_status_means_a_broken_context(status, sticky):
    backend = _device_backend()
    assert backend.is_context_error(CUDARuntimeError(status)) is sticky
    assert not backend.is_context_error(OutOfMemoryError())


def test_cupy_error_classes_are_found_only_where_cupy_is():
    from medcompute.kernels.backend import CUPY_ERROR_CLASSES, exception_classes

    found = exception_classes(CUPY_ERROR_CLASSES + (("builtins", "MemoryError"),
                                                   ("builtins", "len"), ("no.such", "X")))
    assert MemoryError in found and len not in found
    assert all(issubclass(c, BaseException) for c in found)

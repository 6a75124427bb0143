"""What a Dask worker runs for a job: load ▶ kernels ▶ save.

The server spools each image it receives to a file in the data directory and
sends the worker only paths and resolved operations; the worker reads the
inputs, runs the kernels on its backend, and writes the result next to them.
Big arrays never pass through the scheduler. Compute time is measured here,
around the kernels, with the device synchronised before the clock is read.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from medcompute.proto import wire
from medcompute.server.errors import InvalidArgument

__all__ = ["InputSpec", "TaskSpec", "TaskResult", "run_task", "load_image", "versions"]


@dataclass(frozen=True)
class InputSpec:
    """An image spooled to ``path``: a raw array, or concatenated DICOM files."""

    path: str
    encoding: str                         # "raw" | "dicom"
    shape: tuple[int, ...]
    dtype: str
    file_sizes: tuple[int, ...] = ()
    offset: int = 0
    field: str = "header.input.inline"    # the request field, for error messages


@dataclass(frozen=True)
class TaskSpec:
    job_id: str
    inputs: tuple[InputSpec, ...]         # the image, then the operands
    ops: tuple                            # ResolvedOp values
    out_path: str
    compute_dtype: str = "float32"
    output_dtype: str = "float32"
    output_format: str = "raw"            # "raw" | "dicom_series" | "dicom_file"
    output_spacing: tuple[float, ...] | None = None
    description: str = ""
    device: str = "cpu"                   # "cpu" | "gpu"


@dataclass
class TaskResult:
    out_path: str
    shape: tuple[int, ...]
    dtype: str
    file_sizes: tuple[int, ...]
    nbytes: int
    started_at: float
    finished_at: float
    compute_seconds: float
    backend: str
    device: str
    worker: str
    crc32: int = 0
    versions: dict = field(default_factory=dict)
    gpu_seconds: float | None = None      # absent unless measured on a GPU
    energy_joules: float | None = None    # absent unless NVML reports it


@cache
def versions() -> dict[str, str]:
    """Library versions of this worker, for the result header."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("medcompute", "numpy", "scipy", "opencv-python-headless", "pydicom",
                 "dask", "distributed", "cupy-cuda12x"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _dicom_parts(spec: InputSpec) -> list[memoryview]:
    with open(spec.path, "rb") as f:
        f.seek(spec.offset)
        blob = memoryview(f.read(sum(spec.file_sizes)))
    parts, at = [], 0
    for size in spec.file_sizes:
        parts.append(blob[at:at + size])
        at += size
    return parts


def load_image(spec: InputSpec) -> np.ndarray:
    """The voxels of a spooled image, as a host array."""
    if spec.encoding == "dicom":
        from medcompute.server import dicom

        try:
            array, _ = dicom.decode(_dicom_parts(spec))
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, request_field(exc.field, spec.field)) from None
        return array
    count = int(np.prod(spec.shape))
    return np.fromfile(spec.path, dtype=np.dtype(spec.dtype), count=count,
                       offset=spec.offset).reshape(spec.shape)


def request_field(dicom_field: str | None, image_field: str) -> str:
    """Place a DICOM error's field ("input.dicom[2]") under the request's image field."""
    if not dicom_field:
        return image_field
    head, _, rest = dicom_field.partition(".")
    return f"{image_field}.{rest}" if head == "input" and rest else image_field


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:  # not inside a Dask worker (called directly, e.g. in a test)
        return f"local:{os.getpid()}"


def _backend(device: str):
    from medcompute import kernels

    return kernels.gpu_backend() if device == "gpu" else kernels.cpu_backend()


def run_pipeline(image, operands, ops, *, compute_dtype="float32"):
    """Apply resolved operations in order, on whatever backend the arrays live on."""
    from medcompute import kernels

    dtype = np.dtype(compute_dtype)
    x = image
    for i, op in enumerate(ops):
        fn = getattr(kernels, op.kernel)
        args = (operands[op.operand], *op.args) if op.operand is not None else op.args
        try:
            x = fn(x, *args, dtype=dtype, **op.kwargs)
        except ValueError as exc:
            # A parameter the resolver let through but the kernel refuses: still the caller's.
            raise InvalidArgument(str(exc), f"header.pipeline[{i}].{op.kernel}") from None
    return x


def _write(path: str, data) -> None:
    with open(path, "wb") as f:
        f.write(memoryview(data).cast("B") if not isinstance(data, bytes) else data)


def run_task(spec: TaskSpec) -> TaskResult:
    """Run one job on this worker and write its result to ``spec.out_path``."""
    from medcompute import kernels

    started_at = time.time()
    backend = _backend(spec.device)
    host = [load_image(s) for s in spec.inputs]

    t0 = time.perf_counter()
    arrays = [backend.asarray(a) for a in host]
    result = run_pipeline(arrays[0], arrays[1:], spec.ops, compute_dtype=spec.compute_dtype)
    result = kernels.saturating_cast(result, np.dtype(spec.output_dtype))
    backend.synchronize()
    compute_seconds = time.perf_counter() - t0
    out = np.ascontiguousarray(backend.to_host(result))

    if spec.output_format == "raw":
        _write(spec.out_path, out)
        file_sizes: tuple[int, ...] = ()
        nbytes = out.nbytes
        checksum = wire.crc32(out)
    else:
        from medcompute.server import dicom

        files = dicom.write_derived(
            _dicom_parts(spec.inputs[0]), out, spacing=spec.output_spacing,
            description=spec.description, single_file=spec.output_format == "dicom_file")
        checksum = 0
        with open(spec.out_path, "wb") as f:
            for blob in files:
                f.write(blob)
                checksum = wire.crc32(blob, checksum)
        file_sizes = tuple(len(b) for b in files)
        nbytes = sum(file_sizes)
    return TaskResult(
        out_path=spec.out_path, shape=tuple(out.shape), dtype=out.dtype.str,
        file_sizes=file_sizes, nbytes=nbytes, started_at=started_at, finished_at=time.time(),
        compute_seconds=compute_seconds, backend=backend.name, device=backend.device,
        worker=_worker_address(), crc32=checksum, versions=versions(),
    )


def warm_up() -> str:
    """Import what tasks need, so the first job does not pay for it."""
    import scipy.ndimage  # noqa: F401

    from medcompute import kernels  # noqa: F401
    from medcompute.server import dicom  # noqa: F401

    return str(os.getpid())

"""What a Dask worker runs for a job: load ▶ kernels ▶ save.

The server spools each image it receives to a file in the data directory and
sends the worker only paths and resolved operations; the worker reads the
inputs, runs the kernels on its backend, and writes the result next to them.
Big arrays never pass through the scheduler. Compute time is measured here,
around the kernels, with the device synchronised before the clock is read.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from functools import cache, wraps

import numpy as np

from medcompute.proto import wire
from medcompute.server.errors import FailedPrecondition, Internal, InvalidArgument, within
from medcompute.server.worker import cancel, kernel_cache, plugins
from medcompute.server.worker.devices import (
    GpuFailure,
    device_backend,
    gpu_failure,
    worker_address,
)
from medcompute.server.worker.devices import meter as energy_meter
from medcompute.server.worker.slabs import Region
from medcompute.server.worker.specs import (
    InputSpec,
    StackResult,
    StackSpec,
    TaskResult,
    TaskSpec,
)

__all__ = ["InputSpec", "TaskSpec", "TaskResult", "StackSpec", "StackResult", "GpuFailure",
           "TaskCancelled", "run_task", "run_batch", "run_stack", "job_ids", "materialize",
           "encode_dicom", "part_path", "load_image", "versions", "EVENT_TOPIC", "WorkerRunner",
           "warm_up_plugin", "warm_up"]

#: Dask event topic on which tasks announce that they started.
EVENT_TOPIC = "medcompute"

log = logging.getLogger(__name__)


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
    if spec.data is not None:
        blob = memoryview(spec.data)
    else:
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
    if spec.voxels:
        from medcompute.server.storage.blobs import read_voxels

        return read_voxels(spec.voxels)
    if spec.encoding == "dicom":
        from medcompute.server.dicom.read import decode

        try:
            array, _ = decode(_dicom_parts(spec))
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, request_field(exc.field, spec.field)) from None
        return array
    count = int(np.prod(spec.shape))
    if spec.shm:
        from medcompute.server.worker import shm

        return shm.read(spec.shm, spec.offset, spec.shape, spec.dtype)
    if spec.data is not None:
        return np.frombuffer(spec.data, dtype=np.dtype(spec.dtype),
                             count=count).reshape(spec.shape)
    return np.fromfile(spec.path, dtype=np.dtype(spec.dtype), count=count,
                       offset=spec.offset).reshape(spec.shape)


def request_field(dicom_field: str | None, image_field: str) -> str:
    """Place a DICOM error's field ("input.dicom[2]": the reader calls its image
    ``input``) under the request's image field."""
    if not dicom_field or not dicom_field.startswith("input."):
        return image_field
    return within(dicom_field, moves=(("input", image_field),))


class TaskCancelled(Exception):
    """The task noticed that its future was cancelled and stopped early."""


#: Jobs whose cancellation reached this worker through :meth:`WorkerRunner.cancel`
#: (direct calls have no Dask future to cancel); oldest forgotten first.
_CANCELLED_JOBS: dict[str, None] = {}
_CANCELLED_KEEP = 10_000
_running = threading.local()


def _cancelled() -> bool:
    """Whether this job was cancelled while it runs (checked between steps): its Dask
    future was cancelled, or, for a direct call, the server said so."""
    if getattr(_running, "job", None) in _CANCELLED_JOBS:
        return True
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        if getattr(thread_state, "actor", False):
            return False
        key = thread_state.key
        ts = get_worker().state.tasks.get(key)
    except (ValueError, AttributeError):  # not running as a Dask task
        return False
    return ts is None or ts.state in ("cancelled", "released", "forgotten")


class WorkerRunner:
    """A Dask actor on every CPU worker: the server calls it directly for small jobs,
    without a scheduler round trip per job (~10 ms for a task on a 2-core machine against
    ~1 ms for an actor call). A call runs in the worker's actor thread; :meth:`cancel`
    runs on the worker's event loop, so it reaches a job that is running."""

    def run_batch(self, specs: list, announce: bool = True) -> list:
        """``announce=False``: the caller, which chose this worker, says itself where the
        jobs went (no event through the scheduler)."""
        return run_batch(specs, announce=announce)

    async def cancel(self, job_ids: list[str]) -> None:
        """The jobs stop before their next operation; a job still inside a kernel
        ``cancel.CANCEL_GRACE`` seconds later has its worker process restarted (a kernel
        cannot be interrupted), so that the calls behind it do not wait for it."""
        for job_id in job_ids:
            _CANCELLED_JOBS[job_id] = None
        while len(_CANCELLED_JOBS) > _CANCELLED_KEEP:
            del _CANCELLED_JOBS[next(iter(_CANCELLED_JOBS))]
        cancel.stop_later(job_ids)


def _announce(job_id: str, **extra) -> None:
    try:
        from distributed import get_worker

        get_worker().log_event(EVENT_TOPIC, {"job": job_id, "event": "started",
                                             "at": time.time(), **extra})
    except ValueError:
        pass


def run_pipeline(image, operands, ops, *, compute_dtype="float32"):
    """Apply resolved operations in order, on whatever backend the arrays live on."""
    from medcompute import kernels

    dtype = np.dtype(compute_dtype)
    x = image
    for i, op in enumerate(ops):
        if _cancelled():
            raise TaskCancelled(f"cancelled before operation {i}")
        if op.kernel == "package":
            # A package's operation runs in a process of its own (packages.py).
            from medcompute.server.worker import packages

            # It is given the image in the compute dtype, as a kernel computes in it.
            x = packages.apply(op.args[0], x.astype(dtype, copy=False),
                               f"header.pipeline[{i}].package")
            continue
        fn = getattr(kernels, op.kernel)
        args = (operands[op.operand], *op.args) if op.operand is not None else op.args
        try:
            x = fn(x, *args, dtype=dtype, **op.kwargs)
        except ValueError as exc:
            # A parameter the resolver let through but the kernel refuses: still the caller's.
            raise InvalidArgument(str(exc), f"header.pipeline[{i}].{op.kernel}") from None
    return x


def _take(array, axis: int, lo: int, hi: int):
    index = [slice(None)] * array.ndim
    index[axis] = slice(lo, hi)
    return array[tuple(index)]


def _load_region(spec: InputSpec, region: Region, image_ndim: int) -> np.ndarray:
    """The part of an input a slab needs: its rows plus halo (a frame-shaped operand
    is sliced along the matching axis, or read whole when the split is along frames)."""
    ndim = len(spec.shape)
    axis = region.axis - (image_ndim - ndim)
    if axis < 0:
        return load_image(spec)
    if spec.voxels and axis == 0:
        # A stored image split along its first axis: only the frames of these slices.
        from medcompute.server.storage.blobs import read_voxel_slices

        return read_voxel_slices(spec.voxels, region.lo, region.hi)
    if spec.encoding == "raw" and spec.shm:
        from medcompute.server.worker import shm

        return shm.read_rows(spec.shm, spec.offset, spec.shape, spec.dtype, axis,
                             region.lo, region.hi)
    if spec.encoding == "raw":
        mapped = np.memmap(spec.path, dtype=np.dtype(spec.dtype), mode="r",
                           offset=spec.offset, shape=spec.shape)
        return np.array(_take(mapped, axis, region.lo, region.hi))
    return np.ascontiguousarray(_take(load_image(spec), axis, region.lo, region.hi))


def _write(path: str, data) -> None:
    with open(path, "wb") as f:
        f.write(memoryview(data).cast("B") if not isinstance(data, bytes) else data)


def _compute(spec: TaskSpec, backend, host: list[np.ndarray]):
    """(result on the host, compute seconds, the GPU's figures for TaskResult).

    On a GPU the kernels this pipeline needs are compiled first, outside the clock
    (``compile_seconds``, None where the compile could not be separated); the upload
    and the download are timed apart (``transfer_seconds``); ``gpu_seconds`` are the
    kernels alone, device synchronised on both sides."""
    from medcompute import kernels

    gpu = backend.name != "numpy"
    compile_seconds = kernel_cache.prepare(spec, backend, host, run_pipeline) if gpu else None
    meter = energy_meter(backend)
    t0 = time.perf_counter()
    arrays = [backend.asarray(a) for a in host]
    backend.synchronize()
    t1 = time.perf_counter()
    result = run_pipeline(arrays[0], arrays[1:], spec.ops, compute_dtype=spec.compute_dtype)
    result = kernels.saturating_cast(result, np.dtype(spec.output_dtype))
    backend.synchronize()
    t2 = time.perf_counter()
    out = np.ascontiguousarray(backend.to_host(result))
    t3 = time.perf_counter()
    if not gpu:
        return out, t2 - t0, {}
    return out, t2 - t0, dict(gpu_seconds=t2 - t1, transfer_seconds=(t1 - t0) + (t3 - t2),
                              compile_seconds=compile_seconds,
                              energy_joules=meter.joules(), energy_absent=meter.absent)


def _reported(task):
    """A task whose BaseException that is not an Exception (a Rust library's panic) reaches
    the server as Internal: Dask delivers only Exceptions, and the call would otherwise
    wait for a result that never comes."""
    @wraps(task)
    def run(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except (Exception, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            raise Internal(f"the task failed with {type(exc).__name__}") from None
    return run


@_reported
def run_task(spec: TaskSpec, *, announce: bool = True) -> TaskResult:
    """Run one job (or one slab of it) on this worker and write its result; ``announce``:
    say that it started (a batch of several jobs says so once for all)."""
    _running.job = spec.job_id
    try:
        with cancel.running(spec.job_id):
            return _run_task(spec, announce)
    finally:
        _running.job = None


def _run_task(spec: TaskSpec, announce: bool = True) -> TaskResult:
    started_at = time.time()
    if announce:
        _announce(spec.job_id, worker=worker_address(),
                  slab=spec.region.start if spec.region else None)
    backend = device_backend(spec.device)
    try:
        if spec.region is None:
            host = [load_image(s) for s in spec.inputs]
        else:
            ndim = len(spec.inputs[0].shape)
            host = [_load_region(s, spec.region, ndim) for s in spec.inputs]
        out, seconds, gpu = _compute(spec, backend, host)
        if gpu:   # the job's device arrays are back in the pool now
            from medcompute.server.worker.gpu_meter import free_memory

            gpu["device_free"] = free_memory()
    except Exception as exc:
        failure = gpu_failure(exc, backend) if spec.device == "gpu" else None
        if failure is not None:
            raise failure from None
        raise

    checksum = 0
    file_sizes: tuple[int, ...] = ()
    data = None
    if spec.region is None and spec.out_region is not None:
        from medcompute.server.worker import shm

        shm.write(spec.out_region[0], spec.out_region[1], out)
        nbytes = out.nbytes
        checksum = wire.crc32(out)
    elif spec.region is None and spec.result_in_memory:
        if spec.output_format == "raw":
            data = np.ascontiguousarray(out)
            nbytes = data.nbytes
        else:
            files = _derived_files(spec, out)
            data = b"".join(files)
            file_sizes, nbytes = tuple(len(b) for b in files), len(data)
        checksum = wire.crc32(data)
    elif spec.region is not None:
        r = spec.region
        core = _take(out, r.out_axis, r.start - r.lo, r.stop - r.lo)
        target = np.memmap(spec.out_path, dtype=out.dtype, mode="r+", shape=spec.out_shape)
        _take(target, r.out_axis, r.start, r.stop)[...] = core
        target.flush()
        del target
        out, nbytes = core, core.nbytes
    elif spec.output_format == "raw":
        _write(spec.out_path, out)
        nbytes = out.nbytes
        checksum = wire.crc32(out)
    else:
        file_sizes, checksum = _write_dicom(spec, out)
        nbytes = sum(file_sizes)
    return TaskResult(
        out_path=spec.out_path, shape=tuple(out.shape), dtype=out.dtype.str,
        file_sizes=file_sizes, nbytes=nbytes, started_at=started_at, finished_at=time.time(),
        compute_seconds=seconds, backend=backend.name, device=backend.device,
        worker=worker_address(), crc32=checksum, versions=versions(),
        data=data, **gpu,
    )


def _derived_files(spec: TaskSpec, out: np.ndarray, series=None) -> list[bytes]:
    from medcompute.server.dicom.write import write_derived
    from medcompute.server.worker import header_cache

    if out.ndim not in (2, 3):  # e.g. a projection of a single slice
        raise InvalidArgument(
            f"a DICOM result needs 2 or 3 axes, but this pipeline gives shape {out.shape}; "
            "ask for OUTPUT_RAW, or project a volume rather than a single slice",
            "header.output_format")
    source = spec.inputs[0]
    # The headers this worker parsed and checked when the stored series was registered,
    # if it still keeps them: parsing them again was most of this task.
    kept = header_cache.recall((source.digest, tuple(source.file_sizes))) \
        if source.digest else None
    return write_derived(
        _dicom_parts(source), out, spacing=spec.output_spacing,
        description=spec.description, single_file=spec.output_format == "dicom_file",
        series=series, vol=kept)


def _write_dicom(spec: TaskSpec, out: np.ndarray, series=None, path: str = ""
                 ) -> tuple[tuple[int, ...], int]:
    files = _derived_files(spec, out, series)
    checksum = 0
    with open(path or spec.out_path, "wb") as f:
        for blob in files:
            f.write(blob)
            checksum = wire.crc32(blob, checksum)
    return tuple(len(b) for b in files), checksum


def job_ids(spec) -> list[str]:
    """The jobs a :class:`TaskSpec` or a :class:`StackSpec` runs."""
    return list(spec.job_ids) if isinstance(spec, StackSpec) else [spec.job_id]


@_reported
def run_batch(specs: list, *, announce: bool = True) -> list:
    """Run several small jobs (or stacks) in one task; each gets its own result or its own
    error.

    Several jobs are announced once, together (``jobs``: their ids): an event per small job
    costs the worker, the scheduler and the server more than the job itself; with
    ``announce=False`` none is (the caller says where they went)."""
    results: list = []
    each = announce and len(specs) == 1         # as a job alone
    if announce and not each:
        _announce(specs[0].job_id, jobs=[j for s in specs for j in job_ids(s)],
                  worker=worker_address())
    for spec in specs:
        if _cancelled() or all(j in _CANCELLED_JOBS for j in job_ids(spec)):
            results.append(TaskCancelled("the batch was cancelled"))
            continue
        try:
            if isinstance(spec, StackSpec):
                results.append(run_stack(spec, announce=each))
            else:
                results.append(run_task(spec, announce=each))
        except Exception as exc:  # reported per job, the others still run
            results.append(exc)
    return results


@_reported
def run_stack(spec: StackSpec, *, announce: bool = True) -> StackResult:
    """Run a stack's pipeline image by image in this one call; each image gets its own
    result or its own error (the others still run). A GPU failure fails the whole stack
    (:class:`GpuFailure`: the dispatcher runs it again on CPU)."""
    from medcompute import kernels

    started_at = time.time()
    if announce:
        _announce(spec.job_id, jobs=list(spec.job_ids), worker=worker_address())
    backend = device_backend(spec.device)
    gpu = backend.name != "numpy"
    n = len(spec.job_ids)
    out, compile_seconds = [None] * len(spec.job_ids), None
    crcs, seconds, errors = [0] * n, [0.0] * n, [None] * n
    kernel, transfer = [0.0] * n, [0.0] * n
    shapes, out_dtype = [()] * n, ""
    try:
        # Image k: of the stack's array, or read from where spec.images[k] says (a
        # client's shared-memory region).
        stack = None if spec.images else load_image(spec.stack)

        def image_of(k):
            return stack[k] if stack is not None else load_image(spec.images[k])

        operand_host = [load_image(s) for s in spec.operands]
        if gpu and n:
            compile_seconds = kernel_cache.prepare(spec, backend, [image_of(0), *operand_host],
                                                   run_pipeline)
        meter = energy_meter(backend)
        operands = [backend.asarray(a) for a in operand_host]
        for k, job_id in enumerate(spec.job_ids):
            if job_id in _CANCELLED_JOBS:
                errors[k] = TaskCancelled("the job was cancelled")
                continue
            _running.job = job_id
            try:
                # As _compute does for an image alone: the same calls on the same values;
                # a cancelled image still in its kernel stops as a job alone does.
                t0 = time.perf_counter()
                with cancel.running(job_id):
                    image = backend.asarray(image_of(k))
                    backend.synchronize()
                    t1 = time.perf_counter()
                    result = run_pipeline(image, operands, spec.ops,
                                          compute_dtype=spec.compute_dtype)
                    result = kernels.saturating_cast(result, np.dtype(spec.output_dtype))
                    backend.synchronize()
                t2 = time.perf_counter()
                seconds[k], kernel[k] = t2 - t0, t2 - t1
                host = np.ascontiguousarray(backend.to_host(result))
                transfer[k] = (t1 - t0) + (time.perf_counter() - t2)
            except Exception as exc:
                if spec.device == "gpu" and gpu_failure(exc, backend) is not None:
                    raise
                errors[k] = exc          # this image fails alone
                continue
            finally:
                _running.job = None
            crcs[k] = wire.crc32(host)
            shapes[k], out_dtype = tuple(host.shape), host.dtype.str
            region = spec.out_regions[k] if spec.out_regions else None
            if region is not None:
                from medcompute.server.worker import shm

                try:
                    shm.write(region[0], region[1], host)   # into the client's region
                except FailedPrecondition as exc:         # it unlinked or shrank it
                    errors[k] = exc
            else:
                out[k] = host      # the kernel's own array: no copy into a stack
        operands = image = result = None         # back into the device's pool
        device_free = None
        if gpu:
            from medcompute.server.worker.gpu_meter import free_memory

            device_free = free_memory()
    except Exception as exc:
        failure = gpu_failure(exc, backend) if spec.device == "gpu" else None
        if failure is not None:
            raise failure from None
        raise
    return StackResult(out=out, crc32=crcs, seconds=seconds, errors=errors,
                       shapes=shapes, dtype=out_dtype,
                       started_at=started_at, finished_at=time.time(), backend=backend.name,
                       device=backend.device, worker=worker_address(), versions=versions(),
                       gpu=gpu, energy_joules=meter.joules(),
                       energy_absent=meter.absent if gpu else "",
                       kernel_seconds=kernel if gpu else [],
                       transfer_seconds=transfer if gpu else [],
                       compile_seconds=compile_seconds, device_free=device_free)


@_reported
def materialize(spec: InputSpec, path: str) -> InputSpec:
    """Decode an input (DICOM, a compressed blob) into a raw file slabs can read in parts."""
    array = np.ascontiguousarray(load_image(spec))
    _write(path, array)
    return InputSpec(path, "raw", tuple(array.shape), array.dtype.str, field=spec.field)


def part_path(out_path: str, series) -> str:
    """Where :func:`encode_dicom` writes the files of one part of a derived series."""
    return f"{out_path}.part{series.slices[0]}"


@_reported
def encode_dicom(spec: TaskSpec, shape: tuple[int, ...], dtype: str, series=None
                 ) -> TaskResult:
    """Turn the raw result that slabs wrote into the DICOM files the request asked for.

    With ``series`` (a :class:`~medcompute.server.dicom.write.Series`), only the files of
    its slices, into ``<out_path>.part<start>``: several workers write one series' files
    at once, and the caller joins the parts and removes the raw result."""
    started_at = time.time()
    raw = spec.out_path + ".raw"
    out = np.memmap(raw, dtype=np.dtype(dtype), mode="r", shape=shape)
    path = part_path(spec.out_path, series) if series is not None else spec.out_path
    file_sizes, checksum = _write_dicom(spec, out, series, path)
    del out
    if series is None:
        os.unlink(raw)
    return TaskResult(
        out_path=path, shape=shape, dtype=dtype, file_sizes=file_sizes,
        nbytes=sum(file_sizes), started_at=started_at, finished_at=time.time(),
        compute_seconds=0.0, backend="numpy", device="cpu", worker=worker_address(),
        crc32=checksum, versions=versions())


def warm_up() -> str:
    """Import what tasks need, so the first job does not pay for it; on a GPU worker,
    start compiling the common kernel settings (kernel_cache.py) in the background."""
    import scipy.ndimage  # noqa: F401

    from medcompute import kernels  # noqa: F401
    from medcompute.server.dicom import read, write  # noqa: F401

    if os.environ.get("MEDCOMPUTE_GPU_BACKEND"):
        from medcompute.server.worker import kernel_cache

        try:
            kernel_cache.warm_up(device_backend("gpu"))
        except kernels.BackendUnavailable as exc:
            log.error("this GPU worker cannot use its GPU: %s", exc)
    return str(os.getpid())


class _WarmUp:
    """A Dask worker plugin: :func:`warm_up` on every GPU worker, those that join or
    restart later included (a restarted GPU worker compiles its common kernels again,
    from the disk cache). CPU workers are warmed up once, at the cluster's start."""

    name = "medcompute-warm-up"

    def setup(self, worker) -> None:
        if os.environ.get("MEDCOMPUTE_GPU_BACKEND"):
            warm_up()


def warm_up_plugin():
    """The ``WarmUp`` worker plug-in, made on first use (plugins.py)."""
    return plugins.plugin_class(__name__, "WarmUp", _WarmUp)()


__getattr__ = plugins.module_getattr(__name__, {"WarmUp": _WarmUp})

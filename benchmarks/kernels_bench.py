"""Kernels section: every operation x backend on a slice and a volume, against
scipy.ndimage (NumPy for projections and arithmetic), SimpleITK and OpenCV where they
have the operation; and, where CuPy finds a device, the GPU against the CPU and the
fraction of the device's memory bandwidth achieved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
from common import Sizes, absent, measure, ratio, wait_for_idle

from medcompute import kernels as K

LO, HI = 3.0, 10.0          # band-pass cutoffs (voxels)
SIGMA = 2.0
#: The operations whose CPU path must reach 10x scipy.ndimage on the volume.
TEN_X = ("gaussian", "mean", "laplacian", "log", "gradient", "edge_sobel", "edge_prewitt",
         "edge_scharr", "bandpass_dog")


@dataclass(frozen=True)
class Op:
    name: str
    params: str
    ours: Callable                           # (image, other) -> array on the image's backend
    scipy: Callable | None                   # (image, other) -> float32 array, None: no equivalent
    scipy_what: str = "scipy.ndimage"
    sitk: Callable | None = None             # (sitk image, sitk other, ndim) -> sitk image
    opencv: Callable | None = None           # (2-D image, 2-D other) -> float32 array
    reason: str = ""                         # why scipy has no equivalent


def _f(x):
    return x.astype(np.float32)


def _edge_scipy(fn):
    def run(x, _):
        f = _f(x)
        acc = None
        for axis in range(f.ndim):
            d = fn(f, axis, mode="nearest")
            d *= d
            acc = d if acc is None else acc + d
        return np.sqrt(acc, out=acc)
    return run


def _cv_edge(dx_dy):
    def run(x, _):
        import cv2

        f = _f(x)
        gx, gy = dx_dy(cv2, f)
        return cv2.magnitude(gx, gy)
    return run


def _sitk_axis(ndim: int, axis: int = 0) -> int:
    return ndim - 1 - axis  # SimpleITK orders axes x, y, z: NumPy's reversed


def operations() -> list[Op]:
    lo_sigma = K.gaussian_sigma_for_cutoff(LO)
    hi_sigma = K.gaussian_sigma_for_cutoff(HI)
    return [
        Op("gaussian", f"sigma={SIGMA:g}", lambda x, _: K.gaussian(x, SIGMA),
           lambda x, _: ndi.gaussian_filter(_f(x), SIGMA, mode="nearest"),
           sitk=lambda s, _o, n: _sitk().SmoothingRecursiveGaussian(s, SIGMA),
           opencv=lambda x, _: _cv().GaussianBlur(
               _f(x), (2 * int(4 * SIGMA + 0.5) + 1,) * 2, SIGMA,
               borderType=_cv().BORDER_REPLICATE)),
        Op("mean", "size=5", lambda x, _: K.mean(x, 5),
           lambda x, _: ndi.uniform_filter(_f(x), 5, mode="nearest"),
           sitk=lambda s, _o, n: _sitk().Mean(s, [2] * n),
           opencv=lambda x, _: _cv().blur(_f(x), (5, 5), borderType=_cv().BORDER_REPLICATE)),
        Op("median", "size=3", lambda x, _: K.median(x, 3),
           lambda x, _: ndi.median_filter(_f(x), 3, mode="nearest"),
           sitk=lambda s, _o, n: _sitk().Median(s, [1] * n),
           opencv=lambda x, _: _cv().medianBlur(_f(x), 3)),
        Op("laplacian", "sigma=0", lambda x, _: K.laplacian(x),
           lambda x, _: ndi.laplace(_f(x), mode="nearest"),
           sitk=lambda s, _o, n: _sitk().Laplacian(s),
           opencv=lambda x, _: _cv().Laplacian(_f(x), _cv().CV_32F, ksize=1,
                                               borderType=_cv().BORDER_REPLICATE)),
        Op("log", f"sigma={SIGMA:g}", lambda x, _: K.laplacian(x, SIGMA),
           lambda x, _: ndi.gaussian_laplace(_f(x), SIGMA, mode="nearest"),
           sitk=lambda s, _o, n: _sitk().LaplacianRecursiveGaussian(s, SIGMA)),
        Op("gradient", "axis=0", lambda x, _: K.gradient(x, 0),
           lambda x, _: ndi.correlate1d(_f(x), [-0.5, 0.0, 0.5], 0, mode="nearest"),
           sitk=lambda s, _o, n: _sitk().Derivative(s, _sitk_axis(n), 1)),
        Op("edge_sobel", "operator=sobel", lambda x, _: K.edge(x, "sobel"),
           _edge_scipy(ndi.sobel),
           sitk=lambda s, _o, n: _sitk().SobelEdgeDetection(s),
           opencv=_cv_edge(lambda cv2, f: (cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3),
                                           cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)))),
        Op("edge_prewitt", "operator=prewitt", lambda x, _: K.edge(x, "prewitt"),
           _edge_scipy(ndi.prewitt)),
        Op("edge_scharr", "operator=scharr", lambda x, _: K.edge(x, "scharr"),
           _edge_scipy(_scharr),
           opencv=_cv_edge(lambda cv2, f: (cv2.Scharr(f, cv2.CV_32F, 1, 0),
                                           cv2.Scharr(f, cv2.CV_32F, 0, 1)))),
        Op("bandpass_dog", f"low={LO:g},high={HI:g}", lambda x, _: K.bandpass(x, LO, HI),
           lambda x, _: np.subtract(ndi.gaussian_filter(_f(x), lo_sigma, mode="nearest"),
                                    ndi.gaussian_filter(_f(x), hi_sigma, mode="nearest"))),
        Op("bandpass_butterworth", f"low={LO:g},high={HI:g},order=2",
           lambda x, _: K.bandpass(x, LO, HI, method="butterworth"), None,
           reason="scipy.ndimage has no Butterworth band-pass"),
        Op("project_max", "axis=0", lambda x, _: K.project(x, "max"),
           lambda x, _: np.max(x, axis=0).astype(np.float32), "numpy",
           sitk=lambda s, _o, n: _sitk().MaximumProjection(s, _sitk_axis(n)),
           opencv=lambda x, _: _cv().reduce(_f(x), 0, _cv().REDUCE_MAX)),
        Op("project_min", "axis=0", lambda x, _: K.project(x, "min"),
           lambda x, _: np.min(x, axis=0).astype(np.float32), "numpy",
           sitk=lambda s, _o, n: _sitk().MinimumProjection(s, _sitk_axis(n)),
           opencv=lambda x, _: _cv().reduce(_f(x), 0, _cv().REDUCE_MIN)),
        Op("project_mean", "axis=0", lambda x, _: K.project(x, "mean"),
           lambda x, _: np.mean(x, axis=0, dtype=np.float32), "numpy",
           sitk=lambda s, _o, n: _sitk().MeanProjection(s, _sitk_axis(n)),
           opencv=lambda x, _: _cv().reduce(_f(x), 0, _cv().REDUCE_AVG)),
        Op("project_sum", "axis=0", lambda x, _: K.project(x, "sum"),
           lambda x, _: np.sum(x, axis=0, dtype=np.float32), "numpy",
           sitk=lambda s, _o, n: _sitk().SumProjection(s, _sitk_axis(n)),
           opencv=lambda x, _: _cv().reduce(_f(x), 0, _cv().REDUCE_SUM)),
        Op("subtract", "other", lambda x, o: K.subtract(x, o),
           lambda x, o: np.subtract(_f(x), _f(o)), "numpy",
           sitk=lambda s, o, n: _sitk().Subtract(s, o),
           opencv=lambda x, o: _cv().subtract(x, o, dtype=_cv().CV_32F)),
        Op("add", "other", lambda x, o: K.add(x, o),
           lambda x, o: np.add(_f(x), _f(o)), "numpy",
           sitk=lambda s, o, n: _sitk().Add(s, o),
           opencv=lambda x, o: _cv().add(x, o, dtype=_cv().CV_32F)),
    ]


def _scharr(f, axis, mode):
    out = ndi.correlate1d(f, [-1.0, 0.0, 1.0], axis, mode=mode)
    for other in range(f.ndim):
        if other != axis:
            out = ndi.correlate1d(out, [3.0, 10.0, 3.0], other, mode=mode)
    return out


def _cv():
    import cv2

    return cv2


def _sitk():
    import SimpleITK

    return SimpleITK


def _sitk_available() -> str | None:
    try:
        import SimpleITK  # noqa: F401
    except ImportError as exc:
        return f"SimpleITK is not installed (the 'bench' extra): {exc}"
    return None


def _baseline(what: str, warm, fn, sizes: Sizes) -> dict:
    """A baseline's timing; one that fails is absent with the error, not zero."""
    try:
        warm()
        return {**measure(fn, repeats=sizes.repeats, slow_repeats=sizes.slow_repeats,
                          in_process=True), "what": what}
    except Exception as exc:
        return absent(f"{what}: failed: {exc!r}")


def _images(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 3000, size=shape).astype(np.int16)


@dataclass
class _Inputs:
    """The arrays one size is timed on, and the small ones that warm each call up."""

    image: np.ndarray
    other: np.ndarray
    warm: np.ndarray
    warm_other: np.ndarray
    sitk: tuple | None = None        # (image, other, warm, warm_other) as SimpleITK images


def _inputs(shape, sizes: Sizes, with_sitk: bool) -> _Inputs:
    inputs = _Inputs(_images(shape, 1), _images(shape, 2), _images(sizes.slice_shape, 3),
                     _images(sizes.slice_shape, 4))
    if with_sitk:
        sitk = _sitk()
        inputs.sitk = tuple(sitk.GetImageFromArray(a.astype(np.float32)) for a in (
            inputs.image, inputs.other, inputs.warm, inputs.warm_other))
    return inputs


def _time_op(op: Op, size_name: str, x: _Inputs, sizes: Sizes, sitk_missing,
             wait_idle: float = 0.0) -> dict:
    import cv2

    image, other = x.image, x.other
    row = {"op": op.name, "params": op.params, "size": size_name, "shape": list(image.shape),
           "dtype": "int16", "voxels": int(image.size), "backend": "numpy",
           "threads": K.cpu_threads()}
    op.ours(x.warm, x.warm_other)
    if wait_idle:
        wait_for_idle(wait_idle)
    ours = measure(lambda: op.ours(image, other), repeats=sizes.repeats,
                   slow_repeats=sizes.slow_repeats, in_process=True)
    row["seconds"] = ours["seconds"]
    row["timing"] = ours
    row["mvox_per_s"] = image.size / ours["seconds"] / 1e6
    baselines = {}
    if op.scipy is None:
        baselines["scipy"] = absent(op.reason)
    else:
        baselines["scipy"] = _baseline(op.scipy_what, lambda: op.scipy(x.warm, x.warm_other),
                                       lambda: op.scipy(image, other), sizes)
    if sitk_missing is not None:
        baselines["simpleitk"] = absent(sitk_missing)
    elif op.sitk is None:
        baselines["simpleitk"] = absent("SimpleITK has no such operation")
    elif x.sitk is None:
        baselines["simpleitk"] = absent(f"not timed on the {size_name} in {sizes.name} mode")
    else:
        s_image, s_other, s_warm, s_warm_other = x.sitk
        threads = _sitk().ProcessObject.GetGlobalDefaultNumberOfThreads()
        baselines["simpleitk"] = _baseline(
            f"SimpleITK on a float32 image (conversion not timed), {threads} threads",
            lambda: op.sitk(s_warm, s_warm_other, x.warm.ndim),
            lambda: op.sitk(s_image, s_other, image.ndim), sizes)
    if op.opencv is None:
        baselines["opencv"] = absent("OpenCV has no such operation")
    elif image.ndim != 2:
        baselines["opencv"] = absent("OpenCV's filters are 2-D only")
    else:
        baselines["opencv"] = _baseline(f"OpenCV, {cv2.getNumThreads()} threads",
                                        lambda: op.opencv(x.warm, x.warm_other),
                                        lambda: op.opencv(image, other), sizes)
    for b in baselines.values():
        b["ratio"] = ratio(b, ours)
    row["baselines"] = baselines
    return row


def run(sizes: Sizes, log, wait_idle: float = 0.0) -> dict:
    """Every operation on the slice and the volume, ours against the baselines.

    ``wait_idle``: before each operation, wait up to this many seconds for the other
    processes on the machine to go quiet (on a shared machine).
    """
    sitk_missing = _sitk_available()
    ops = operations()
    results = []
    for size_name, shape in (("slice", sizes.slice_shape), ("volume", sizes.volume_shape)):
        with_sitk = sitk_missing is None and (size_name == "slice" or sizes.sitk_volume)
        inputs = _inputs(shape, sizes, with_sitk)
        for op in ops:
            row = _time_op(op, size_name, inputs, sizes, sitk_missing, wait_idle)
            results.append(row)
            r = row["baselines"]["scipy"].get("ratio")
            bg = row["timing"].get("background_cores")
            log(f"kernels {size_name:6s} {op.name:22s} {row['seconds'] * 1e3:9.2f} ms  "
                f"vs scipy {'-' if r is None else f'{r:6.1f}x'}"
                + (f"  (other processes: {bg:.2f} cores)" if bg is not None else ""))
    return {"ops": [op.name for op in ops], "ten_x_ops": list(TEN_X),
            "slice_shape": list(sizes.slice_shape), "volume_shape": list(sizes.volume_shape),
            "results": results,
            "notes": ["input int16, output float32; every baseline starts from the same int16 "
                      "array and its cast to float32 is timed, except SimpleITK's",
                      "median of the timed calls after a warm-up",
                      "background_cores: CPU taken by other processes on the machine while "
                      "our calls were timed (the CPU path uses every core, so it is the one "
                      "slowed by them)"]}


# --- GPU ---------------------------------------------------------------------------


def gpu_device() -> tuple[object | None, str]:
    """(cupy, description) where CuPy finds a device, else (None, why not)."""
    try:
        import cupy
    except ImportError as exc:
        return None, f"CuPy is not installed (the 'gpu' extra): {exc}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # the driver or runtime says no GPU
        return None, f"CUDA is not usable: {exc}"
    if count < 1:
        return None, "CuPy finds no CUDA device"
    return cupy, "ok"


def peak_bandwidth(cupy, nvml=None) -> tuple[float, str, str]:
    """The device's peak memory bandwidth in bytes/s, its name, and where the figures
    came from: CUDA's device properties, or NVML where CUDA no longer has the memory
    clock (CUDA 13 removed ``memoryClockRate``)."""
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    clock_khz, bus_bits = props.get("memoryClockRate") or 0, props.get("memoryBusWidth") or 0
    source = "cuda device properties"
    if not (clock_khz and bus_bits):
        clock_khz, bus_bits = nvml_memory(cupy.cuda.Device().pci_bus_id, nvml)
        source = "nvml (max memory clock, bus width)"
    # Double data rate: two transfers per memory clock, over the bus width in bytes.
    return 2.0 * clock_khz * 1e3 * bus_bits / 8, name, source


def nvml_memory(pci_bus_id: str, nvml=None) -> tuple[float, int]:
    """(the maximum memory clock in kHz, the memory bus width in bits) from NVML."""
    if nvml is None:
        import pynvml as nvml
    nvml.nvmlInit()
    try:
        handle = nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
        mhz = nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM)
        return mhz * 1e3, int(nvml.nvmlDeviceGetMemoryBusWidth(handle))
    finally:
        nvml.nvmlShutdown()


def _time_gpu(op: Op, size_name: str, image, other, backend, sizes: Sizes, peak: float,
              host=None) -> dict:
    out = op.ours(image, other)  # warm-up: kernels compiled, memory pool filled
    backend.synchronize()
    t = measure(lambda: op.ours(image, other), repeats=sizes.repeats,
                slow_repeats=sizes.slow_repeats, sync=backend.synchronize)
    moved = image.nbytes + out.nbytes + (other.nbytes if op.params == "other" else 0)
    achieved = moved / t["seconds"]
    row = {"op": op.name, "size": size_name, "shape": list(image.shape), "backend": "cupy",
           "seconds": t["seconds"], "timing": t, "bytes_moved_min": moved,
           "achieved_bytes_per_s": achieved, "bandwidth_fraction": achieved / peak,
           "bandwidth_fraction_is_lower_bound": True}
    if host is not None:   # the same from host arrays: upload, kernels, download
        image_host, other_host = host
        with_transfers = measure(
            lambda: backend.to_host(op.ours(backend.asarray(image_host),
                                            backend.asarray(other_host))),
            repeats=sizes.repeats, slow_repeats=sizes.slow_repeats, sync=backend.synchronize)
        row["seconds_with_transfers"] = with_transfers["seconds"]
    return row


def run_gpu(sizes: Sizes, kernel_results: list[dict], log, device=None) -> dict:
    """Ours on CuPy against ours on NumPy (same run), and achieved memory bandwidth.

    ``device`` is ``(backend, peak bytes/s, name)``; by default the first GPU CuPy finds.
    """
    if device is None:
        cupy, why = gpu_device()
        if cupy is None:
            return {"available": False, "reason": why, "results": []}
        peak, name, _ = peak_bandwidth(cupy)
        backend = K.gpu_backend()
        pool_bytes = cupy.get_default_memory_pool().total_bytes
    else:
        backend, peak, name = device
        pool_bytes = None
    cpu = {(r["op"], r["size"]): r for r in kernel_results}
    results = []
    for size_name, shape in (("slice", sizes.slice_shape), ("volume", sizes.volume_shape)):
        host = (_images(shape, 1), _images(shape, 2))
        image, other = backend.asarray(host[0]), backend.asarray(host[1])
        for op in operations():
            row = _time_gpu(op, size_name, image, other, backend, sizes, peak, host)
            ref = cpu.get((op.name, size_name))
            row["cpu_seconds"] = ref["seconds"] if ref else None
            # Device-resident (the input already on the GPU) and with the transfers.
            row["speedup_vs_cpu"] = ratio(ref, row) if ref else None
            row["speedup_vs_cpu_with_transfers"] = (
                ref["seconds"] / row["seconds_with_transfers"] if ref else None)
            results.append(row)
            log(f"gpu     {size_name:6s} {op.name:22s} {row['seconds'] * 1e3:9.3f} ms  "
                f"{row['bandwidth_fraction'] * 100:5.1f}% of peak bandwidth")
    return {"available": True, "device": name, "peak_bytes_per_s": peak,
            "memory_pool_bytes": pool_bytes() if pool_bytes else None, "results": results,
            "notes": ["seconds and speedup_vs_cpu: input resident on the device; "
                      "seconds_with_transfers and speedup_vs_cpu_with_transfers: from host "
                      "arrays, upload and download included; the stream synchronised before "
                      "each clock stops; bandwidth counts the input and output bytes once, a "
                      "lower bound (a 3-pass separable filter moves several times more); "
                      "CuPy's default memory pool is kept between calls"]}

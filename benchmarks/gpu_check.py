"""One command for a lent GPU (``make gpu-check``): everything that needs a device, in
under ten minutes, into one JSON.

    python benchmarks/gpu_check.py [--out DIR] [--budget SECONDS]

Without a device (NVML reports none, or CuPy cannot use it) it exits at once with
status 3 and says so: nothing was checked. With one it runs, each part in its own
time box and recorded even when it fails:

1. the ``gpu``-marked tests (pytest -m gpu);
2. every kernel operation cold and warm on a 128x512x512 volume, in a process with an
   empty kernel cache: compile cost (cold minus warm), upload / kernel / download
   seconds apart, the bandwidth fraction of the kernel (bytes in + out: a lower bound
   of what it moves) and the speed-up against the same kernels on the CPU, both with
   the transfers and with the data already on the device;
3. the service end to end: the same volume and pipeline through ``medcompute serve``
   on a GPU worker against a CPU-only server (with the usage record's GPU, transfer
   and compile seconds);
4. the harness's GPU section (benchmarks/run.py --sections kernels,gpu --quick);
5. the double-buffered slab loop (kernels/streams.py) against one slab at a time on the
   same volume in slabs: wall seconds of each, their ratio, the per-slab upload /
   kernel / download sums, and whether the results are the same bit for bit.

The JSON (``<out>/<timestamp>-gpu-check.json``) also holds the versions and the device.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NO_DEVICE = 3
SHAPE = (128, 512, 512)
#: Operations timed cold and warm: (name, pipeline text for the service, kernel call).
OPS = (
    ("gaussian", "gaussian:sigma=2"),
    ("mean", "mean:size=5"),
    ("median", "median:size=3"),
    ("laplacian", "laplacian"),
    ("log", "laplacian:sigma=2"),
    ("gradient", "gradient:axis=0"),
    ("edge_sobel", "edge:operator=sobel"),
    ("bandpass_dog", "bandpass:low_cutoff=3,high_cutoff=10"),
    ("bandpass_butterworth", "bandpass:low_cutoff=3,high_cutoff=10,method=butterworth"),
    ("project_max", "mip:axis=0"),
)


def device() -> tuple[list, str]:
    """(the GPUs, "") where there is one to check, else ([], why not)."""
    from medcompute.server.dispatch.cluster import detect_gpus

    gpus = detect_gpus()
    if not gpus:
        return [], ("no GPU here: NVML reports none, or CuPy (the 'gpu' extra) cannot use "
                    "it; nothing was checked")
    return gpus, ""


def _timed_part(name: str, fn, log) -> dict:
    t0 = time.monotonic()
    try:
        out = fn()
    except Exception as exc:  # each part is recorded, the others still run
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    out["wall_seconds"] = time.monotonic() - t0
    log(f"{name}: {'ok' if out.get('ok', True) else out.get('error')} "
        f"({out['wall_seconds']:.0f} s)")
    return out


def gpu_tests(timeout: float) -> dict:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p",
                           "no:cacheprovider", "tests"], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    return {"ok": proc.returncode == 0, "returncode": proc.returncode, "summary": tail[0]}


def _op_timings() -> dict:
    """Runs in a fresh process whose CUPY_CACHE_DIR is empty (so "cold" compiles)."""
    import cupy
    import numpy as np

    from medcompute import kernels
    from medcompute.client.ops import parse_op
    from medcompute.server.jobs.operations import Geometry, resolve_pipeline
    from medcompute.server.worker.tasks import run_pipeline

    sys.path.insert(0, str(HERE))
    from kernels_bench import peak_bandwidth

    peak, name, peak_source = peak_bandwidth(cupy)
    backend = kernels.gpu_backend(0)
    host = np.random.default_rng(1).integers(-1000, 3000, SHAPE).astype(np.int16)

    def clock(fn):
        backend.synchronize()
        t0 = time.perf_counter()
        out = fn()
        backend.synchronize()
        return out, time.perf_counter() - t0

    rows = []
    pool = cupy.get_default_memory_pool()
    for op_name, text in OPS:
        ops, _ = resolve_pipeline([parse_op(text)], Geometry(SHAPE), [])
        pool.free_all_blocks()
        dev, upload = clock(lambda: backend.asarray(host))
        _, cold = clock(lambda dev=dev, ops=ops: run_pipeline(dev, [], ops))
        result, warm = clock(lambda dev=dev, ops=ops: run_pipeline(dev, [], ops))
        # The pool keeps every block it allocated: its size is the peak the op needed.
        held = pool.total_bytes()
        estimate = kernels.working_memory(ops[0].kernel, SHAPE, *ops[0].args,
                                          **ops[0].kwargs) + host.nbytes
        t0 = time.perf_counter()
        back = backend.to_host(result)
        download = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_pipeline(host, [], ops)
        cpu = time.perf_counter() - t0
        moved = host.nbytes + back.nbytes
        rows.append({
            "op": op_name, "pipeline": text, "shape": list(SHAPE),
            "cold_seconds": cold, "warm_seconds": warm, "compile_seconds": cold - warm,
            "upload_seconds": upload, "kernel_seconds": warm, "download_seconds": download,
            "transfer_to_kernel": (upload + download) / warm,
            "bytes_moved_lower_bound": moved,
            "bandwidth_fraction_lower_bound": moved / warm / peak,
            "cpu_seconds": cpu,
            "device_bytes_per_voxel": held / host.size,
            "estimated_bytes_per_voxel": estimate / host.size,
            "speedup_device_resident": cpu / warm,
            "speedup_with_transfers": cpu / (upload + warm + download)})
        dev = result = None
        cupy.get_default_memory_pool().free_all_blocks()
    return {"ok": True, "device": name, "peak_bytes_per_s": peak, "peak_source": peak_source,
            "results": rows,
            "notes": ["cold: the first call in a process with an empty kernel cache; warm: "
                      "the second; the bandwidth counts input and output bytes once, a "
                      "lower bound of what a multi-pass filter moves; device_bytes_per_voxel: "
                      "CuPy's pool after the op (it keeps what it allocated), against "
                      "estimated_bytes_per_voxel, the kernels' working-memory estimate that "
                      "placement uses, plus the input"]}


#: Slabs the volume is cut into for the overlap part (no halo: a timing, not a result).
OVERLAP_SLABS = 8


def _overlap() -> dict:
    """Runs in the --op-timings process's place: the slab loop overlapped and not."""
    import numpy as np

    from medcompute import kernels
    from medcompute.kernels.streams import run_slabs

    backend = kernels.gpu_backend(0)
    host = np.random.default_rng(2).integers(-1000, 3000, SHAPE).astype(np.int16)
    slabs = np.array_split(host, OVERLAP_SLABS, axis=0)
    rows = {}
    for overlap in (True, False, True, False):      # the first two compile and warm up
        stored, times = [], []
        t0 = time.perf_counter()
        run_slabs(backend, len(slabs), lambda k: [slabs[k]],
                  lambda device: kernels.gaussian(device[0], (2.0, 2.0, 2.0)),
                  lambda k, out, t, stored=stored, times=times: (
                      stored.append(out.copy()), times.append(t)),
                  overlap=overlap)
        rows[overlap] = {"wall_seconds": time.perf_counter() - t0,
                         "upload_seconds": sum(t.upload for t in times),
                         "kernel_seconds": sum(t.kernel for t in times),
                         "download_seconds": sum(t.download for t in times),
                         "results": stored}
    same = all(a.tobytes() == b.tobytes()
               for a, b in zip(rows[True].pop("results"), rows[False].pop("results")))
    return {"ok": same, "shape": list(SHAPE), "slabs": OVERLAP_SLABS,
            "pipeline": "gaussian sigma 2", "overlapped": rows[True], "sequential": rows[False],
            "sequential_over_overlapped": rows[False]["wall_seconds"]
            / rows[True]["wall_seconds"], "bit_for_bit": same}


def overlap(timeout: float) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--overlap"], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"ok": False, "error": proc.stderr.strip()[-2000:]}
    return json.loads(proc.stdout)


def op_timings(timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="medcompute-gpu-check-") as cache:
        env = {**os.environ, "CUPY_CACHE_DIR": cache}
        proc = subprocess.run([sys.executable, __file__, "--op-timings"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"ok": False, "error": proc.stderr.strip()[-2000:]}
    return json.loads(proc.stdout)


def end_to_end(repeats: int = 3) -> dict:
    import numpy as np

    sys.path.insert(0, str(HERE))
    from service_bench import Served

    from medcompute.client import Client

    volume = np.random.default_rng(1).integers(-1000, 3000, SHAPE).astype(np.int16)
    pipeline = ["gaussian:sigma=2", "edge"]
    out = {"ok": True, "pipeline": pipeline, "shape": list(SHAPE)}
    for kind, gpu_workers in (("gpu", 1), ("cpu", 0)):
        with Served(gpu_workers=gpu_workers) as address, Client(address, timeout=300) as c:
            runs = []
            for _ in range(repeats + 1):        # the first is the warm-up, not counted
                t0 = time.perf_counter()
                r = c.process(volume, pipeline, device=kind)
                wall = time.perf_counter() - t0
                u = r.header.usage
                runs.append({"wall_seconds": wall, "backend": r.header.backend,
                             "compute_seconds": u.compute_seconds,
                             **{f: getattr(u, f) for f in ("gpu_seconds", "transfer_seconds",
                                                           "compile_seconds")
                                if u.HasField(f)}})
        out[kind] = {"first": runs[0], "runs": runs[1:],
                     "median_wall_seconds": sorted(x["wall_seconds"] for x in runs[1:])[
                         len(runs[1:]) // 2]}
    out["speedup_end_to_end"] = (out["cpu"]["median_wall_seconds"]
                                 / out["gpu"]["median_wall_seconds"])
    return out


def bench_sections(out_dir: Path, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, str(HERE / "run.py"), "--quick", "--sections",
                           "kernels,gpu", "--no-html", "--out", str(out_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    written = sorted(out_dir.glob("*.json"))
    gpu = json.loads(written[-1].read_text()).get("gpu") if written else None
    return {"ok": proc.returncode == 0, "returncode": proc.returncode, "gpu": gpu}


def versions() -> dict:
    from medcompute.server.worker.tasks import versions as worker_versions

    out = dict(worker_versions())
    try:
        import cupy

        out["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        out["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    except Exception as exc:  # recorded, not fatal
        out["cuda"] = f"{type(exc).__name__}: {exc}"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--op-timings", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overlap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.op_timings:
        print(json.dumps(_op_timings()))
        return 0
    if args.overlap:
        print(json.dumps(_overlap()))
        return 0
    gpus, why = device()
    if not gpus:
        print(f"gpu-check: {why}", file=sys.stderr)
        return NO_DEVICE

    def log(message):
        print(f"gpu-check: {message}", file=sys.stderr, flush=True)

    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"device": [g.__dict__ for g in gpus], "versions": versions()}
    report["gpu_tests"] = _timed_part("gpu tests", lambda: gpu_tests(150), log)
    report["operations"] = _timed_part("operations cold and warm",
                                       lambda: op_timings(150), log)
    report["end_to_end"] = _timed_part("service end to end", end_to_end, log)
    with tempfile.TemporaryDirectory() as bench_out:
        report["bench"] = _timed_part("bench sections",
                                      lambda: bench_sections(Path(bench_out), 150), log)
    report["overlap"] = _timed_part("slab overlap", lambda: overlap(90), log)
    report["wall_seconds"] = time.monotonic() - started
    path = args.out / f"{time.strftime('%Y%m%d-%H%M%S')}-gpu-check.json"
    path.write_text(json.dumps(report, indent=1, default=str))
    log(f"wrote {path}")
    ok = all(report[k].get("ok", True) for k in ("gpu_tests", "operations", "end_to_end",
                                                 "bench", "overlap"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

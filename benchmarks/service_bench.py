"""Service sections: end-to-end processing through the real server and Dask cluster,
the transport ceiling (a raw gRPC streaming echo), store upload/download, concurrent
throughput and latency, and scaling from one worker to two.

Servers run as ``medcompute serve`` in their own processes, as in production, so that
the harness's client threads do not share the server's interpreter.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
from common import Sizes, measure, ratio, wait_for_idle
from echo import EchoClient, EchoServer

from medcompute import kernels as K
from medcompute.client import Client

SERVICE_OPS = ["gaussian:sigma=2"]
SIGMA = 2.0


class Served:
    """``medcompute serve`` on port 0 in its own process; the context gives its address."""

    def __init__(self, *, workers: int | None = None, split_mb: float | None = None,
                 gpu_workers: int = 0):
        self.tmp = tempfile.TemporaryDirectory(prefix="medcompute-bench-")
        self.args = ["serve", "--address", "127.0.0.1:0", "--data-dir", self.tmp.name,
                     "--gpu-workers", str(gpu_workers), "--log-level", "warning"]
        if workers is not None:
            self.args += ["--workers", str(workers)]
        if split_mb is not None:
            self.args += ["--split-mb", str(split_mb)]
        self.workers = workers

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __enter__(self) -> str:
        self.log = Path(self.tmp.name) / "serve.log"
        script = Path(sys.executable).parent / "medcompute"
        command = [str(script)] if script.exists() else [
            sys.executable, "-c", "import sys; from medcompute.client.cli import main; "
            "sys.exit(main())"]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(command + self.args, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and self.proc.poll() is None:
            if match := re.search(r"medcompute serving on (\S+)", self.log.read_text()):
                return match.group(1)
            time.sleep(0.2)
        self.proc.kill()
        raise RuntimeError("the server did not start:\n" + self.log.read_text()[-4000:])

    def __exit__(self, *exc) -> None:
        try:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        finally:
            self.tmp.cleanup()


def _volume(shape, seed=1):
    return np.random.default_rng(seed).integers(-1000, 3000, size=shape).astype(np.int16)


def _header_facts(result) -> dict:
    header = result.header
    facts = {"compute_seconds": result.usage.get("compute_seconds"),
             "wall_seconds": result.usage.get("wall_seconds")}
    for name in ("slabs", "workers", "backend", "device"):
        if name in header.DESCRIPTOR.fields_by_name:
            value = getattr(header, name)
            facts[name] = value if isinstance(value, (int, float, str)) else list(value)
    return facts


# --- end to end -------------------------------------------------------------------


def end_to_end(address: str, echo_address: str, sizes: Sizes, log) -> dict:
    """The volume through the service (over the client's shared memory, its default with
    a server on its host, and over gRPC chunks) against the same kernel in-process,
    in-process scipy.ndimage and the raw echo of the same bytes."""
    volume = _volume(sizes.volume_shape)
    out_bytes = volume.size * 4  # float32 result
    with Client(address, timeout=600) as client:
        result = client.process(volume, SERVICE_OPS, device="cpu")  # warm-up
        facts = _header_facts(result)
        service = measure(lambda: client.process(volume, SERVICE_OPS, device="cpu"),
                          repeats=sizes.service_repeats, slow_repeats=sizes.service_repeats)
        grpc = measure(lambda: client.process(volume, SERVICE_OPS, device="cpu",
                                              shared_memory=False),
                       repeats=sizes.service_repeats, slow_repeats=sizes.service_repeats)
    kernel = measure(lambda: K.saturating_cast(K.gaussian(volume, SIGMA), np.float32),
                     repeats=sizes.repeats, slow_repeats=sizes.slow_repeats)
    scipy = measure(lambda: ndi.gaussian_filter(volume.astype(np.float32), SIGMA,
                                                mode="nearest"),
                    repeats=sizes.slow_repeats, slow_repeats=sizes.slow_repeats)
    with EchoClient(echo_address) as echo:
        echo_t = measure(lambda: echo.echo(volume, out_bytes),
                         repeats=sizes.service_repeats, slow_repeats=sizes.service_repeats)
    budget = kernel["seconds"] + 1.3 * echo_t["seconds"]
    out = {
        "shape": list(volume.shape), "dtype": "int16", "ops": SERVICE_OPS,
        "upload_bytes": volume.nbytes, "download_bytes": out_bytes,
        "service": service, "service_facts": facts, "service_grpc": grpc,
        "speedup_vs_scipy_grpc": ratio(scipy, grpc),
        "inprocess_kernel": {**kernel, "threads": K.cpu_threads()},
        "inprocess_scipy": scipy, "echo": echo_t,
        "budget_seconds": budget,
        "service_over_budget": service["seconds"] / budget,
        "speedup_vs_scipy": ratio(scipy, service),
        "overhead_seconds": service["seconds"] - kernel["seconds"],
        "overhead_over_echo": (service["seconds"] - kernel["seconds"]) / echo_t["seconds"],
    }
    log(f"service e2e {service['seconds']:.3f} s (over gRPC {grpc['seconds']:.3f} s); kernel "
        f"{kernel['seconds']:.3f} s; echo {echo_t['seconds']:.3f} s; budget {budget:.3f} s; "
        f"scipy {scipy['seconds']:.3f} s")
    return out


# --- store ----------------------------------------------------------------------


def store_available() -> str | None:
    """None when the store API is there; else why not."""
    try:
        from medcompute.proto.v1 import store_pb2
    except ImportError as exc:
        return f"no store API in this build (medcompute.proto.v1.store_pb2: {exc})"
    service = store_pb2.DESCRIPTOR.services_by_name.get("StoreService")
    if service is None or service.methods_by_name.get("Register") is None:
        return "the store API has no StoreService.Register RPC in this build"
    try:
        from medcompute.client.store import StoreClient  # noqa: F401
    except ImportError as exc:
        return f"no store client in this build: {exc}"
    return None


def store(address: str, echo_address: str, sizes: Sizes, log) -> dict:
    """Register (upload) and Get (download) of the volume against the echo ceiling."""
    why = store_available()
    if why is not None:
        return {"available": False, "reason": why}
    from medcompute.client.store import StoreClient

    volume = _volume(sizes.volume_shape, seed=5)
    ids = []
    try:
        with StoreClient(address, timeout=600) as s:
            def register():
                image = s.register(volume)
                ids.append(getattr(image, "image_id", image))

            upload = measure(register, repeats=sizes.service_repeats,
                             slow_repeats=sizes.service_repeats)
            image_id = ids[-1]
            download = measure(lambda: s.get(image_id), repeats=sizes.service_repeats,
                               slow_repeats=sizes.service_repeats)
            for i in ids:
                try:
                    s.delete(i)
                except Exception:  # clean-up only
                    pass
    except Exception as exc:  # the store is being built: report what failed, not zero
        return {"available": False, "reason": f"the store calls failed: {exc!r}"}
    with EchoClient(echo_address) as echo:
        echo_up = measure(lambda: echo.echo(volume, 0), repeats=sizes.service_repeats,
                          slow_repeats=sizes.service_repeats)
        echo_down = measure(lambda: echo.echo(b"", volume.nbytes),
                            repeats=sizes.service_repeats, slow_repeats=sizes.service_repeats)
    mb = volume.nbytes / 1e6
    out = {
        "available": True, "bytes": volume.nbytes,
        "upload": {**upload, "mb_per_s": mb / upload["seconds"]},
        "download": {**download, "mb_per_s": mb / download["seconds"]},
        "echo_upload": {**echo_up, "mb_per_s": mb / echo_up["seconds"]},
        "echo_download": {**echo_down, "mb_per_s": mb / echo_down["seconds"]},
    }
    out["upload_fraction_of_echo"] = ratio(echo_up, upload)
    out["download_fraction_of_echo"] = ratio(echo_down, download)
    log(f"store upload {out['upload']['mb_per_s']:.0f} MB/s "
        f"({out['upload_fraction_of_echo']:.0%} of echo), download "
        f"{out['download']['mb_per_s']:.0f} MB/s ({out['download_fraction_of_echo']:.0%})")
    return out


# --- throughput -----------------------------------------------------------------


def _percentiles(latencies: list[float]) -> dict:
    a = np.asarray(latencies)
    return {f"p{q}_ms": float(np.percentile(a, q) * 1e3) for q in (50, 95, 99)}


def _server_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) the server process has used so far: its gRPC, its
    catalog, its Dask client and the embedded scheduler, not its worker processes."""
    if pid is None:
        return None
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _per_image_ms(before: float | None, after: float | None, images: int) -> float | None:
    return None if before is None or after is None else (after - before) / images * 1e3


def _machine_cpu(pid: int | None) -> dict | None:
    """CPU seconds so far of this harness process (the clients), the server process and
    its worker processes (the Dask workers of the embedded cluster), each summed."""
    if pid is None:
        return None
    import psutil

    server = psutil.Process(pid)
    workers = 0.0
    for child in server.children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:        # gone meanwhile (a resource tracker)
            continue
        workers += t.user + t.system
    t = server.cpu_times()
    return {"client": time.process_time(), "server": t.user + t.system, "workers": workers}


def _cpu_split(before: dict | None, after: dict | None, images: int, cores: int,
               allowed_per_s: float) -> dict | None:
    """Milliseconds of CPU per image in each process, their sum, and what a rate of
    ``allowed_per_s`` images/s leaves per image on ``cores`` cores."""
    if before is None or after is None:
        return None
    split = {f"{k}_ms": (after[k] - before[k]) / images * 1e3 for k in before}
    split["total_ms"] = sum(split.values())
    split["cores"] = cores
    split["allowed_ms_at_target"] = cores / allowed_per_s * 1e3
    return split


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def transport_ceiling(echo_address: str, image: np.ndarray, n: int, out_itemsize: int,
                      sizes: Sizes) -> dict:
    """The raw gRPC echo of a batch's bytes (``n`` images in, ``n`` float32 results out):
    the images/s a service that did nothing but move them would reach."""
    payload = np.concatenate([image.ravel()] * n)
    reply = n * image.size * out_itemsize
    with EchoClient(echo_address) as echo:
        echo.echo(payload, reply)                              # warm-up
        t = measure(lambda: echo.echo(payload, reply), repeats=max(1, sizes.service_repeats),
                    slow_repeats=1)
    return {**t, "images": n, "bytes_in": payload.nbytes, "bytes_out": reply,
            "images_per_s": n / t["seconds"]}


def batch(address: str, pool: list[np.ndarray], n: int, pid: int | None, sizes: Sizes,
          scipy_per_s: float, shared_memory: bool = False) -> dict:
    """``n`` slices as one batch request (Client.process_many), over gRPC chunks or (a
    same-host client) the client's shared-memory region: images/s against the in-process
    scipy loop, and the server's CPU per image."""
    images = [pool[i % len(pool)] for i in range(n)]
    calls = [0]
    with Client(address, timeout=600) as client:
        def run():
            calls[0] += 1
            got = sum(1 for item in client.process_many(images, SERVICE_OPS, device="cpu",
                                                        shared_memory=shared_memory)
                      if item.ok)
            if got != n:
                raise RuntimeError(f"{n - got} of the {n} batch images failed")
        run()                                      # warm-up
        calls[0] = 0
        before, cpu_before = _server_cpu(pid), _machine_cpu(pid)
        t = measure(run, repeats=max(1, sizes.service_repeats), slow_repeats=1)
        after, cpu_after = _server_cpu(pid), _machine_cpu(pid)
    per_s = n / t["seconds"]
    return {**t, "images": n, "transport": "shared memory" if shared_memory else "gRPC chunks",
            "images_per_s": per_s, "ratio_vs_scipy_loop": per_s / scipy_per_s,
            "server_cpu_ms_per_image": _per_image_ms(before, after, n * calls[0]),
            "cpu_per_image": _cpu_split(cpu_before, cpu_after, n * calls[0], _cores(),
                                        4 * scipy_per_s)}


def throughput(address: str, sizes: Sizes, log, pid: int | None = None,
               echo_address: str | None = None) -> dict:
    """Many slices from 1..16 concurrent clients: images/s and latency percentiles,
    against an in-process scipy.ndimage loop (and the in-process kernel loop); the same
    slices as one batch request; the server process's CPU per job, and the CPU of every
    process (clients, server, workers) per image; the raw echo of the batch's bytes (what
    the transport alone allows)."""
    rng = np.random.default_rng(7)
    pool = [rng.integers(-1000, 3000, size=sizes.slice_shape).astype(np.int16)
            for _ in range(32)]
    n_loop = max(sizes.min_images, 32)

    def loop(fn):
        def run():
            for i in range(n_loop):
                fn(pool[i % len(pool)])
        t = measure(run, repeats=max(1, sizes.service_repeats), slow_repeats=1)
        return {**t, "images": n_loop, "images_per_s": n_loop / t["seconds"]}

    scipy = loop(lambda x: ndi.gaussian_filter(x.astype(np.float32), SIGMA, mode="nearest"))
    kernel = loop(lambda x: K.gaussian(x, SIGMA))
    levels = []
    for c in sizes.concurrency:
        level = _level(address, c, max(sizes.min_images, c * sizes.images_per_client), pool,
                       pid, allowed_per_s=2 * scipy["images_per_s"])
        if "error" not in level:
            level["ratio_vs_scipy_loop"] = level["images_per_s"] / scipy["images_per_s"]
            cpu = level.get("server_cpu_ms_per_job")
            log(f"throughput c={c:2d}: {level['images_per_s']:7.1f} images/s "
                f"({level['ratio_vs_scipy_loop']:.2f}x scipy loop), p50 {level['p50_ms']:.1f} "
                f"p95 {level['p95_ms']:.1f} p99 {level['p99_ms']:.1f} ms"
                + (f", server CPU {cpu:.1f} ms/job" if cpu is not None else ""))
        else:
            log(f"throughput c={c:2d}: failed: {level['error']}")
        levels.append(level)
    measured = [lv for lv in levels if "images_per_s" in lv]
    best = max(measured, key=lambda lv: lv["images_per_s"]) if measured else None
    batched = batch(address, pool, sizes.batch_images, pid, sizes, scipy["images_per_s"])
    log(f"batch of {batched['images']}: {batched['images_per_s']:.1f} images/s "
        f"({batched['ratio_vs_scipy_loop']:.2f}x scipy loop)"
        + (f", server CPU {batched['server_cpu_ms_per_image']:.1f} ms/image"
           if batched.get("server_cpu_ms_per_image") is not None else ""))
    shared = batch(address, pool, sizes.batch_images, pid, sizes, scipy["images_per_s"],
                   shared_memory=True)
    log(f"batch of {shared['images']} over shared memory: {shared['images_per_s']:.1f} "
        f"images/s ({shared['ratio_vs_scipy_loop']:.2f}x scipy loop)"
        + (f", server CPU {shared['server_cpu_ms_per_image']:.2f} ms/image"
           if shared.get("server_cpu_ms_per_image") is not None else ""))
    split = batched.get("cpu_per_image")
    if split:
        log(f"batch CPU per image: clients {split['client_ms']:.1f}, server "
            f"{split['server_ms']:.1f}, workers {split['workers_ms']:.1f} ms; total "
            f"{split['total_ms']:.1f} ms on {split['cores']} cores, where 4x the scipy loop "
            f"leaves {split['allowed_ms_at_target']:.1f} ms")
    ceiling = None
    if echo_address is not None:
        ceiling = transport_ceiling(echo_address, pool[0], sizes.batch_images, 4, sizes)
        ceiling["ratio_vs_scipy_loop"] = ceiling["images_per_s"] / scipy["images_per_s"]
        batched["fraction_of_transport_ceiling"] = (batched["images_per_s"]
                                                    / ceiling["images_per_s"])
        log(f"transport ceiling (raw echo of the batch's bytes): "
            f"{ceiling['images_per_s']:.1f} images/s ({ceiling['ratio_vs_scipy_loop']:.2f}x "
            f"scipy loop); the batch reached {batched['fraction_of_transport_ceiling']:.0%}")
    at8 = next((lv for lv in measured if lv["concurrency"] == 8), None)
    return {"shape": list(sizes.slice_shape), "ops": SERVICE_OPS, "levels": levels,
            "transport_ceiling": ceiling,
            "scipy_loop": scipy, "kernel_loop": kernel,
            "best": best, "best_ratio_vs_scipy_loop": best["ratio_vs_scipy_loop"] if best
            else None, "batch": batched, "batch_shared_memory": shared,
            "server_cpu_ms_per_job": (at8 or best or {}).get("server_cpu_ms_per_job")}


def _level(address: str, c: int, total: int, pool: list[np.ndarray],
           pid: int | None = None, allowed_per_s: float = 0.0) -> dict:
    """``total`` images from ``c`` concurrent clients, each on its own connection; with the
    server's ``pid``, its CPU per job over the timed part, and every process's."""
    clients = [Client(address, timeout=120) for _ in range(c)]
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(k: int, count: int, record: bool = True) -> None:
        mine = []
        try:
            for i in range(count):
                image = pool[(k * 7 + i) % len(pool)]
                t0 = time.perf_counter()
                clients[k].process(image, SERVICE_OPS, device="cpu")
                mine.append(time.perf_counter() - t0)
        except BaseException as exc:  # reported in the level
            errors.append(exc)
        if record:
            with lock:
                latencies.extend(mine)

    share = [total // c + (1 if k < total % c else 0) for k in range(c)]
    try:
        _run_threads(c, lambda k: work(k, 1, record=False))  # connections and caches warm
        before, cpu_before = _server_cpu(pid), _machine_cpu(pid)
        t0 = time.perf_counter()
        _run_threads(c, lambda k: work(k, share[k]))
        wall = time.perf_counter() - t0
        after, cpu_after = _server_cpu(pid), _machine_cpu(pid)
    finally:
        for client in clients:
            client.close()
    if errors:
        return {"concurrency": c, "images": total, "error": repr(errors[0])}
    return {"concurrency": c, "images": total, "seconds": wall, "images_per_s": total / wall,
            **_percentiles(latencies),
            "server_cpu_ms_per_job": _per_image_ms(before, after, total),
            "cpu_per_image": _cpu_split(cpu_before, cpu_after, total, _cores(),
                                        allowed_per_s) if allowed_per_s else None}


def _run_threads(n: int, fn) -> None:
    threads = [threading.Thread(target=fn, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# --- scaling ------------------------------------------------------------------


def scaling(servers: dict[int, str], sizes: Sizes, log) -> dict:
    """The same large volume through a server with 1 worker and one with 2: end to end,
    and the server's own wall time for the job (its usage record), which leaves out
    the transfer of the volume and the result (that does not scale with workers)."""
    volume = _volume(sizes.scaling_shape, seed=9)
    out: dict = {"shape": list(volume.shape), "ops": SERVICE_OPS}
    for workers, address in sorted(servers.items()):
        with Client(address, timeout=900) as client:
            result = client.process(volume, SERVICE_OPS, device="cpu")  # warm-up
            usage: list[dict] = []

            def call(client=client, usage=usage):
                usage.append(client.process(volume, SERVICE_OPS, device="cpu").usage)

            t = measure(call, repeats=sizes.service_repeats, slow_repeats=sizes.service_repeats)
            row = {**t, **_header_facts(result)}
            for key in ("compute_seconds", "wall_seconds"):
                values = [u[key] for u in usage if u.get(key) is not None]
                row[f"{key}_median"] = statistics.median(values) if values else None
            out[f"workers_{workers}"] = row
            log(f"scaling workers={workers}: {t['seconds']:.3f} s end to end, server wall "
                f"{row['wall_seconds_median']} s")
    one, two = out.get("workers_1"), out.get("workers_2")
    out["speedup"] = ratio(one, two) if one and two else None
    if one and two and one.get("wall_seconds_median") and two.get("wall_seconds_median"):
        out["speedup_server_wall"] = one["wall_seconds_median"] / two["wall_seconds_median"]
    else:
        out["speedup_server_wall"] = None
    return out


def _section(name: str, log, fn, *args) -> dict:
    try:
        return fn(*args)
    except Exception as exc:  # one section failing leaves the others their figures
        import traceback

        log(f"{name}: failed: {exc!r}")
        return {"available": False, "reason": f"failed: {exc!r}",
                "traceback": traceback.format_exc()}


def run_all(sizes: Sizes, sections: set[str], log, wait_idle: float = 0.0) -> dict:
    """Start the servers and the echo once; run the asked-for sections (each after
    waiting up to ``wait_idle`` seconds for the other processes to go quiet)."""
    results: dict = {}

    def quiet() -> None:
        if wait_idle:
            wait_for_idle(wait_idle)

    cores = _cores()
    with EchoServer() as echo_address:
        # The main server has the default shape: one worker per core.
        main = Served(split_mb=sizes.split_mb)
        with main as address:
            if "service" in sections:
                quiet()
                results["service"] = _section("service", log, end_to_end, address,
                                              echo_address, sizes, log)
            if "store" in sections:
                quiet()
                results["store"] = _section("store", log, store, address, echo_address,
                                            sizes, log)
            if "throughput" in sections:
                quiet()
                results["throughput"] = _section("throughput", log, throughput, address,
                                                 sizes, log, main.pid, echo_address)
            if "scaling" in sections:
                quiet()
                with Served(workers=1, split_mb=sizes.split_mb) as one:
                    if cores == 2:
                        results["scaling"] = _section("scaling", log, scaling,
                                                      {1: one, 2: address}, sizes, log)
                    else:
                        with Served(workers=2, split_mb=sizes.split_mb) as two:
                            results["scaling"] = _section("scaling", log, scaling,
                                                          {1: one, 2: two}, sizes, log)
    return results

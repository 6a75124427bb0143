"""What every section of the harness shares: sizes per mode, timing, absent figures,
and a description of the machine the figures were taken on."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    """Array sizes, repeats and loads of one mode of the harness."""

    name: str
    slice_shape: tuple[int, int]
    volume_shape: tuple[int, int, int]
    repeats: int                  # timed calls of a fast operation, after a warm-up
    slow_repeats: int             # timed calls of an operation slower than SLOW_SECONDS
    service_repeats: int
    concurrency: tuple[int, ...]
    images_per_client: int        # throughput: images each client sends per level
    min_images: int               # ... and at least this many per level in all
    scaling_shape: tuple[int, int, int]
    split_mb: float | None        # the servers' --split-mb (None: the server's default)
    sitk_volume: bool = True      # time SimpleITK on the volume too (slow: up to 12 s a call)
    batch_images: int = 200       # throughput: slices in one batch request (process_many)
    notes: tuple[str, ...] = field(default=())


MODES = {
    "full": Sizes("full", (512, 512), (128, 512, 512), repeats=7, slow_repeats=3,
                  service_repeats=5, concurrency=(1, 2, 4, 8, 16), images_per_client=24,
                  min_images=160, scaling_shape=(256, 512, 512), split_mb=None),
    "quick": Sizes("quick", (512, 512), (128, 512, 512), repeats=3, slow_repeats=1,
                   service_repeats=3, concurrency=(1, 2, 4, 8, 16), images_per_client=8,
                   min_images=64, scaling_shape=(128, 512, 512), split_mb=None,
                   sitk_volume=False,
                   notes=("quick: operations slower than 1 s timed once after a warm-up "
                          "on the slice; SimpleITK timed on the slice only",)),
    "tiny": Sizes("tiny", (64, 64), (8, 64, 64), repeats=2, slow_repeats=1,
                  service_repeats=1, concurrency=(1, 2), images_per_client=2,
                  min_images=4, scaling_shape=(16, 64, 64), split_mb=0.05, batch_images=8,
                  notes=("tiny: a smoke run of every section on small arrays; its figures "
                         "say nothing about speed",)),
}

#: A first full-size call slower than this counts as a timed call (the operation was
#: already warmed up on the slice); faster ones are discarded as the warm-up.
SLOW_SECONDS = 1.0


def absent(reason: str) -> dict:
    """A figure that could not be measured: null with the reason, never zero."""
    return {"seconds": None, "reason": reason}


def timed(fn: Callable[[], object], sync: Callable[[], None] | None = None) -> float:
    t0 = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - t0


def measure(fn: Callable[[], object], *, repeats: int, slow_repeats: int = 1,
            sync: Callable[[], None] | None = None, warmup: bool = True,
            in_process: bool = False) -> dict:
    """Median wall seconds of ``fn`` after a warm-up call.

    ``sync`` (the device's synchronize) runs before each clock stops. A warm-up call
    that takes longer than SLOW_SECONDS is kept as the first timed call and only
    ``slow_repeats`` calls are made in all. ``in_process``: ``fn`` runs only in this
    process, so CPU time used meanwhile by other processes is recorded as
    ``background_cores`` (cores' worth taken by the rest of the machine).
    """
    times = []
    if warmup:
        first = timed(fn, sync)
        if first >= SLOW_SECONDS:
            times.append(first)
            repeats = slow_repeats
    start = _usage() if in_process else None
    while len(times) < max(1, repeats):
        times.append(timed(fn, sync))
    out = {"seconds": statistics.median(times), "min": min(times), "max": max(times),
           "runs": len(times)}
    if start is not None:
        out["background_cores"] = _background(start, _usage())
    return out


def _usage() -> tuple[float, float, float] | None:
    """(machine busy CPU s, this process's CPU s, wall s), or None without /proc/stat."""
    try:
        busy, _ = _cpu_jiffies()
    except OSError:
        return None
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system, time.perf_counter()


def _background(a, b) -> float | None:
    # The kernel counts CPU time in ticks (10 ms): shorter spans say nothing.
    if a is None or b is None or b[2] - a[2] < _BACKGROUND_MIN_SECONDS:
        return None
    return max(0.0, ((b[0] - a[0]) - (b[1] - a[1])) / (b[2] - a[2]))


_BACKGROUND_MIN_SECONDS = 0.25


def ratio(baseline: dict, ours: dict) -> float | None:
    """baseline seconds / our seconds; None when either is absent."""
    if not baseline or not ours or baseline.get("seconds") is None or not ours.get("seconds"):
        return None
    return baseline["seconds"] / ours["seconds"]


def _cpu_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def busy_fraction(seconds: float = 1.0) -> float | None:
    """Fraction of all cores busy over ``seconds`` (other processes, when the harness
    is idle); None where /proc/stat does not exist."""
    try:
        b0, t0 = _cpu_jiffies()
        time.sleep(seconds)
        b1, t1 = _cpu_jiffies()
    except OSError:
        return None
    return (b1 - b0) / max(1, t1 - t0)


def wait_for_idle(limit: float, threshold: float = 0.10) -> dict:
    """Wait (up to ``limit`` s) until other processes use under ``threshold`` of the cores."""
    start = time.monotonic()
    busy = busy_fraction(1.0)
    while busy is not None and busy > threshold and time.monotonic() - start < limit:
        busy = busy_fraction(2.0)
    return {"waited_seconds": round(time.monotonic() - start, 1), "busy_fraction": busy}


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("medcompute", "numpy", "scipy", "opencv-python-headless", "SimpleITK",
                 "grpcio", "dask", "distributed", "cupy-cuda12x", "matplotlib"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def machine() -> dict:
    """The machine and software the figures were taken on."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = None
    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "memory_gib": round(mem_kib / (1 << 20), 1) if mem_kib else None,
        "platform": platform.platform(),
        "versions": _versions(),
        "commit": _git_commit(),
    }

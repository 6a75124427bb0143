"""Dispatch figures: slab splitting on 1 and 2 workers, and batching of 512x512 slices.

    python benchmarks/dispatch.py [--quick]

Each figure is a ratio of two runs made here, one after the other, on this machine:
- split: the same large volume and pipeline through a server with 1 CPU worker and
  through one with 2 (the volume is split into slabs either way);
- batching: many 512x512 slices from concurrent clients through a server that batches
  small jobs and through one that sends each job as its own Dask task.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from medcompute.client import Client


class Served:
    """`medcompute serve` in its own process (as in production: no GIL shared with clients)."""

    def __init__(self, *args: str):
        self.tmp = tempfile.TemporaryDirectory()
        self.args = ["--address", "127.0.0.1:0", "--data-dir", self.tmp.name,
                     "--gpu-workers", "0", "--log-level", "warning", *args]

    def __enter__(self) -> str:
        log = Path(self.tmp.name) / "serve.log"
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "medcompute"), "serve", *self.args],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            if m := re.search(r"medcompute serving on (\S+)", log.read_text()):
                return m.group(1)
            time.sleep(0.2)
        self.proc.kill()
        raise RuntimeError("the server did not start:\n" + log.read_text())

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        self.tmp.cleanup()


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def split(volume: np.ndarray, ops: list[str], repeats: int) -> dict:
    out = {}
    for workers in (1, 2):
        with Served("--workers", str(workers), "--split-mb", "16") as address, \
                Client(address, timeout=600) as c:
            slabs = c.process(volume, ops, device="cpu").header.slabs
            out[workers] = {"seconds": _median_time(
                lambda: c.process(volume, ops, device="cpu"), repeats), "slabs": slabs}
    return {"volume": list(volume.shape), "ops": ops, "one_worker": out[1],
            "two_workers": out[2], "speedup": out[1]["seconds"] / out[2]["seconds"]}


def _throughput(address: str, images: list, clients: int) -> float:
    """Seconds for ``clients`` concurrent clients to process all ``images`` between them."""
    groups = [images[i::clients] for i in range(clients)]
    connections = [Client(address, timeout=120) for _ in range(clients)]

    def work(k: int) -> None:
        for image in groups[k]:
            connections[k].process(image, ["gaussian:sigma=1"], device="cpu")

    try:
        with ThreadPoolExecutor(clients) as pool:
            t0 = time.perf_counter()
            list(pool.map(work, range(clients)))
            return time.perf_counter() - t0
    finally:
        for c in connections:
            c.close()


def batching(n_images: int, clients: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 4000, (512, 512), dtype=np.int16) for _ in range(n_images)]
    out = {}
    for name, batch_mb in (("per_image_tasks", "0"), ("batched", "4")):
        with Served("--workers", "2", "--batch-mb", batch_mb) as address:
            _throughput(address, images[:clients * 2], clients)  # warm-up
            seconds = statistics.median(
                _throughput(address, images, clients) for _ in range(repeats))
        out[name] = {"seconds": seconds, "images_per_second": n_images / seconds}
    out["gain"] = out["batched"]["images_per_second"] / out["per_image_tasks"]["images_per_second"]
    out.update(images=n_images, clients=clients, shape=[512, 512])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller volume, fewer repeats")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    shape = (64, 512, 512) if args.quick else (128, 512, 512)
    volume = np.random.default_rng(1).integers(0, 4000, shape, dtype=np.int16)
    repeats = 2 if args.quick else 3
    figures = {
        "split": split(volume, ["gaussian:sigma=2"], repeats),
        "batching": batching(100 if args.quick else 200, 8, repeats),
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

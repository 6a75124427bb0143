"""Shared memory against gRPC chunks, roughly: 200 int16 512x512 slices, Gaussian sigma 2.

One run, alternating the ways three times and keeping each one's best: the in-process
scipy loop (the baseline), one batch request over gRPC chunks, one batch request through
the client's shared-memory region, the slices one by one over chunks, the slices one by
one through the region, and the memcpy ceiling of the region (each slice copied in and
its float32 result copied out).
A ``medcompute serve`` in its own process on this host, its default options unless
``--batch-delay`` is given.

    .venv/bin/python benchmarks/shm_bench.py [--slices 200] [--repeats 3] [--batch-delay MS]
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import shared_memory

import numpy as np
from scipy import ndimage
from service_bench import SERVICE_OPS, SIGMA, Served

from medcompute.client import Client


def _slices(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.normal(1000, 300, (512, 512)).astype(np.int16) for _ in range(n)]


def _scipy(slices) -> None:
    for s in slices:
        ndimage.gaussian_filter(s.astype(np.float32), SIGMA, mode="nearest")


def _memcpy(slices) -> None:
    region = shared_memory.SharedMemory(create=True, size=512 * 512 * 6)
    try:
        into = np.frombuffer(region.buf, np.int16, 512 * 512)
        out = np.frombuffer(region.buf, np.float32, 512 * 512, offset=512 * 512 * 2)
        for s in slices:
            into[:] = s.reshape(-1)
            out.copy()
        del into, out
    finally:
        region.close()
        region.unlink()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-delay", type=float, default=None,
                        help="the server's --batch-delay in ms (default: its own, 2); 0 "
                        "makes each call its own job, whose worker reads the region")
    args = parser.parse_args(argv)
    slices = _slices(args.slices)
    best: dict[str, float] = {}
    served = Served()
    if args.batch_delay is not None:
        served.args += ["--batch-delay", str(args.batch_delay)]
    with served as address, Client(address, timeout=600) as shm, \
            Client(address, timeout=600, shared_memory=False) as chunks:
        def batch(client):
            for item in client.process_many(slices, SERVICE_OPS, device="cpu"):
                if not item.ok:
                    raise RuntimeError(item.error)

        ways = {
            "scipy_loop": lambda: _scipy(slices),
            "batch_grpc": lambda: batch(chunks),
            "batch_shm": lambda: batch(shm),
            "one_by_one_grpc": lambda: [chunks.process(s, SERVICE_OPS, device="cpu")
                                        for s in slices],
            "one_by_one_shm": lambda: [shm.process(s, SERVICE_OPS, device="cpu")
                                       for s in slices],
            "memcpy_ceiling": lambda: _memcpy(slices),
        }
        for fn in ways.values():                     # warm-up (workers, region)
            fn()
        assert shm._arenas, "the client did not use shared memory"
        for _ in range(args.repeats):
            for name, fn in ways.items():
                t0 = time.perf_counter()
                fn()
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    base = best["scipy_loop"]
    report = {name: {"seconds": round(t, 3), "images_per_s": round(args.slices / t, 1),
                     "ratio_vs_scipy_loop": round(base / t, 2)} for name, t in best.items()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Usage records for the billing tests: built by hand, and stored as a finished job's."""

from __future__ import annotations

import asyncio

from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.states import Job, State

__all__ = ["DAY1", "DAY2", "record", "finish_usage"]

DAY1 = 1_793_491_200.0        # 2026-11-01 00:00 UTC
DAY2 = DAY1 + 86_400          # 2026-11-02


def record(job_id: str, *, subscriber="alice", operations=("gaussian",), finished_at=DAY1 + 60,
           state="SUCCEEDED", backend="numpy", device="cpu", compute=1.0, gpu=None, energy=None,
           platform_fault=False, fallback=False, images=1, voxels=1000, bytes_in=2000,
           bytes_out=4000, wall=2.0, queue=0.5) -> dict:
    r = {"job_id": job_id, "subscriber": subscriber, "operations": list(operations),
         "images": images, "voxels": voxels, "bytes_in": bytes_in, "bytes_out": bytes_out,
         "queue_seconds": queue, "compute_seconds": compute, "wall_seconds": wall,
         "backend": backend, "device": device, "fallback": fallback, "state": state,
         "created_at": finished_at - wall, "finished_at": finished_at,
         "platform_fault": platform_fault, "destination": ""}
    if gpu is not None:
        r["gpu_seconds"] = gpu
    if energy is not None:
        r["energy_joules"] = energy
    return r


def finish_usage(catalog: Catalog, r: dict) -> None:
    state = State(r["state"])
    job = Job(id=r["job_id"], subscriber=r["subscriber"], operations=tuple(r["operations"]),
              inputs=(), destination=r["subscriber"], device="auto", state=state,
              created_at=r["created_at"], finished_at=r["finished_at"],
              platform_fault=r["platform_fault"])
    assert asyncio.run(catalog.finish_job(job, r))

"""The server's health: whether it can run work (a Dask worker is alive) and whether it
can store (every location of the data directory is above its free-space reserve).

The watch decides; it publishes each change through a ``publish(name, serving)``
coroutine that the API layer hands over (api/health.py puts it on the standard gRPC
health service), so nothing here speaks grpc.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

__all__ = ["CATALOG_HEALTH_NAME", "GPU_HEALTH_NAME", "HEALTH_INTERVAL", "STORAGE_HEALTH_NAME",
           "Publish", "catalog_health_names", "watch_catalog", "watch_gpu", "watch_health",
           "watch_storage"]

log = logging.getLogger(__name__)

#: Seconds between looks at the workers and the free space.
HEALTH_INTERVAL = 1.0
#: The health name of the data directory's storage: not serving while a location is below
#: its free-space reserve (writes refused, reads still served).
STORAGE_HEALTH_NAME = "medcompute.storage"

#: The health name of the catalog: not serving while it cannot be read (a PostgreSQL
#: that is away); ``medcompute.catalog.<backend>`` (sqlite, postgresql) says the same
#: and names the backend in use.
CATALOG_HEALTH_NAME = "medcompute.catalog"

#: The health name of the GPU workers' kernels: not serving while a GPU worker could not
#: compile its common kernels at start (no NVRTC, a broken device): its jobs would all
#: fall back to CPU. Published only on a cluster with GPU workers.
GPU_HEALTH_NAME = "medcompute.gpu"

#: ``await publish(name, serving)``: tell the health service that ``name`` now serves or
#: not.
Publish = Callable[[str, bool], Awaitable[None]]


async def watch_storage(space, publish: Publish, was: bool | None) -> bool:
    """Look at the free space of ``space`` (a FreeSpaceReserve) once; publish
    :data:`STORAGE_HEALTH_NAME` when it changed from ``was``; return whether it serves."""
    try:
        below = await asyncio.to_thread(space.below)
    except OSError as exc:
        log.warning("health: cannot read the data directory's free space (%s)", exc)
        below = ["catalog"]
    ok = not below
    if ok != was:
        await publish(STORAGE_HEALTH_NAME, ok)
        if ok:
            log.info("health: storage SERVING (every location above its free-space reserve)")
        else:
            log.warning("health: storage NOT_SERVING: %s below the free-space reserve "
                        "(--min-free %s); writes are refused until space is freed",
                        ", ".join(below), space.min_free)
    return ok


def catalog_health_names(kind: str) -> tuple[str, str]:
    """The health names of a catalog of backend ``kind``."""
    return CATALOG_HEALTH_NAME, f"{CATALOG_HEALTH_NAME}.{kind}"


async def watch_catalog(db, publish: Publish, was: bool | None) -> bool:
    """Read the catalog ``db`` (a storage.db.Database) once; publish its health names
    when that changed from ``was``; return whether it serves."""
    try:
        await db.read(lambda tx: tx.execute("SELECT 1").fetchone())
        ok = True
    except Exception as exc:        # whatever stops a read makes the catalog unusable
        ok = False
        reason = exc
    if ok != was:
        for name in catalog_health_names(db.kind):
            await publish(name, ok)
        if ok:
            log.info("health: catalog SERVING (%s)", db.kind)
        else:
            log.warning("health: catalog NOT_SERVING (%s: %s)", db.kind,
                        type(reason).__name__)


async def watch_gpu(gpu_states, publish: Publish, was: bool | None) -> bool:
    """Look at the GPU workers' kernel warm-ups once (``await gpu_states()``: address ->
    kernel_cache.state()); publish :data:`GPU_HEALTH_NAME` when it changed from ``was``;
    return whether it serves."""
    try:
        states = await gpu_states()
    except Exception as exc:  # a worker going away mid-call: look again next time
        log.info("health: cannot read the GPU workers' kernel state (%s)", exc)
        return was
    failed = {a: s.get("error", "") for a, s in states.items() if s.get("state") == "failed"}
    ok = not failed
    if ok != was:
        await publish(GPU_HEALTH_NAME, ok)
        if ok:
            log.info("health: GPU SERVING (every GPU worker compiles its kernels)")
        else:
            log.error("health: GPU NOT_SERVING: %s cannot compile kernels (%s); its jobs run "
                      "on CPU", ", ".join(failed), "; ".join(sorted(set(failed.values()))))
    return ok


async def watch_health(dispatcher, publish: Publish, worker_services: Sequence[str],
                       metrics=None, space=None, interval: float = HEALTH_INTERVAL,
                       db=None, gpu_states=None) -> None:
    """Until cancelled: publish ``worker_services`` as serving while the dispatcher sees a
    Dask worker (and hand the worker counts to ``metrics``), the storage's health while
    ``space`` is given, the catalog's while ``db`` is, and the GPU's (:func:`watch_gpu`)
    while ``gpu_states`` is given and the cluster has GPU workers."""
    serving = storage = catalog = gpu_ok = None
    while True:
        if space is not None:
            storage = await watch_storage(space, publish, storage)
        if db is not None:
            catalog = await watch_catalog(db, publish, catalog)
        cpu, gpu = await dispatcher.worker_kinds()
        if gpu_states is not None and gpu:
            gpu_ok = await watch_gpu(gpu_states, publish, gpu_ok)
        if metrics is not None:
            metrics.set_workers(cpu, gpu)
        ok = cpu + gpu > 0
        if ok != serving:
            for name in worker_services:
                await publish(name, ok)
            log.info("health: %s", "SERVING" if ok else "NOT_SERVING (no Dask worker)")
            serving = ok
        await asyncio.sleep(interval)

"""The one owner of the ``distributed.Client``: where, how and what-if for every task.

Embedded: a ``LocalCluster`` of worker *processes* on loopback (one per core by
default). External: ``--scheduler tcp://HOST:PORT`` joins a running cluster.
Every job runs on a worker, never in the server process.
"""

from __future__ import annotations

import asyncio
import logging
import os

from medcompute.server.errors import Unavailable
from medcompute.server.tasks import TaskResult, TaskSpec, run_task, warm_up

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)


class Dispatcher:
    """Submits tasks to a Dask cluster and awaits them; cancelling the await cancels the task.

    Parameters
    ----------
    scheduler : str, optional
        Address of an external scheduler. None starts an embedded LocalCluster.
    n_workers : int, optional
        Worker processes of the embedded cluster; default one per core.
    """

    def __init__(self, *, scheduler: str | None = None, n_workers: int | None = None,
                 threads_per_worker: int = 1, memory_limit: str | int = "auto"):
        self.scheduler = scheduler
        self.n_workers = n_workers or os.cpu_count() or 1
        self.threads_per_worker = threads_per_worker
        self.memory_limit = memory_limit
        self.cluster = None
        self.client = None

    async def start(self) -> None:
        from distributed import Client, LocalCluster

        if self.scheduler:
            log.info("joining the Dask cluster at %s", self.scheduler)
            self.client = await Client(self.scheduler, asynchronous=True,
                                       direct_to_workers=True)
        else:
            self.cluster = await LocalCluster(
                n_workers=self.n_workers, threads_per_worker=self.threads_per_worker,
                processes=True, host="127.0.0.1", scheduler_port=0,
                # Its HTTP endpoints stay on loopback, on a free port.
                dashboard_address="127.0.0.1:0",
                memory_limit=self.memory_limit, asynchronous=True, silence_logs=logging.WARNING,
            )
            self.client = await Client(self.cluster, asynchronous=True, direct_to_workers=True)
            log.info("started a Dask LocalCluster at %s with %d worker processes",
                     self.cluster.scheduler_address, self.n_workers)
        await self.client.wait_for_workers(1)
        await self.client.run(warm_up)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self.cluster is not None:
            await self.cluster.close()

    @property
    def scheduler_address(self) -> str:
        return self.client.scheduler.address if self.client else ""

    async def worker_count(self, timeout: float = 5.0) -> int:
        """Workers the scheduler currently knows (0 when it is unreachable)."""
        if self.client is None or self.client.status != "running":
            return 0
        try:
            info = await asyncio.wait_for(self.client.scheduler.identity(), timeout)
        except (OSError, asyncio.TimeoutError):
            return 0
        return len(info.get("workers", {}))

    async def run(self, spec: TaskSpec) -> TaskResult:
        """Run one job's task; its exceptions are re-raised here, cancellation cancels it."""
        if self.client is None:
            raise Unavailable("the Dask cluster is not started")
        future = self.client.submit(run_task, spec, key=f"job-{spec.job_id}", pure=False)
        try:
            return await future
        except asyncio.CancelledError:
            await asyncio.shield(self.client.cancel([future], force=True))
            raise

"""``medcompute serve --processes N``: N server processes on one address.

The first process (the one started) runs the embedded Dask cluster, sweeps the store
and binds the address; it then starts N - 1 more server processes (spawned, so nothing
of its event loop or its threads is inherited) that bind the same address with
SO_REUSEPORT, so the kernel spreads the incoming connections over all of them. Every
process joins the same Dask scheduler and serves the same data directory: the one
SQLite catalog (WAL; jobs, usage, audit), the store, and the job folders, each with its
own spool folder and its own job leases (catalog.py), so a job of a process that dies
is taken over by the others as for separate servers. The limits (max_queue,
max_streams, ...) hold per process. Each process has its own Python event loop: gRPC,
the Dask client and the catalog's bookkeeping of one process no longer bound the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import signal

from medcompute.server.config import ServerConfig
from medcompute.server.errors import FailedPrecondition

__all__ = ["FrontEnds", "default_processes"]

log = logging.getLogger(__name__)

START_TIMEOUT = 120.0


def default_processes(cpus: int | None = None) -> int:
    """Server processes that suit a machine of ``cpus`` cores (default: this one's): one
    per four cores, at most 8; the rest of the cores are the Dask workers'."""
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, min(8, cpus // 4))


def _run(config: ServerConfig, ready, level: int) -> None:
    """The body of an extra server process."""
    from medcompute.server.app import serve

    logging.basicConfig(level=level,
                        format=f"%(asctime)s %(levelname)s [{config.spool_name}] %(name)s: "
                        "%(message)s")
    if level > logging.DEBUG:
        logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        asyncio.run(serve(config, ready))
    except KeyboardInterrupt:
        pass


class FrontEnds:
    """The extra server processes of one ``serve`` (none when ``processes`` is 1)."""

    def __init__(self, config: ServerConfig, address: str, scheduler: str):
        self.config = config
        self.address = address
        self.scheduler = scheduler
        self.procs: list = []

    def config_of(self, k: int) -> ServerConfig:
        """Process k's configuration: the same, on the bound address and the running
        cluster, with its own spool folder, and no metrics endpoint or DICOM node of its own
        (the first process is the DICOM node: its port, pushes and scheduled collects)."""
        return dataclasses.replace(
            self.config, address=self.address, scheduler=self.scheduler, processes=1,
            spool_name=f"p{k}", sweep_store=False, metrics_port=None, dicom_port=None)

    async def start(self) -> None:
        if self.config.processes <= 1:
            return
        context = multiprocessing.get_context("spawn")
        level = logging.getLogger().getEffectiveLevel()
        waits = []
        for k in range(1, self.config.processes):
            ready = context.Event()
            proc = context.Process(target=_run, args=(self.config_of(k), ready, level),
                                   name=f"medcompute-serve-p{k}")
            proc.start()
            self.procs.append(proc)
            waits.append((k, proc, ready))
        for k, proc, ready in waits:
            if not await asyncio.to_thread(ready.wait, START_TIMEOUT):
                raise FailedPrecondition(
                    f"server process {k} of {self.config.processes} did not start (exit "
                    f"status {proc.exitcode}); see its log above", "--processes")
        log.info("%d server processes serving on %s", self.config.processes, self.address)

    async def stop(self) -> None:
        """Stop the extra processes gracefully (SIGTERM), killing what does not stop."""
        for proc in self.procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            await asyncio.to_thread(proc.join, self.config.grace + 30)
            if proc.is_alive():
                log.warning("server process %s did not stop; killed", proc.name)
                proc.kill()
                await asyncio.to_thread(proc.join, 5)
        self.procs.clear()

"""``medcompute serve --processes N``: N server processes on one address.

The first process (the one started) checks that the address is free, runs the embedded
Dask cluster, sweeps the store and binds the address with SO_REUSEPORT; it then starts
N - 1 more server processes (spawned, so nothing of its event loop or its threads is
inherited) that bind the same address with SO_REUSEPORT (``joins_group``), so the kernel
spreads the incoming connections over all of them. Only they share it: any other server
started on the address, alone or as another group, finds it in use and stops (app.py). Every
process joins the same Dask scheduler and serves the same data directory: the one
SQLite catalog (WAL; jobs, usage, audit), the store, and the job folders, each with its
own spool folder and its own job leases (catalog.py), so a job of a process that dies
is taken over by the others as for separate servers. The limits (max_queue,
max_streams, ...) hold per process. Each process has its own Python event loop: gRPC,
the Dask client and the catalog's bookkeeping of one process no longer bound the others.

The first process watches the others: one that ends while the server is not stopping
(killed, crashed) is started again in its place, on its spool folder; one that keeps
ending (:data:`MAX_RESTARTS` times within :data:`RESTART_WINDOW` seconds) is left stopped,
with an error in the log, and the others serve on.
"""

from __future__ import annotations

import asyncio
import contextlib
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
#: Seconds between looks at the extra processes.
WATCH_INTERVAL = 1.0
#: A process that ends this many times within RESTART_WINDOW seconds is not started again.
MAX_RESTARTS = 5
RESTART_WINDOW = 300.0


def default_processes(cpus: int | None = None) -> int:
    """Server processes that suit a machine of ``cpus`` cores (default: this one's): one
    per four cores, at most 8; the rest of the cores are the Dask workers'."""
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, min(8, cpus // 4))


def _run(serve, config: ServerConfig, ready, level: int) -> None:
    """The body of an extra server process: ``serve(config, ready)``."""
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
    """The extra server processes of one ``serve`` (none when ``processes`` is 1); each
    runs the ``serve`` it is given."""

    def __init__(self, config: ServerConfig, address: str, scheduler: str, serve):
        self.config = config
        #: ``async serve(config, ready)``, the body of each process (app.serve): a
        #: module-level function, since the spawned processes import it by name.
        self.serve = serve
        self.address = address
        self.scheduler = scheduler
        self.procs: list = []
        #: Times each process k was started again, for the restart limit.
        self.restarts: dict[int, list[float]] = {}
        self._watcher: asyncio.Task | None = None
        self._stopping = False

    def config_of(self, k: int) -> ServerConfig:
        """Process k's configuration: the same, on the bound address and the running
        cluster, with its own spool folder, and no metrics endpoint or DICOM node of its own
        (the first process is the DICOM node: its port, pushes and scheduled collects;
        and the HTTP door)."""
        return dataclasses.replace(
            self.config, address=self.address, scheduler=self.scheduler, processes=1,
            joins_group=True, spool_name=f"p{k}", sweep_store=False, metrics_port=None,
            dicom_port=None, http_port=None)

    def _spawn(self, k: int):
        """Start process k; return it and the event it sets once it serves."""
        context = multiprocessing.get_context("spawn")
        level = logging.getLogger().getEffectiveLevel()
        ready = context.Event()
        proc = context.Process(target=_run, args=(self.serve, self.config_of(k), ready, level),
                               name=f"medcompute-serve-p{k}")
        proc.start()
        return proc, ready

    async def start(self) -> None:
        if self.config.processes <= 1:
            return
        waits = []
        for k in range(1, self.config.processes):
            proc, ready = self._spawn(k)
            self.procs.append(proc)
            waits.append((k, proc, ready))
        for k, proc, ready in waits:
            if not await asyncio.to_thread(ready.wait, START_TIMEOUT):
                raise FailedPrecondition(
                    f"server process {k} of {self.config.processes} did not start (exit "
                    f"status {proc.exitcode}); see its log above", "--processes")
        log.info("%d server processes serving on %s", self.config.processes, self.address)
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Start again, in its place, an extra process that ended by itself."""
        while not self._stopping:
            await asyncio.sleep(WATCH_INTERVAL)
            for index, proc in enumerate(list(self.procs)):
                if self._stopping or proc is None or proc.is_alive():
                    continue
                k = index + 1
                now = asyncio.get_running_loop().time()
                recent = [t for t in self.restarts.get(k, []) if now - t < RESTART_WINDOW]
                if len(recent) >= MAX_RESTARTS:
                    log.error("server process p%d ended again (exit status %s), %d times in "
                              "%.0f s; it is not started again, the other processes serve "
                              "on", k, proc.exitcode, len(recent), RESTART_WINDOW)
                    self.procs[index] = None
                    continue
                self.restarts[k] = [*recent, now]
                log.warning("server process p%d ended (exit status %s); starting it again",
                            k, proc.exitcode)
                fresh, ready = self._spawn(k)
                self.procs[index] = fresh
                if await self._serving(fresh, ready):
                    log.info("server process p%d serves again (pid %d)", k, fresh.pid)
                elif not self._stopping:
                    log.error("server process p%d did not start again (exit status %s)", k,
                              fresh.exitcode)

    async def _serving(self, proc, ready) -> bool:
        """Whether ``proc`` serves within START_TIMEOUT (looked at twice a second, so that
        a stop does not wait for it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while loop.time() < deadline and not self._stopping:
            if await asyncio.to_thread(ready.wait, 0.5):
                return True
            if not proc.is_alive():
                return False
        return False

    async def stop(self) -> None:
        """Stop the extra processes gracefully (SIGTERM), killing what does not stop."""
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        self.procs = [p for p in self.procs if p is not None]
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

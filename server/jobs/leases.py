"""The leases of a server's jobs: renewed while it runs them, taken over when they run out.

Every server of the data directory renews the leases of the jobs it runs (catalog.py),
stops the runs whose cancellation another server recorded, and takes over the jobs whose
lease has run out: the state machine runs again those whose inputs are on disk and fails
the others with the reason (never billed: the fault is the platform's). A job ends once,
whoever races. The same upkeep removes the results kept longer than the retention.
"""

from __future__ import annotations

import asyncio
import logging
import time

from medcompute.server.config import ServerConfig
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.effects import JobEffects
from medcompute.server.storage.space import storage_fault

__all__ = ["Leases"]

log = logging.getLogger(__name__)


class Leases:
    def __init__(self, config: ServerConfig, catalog: Catalog, service, effects: JobEffects):
        self.config = config
        self.catalog = catalog
        self.service = service
        self.effects = effects

    async def upkeep(self) -> None:
        """Renew, take over and expire, for as long as the server runs."""
        interval = max(0.2, self.catalog.lease_seconds / 3)
        last_recovery = last_expiry = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                if self.service.unrecorded:
                    await self.service.record_unrecorded()
                for job_id, reason in await self.catalog.renew():
                    task = self.effects.tasks.get(job_id)
                    if task is not None and job_id not in self.effects.cancel_reasons:
                        self.effects.cancel_reasons[job_id] = reason
                        task.cancel()
                now = time.monotonic()
                if now - last_recovery >= self.catalog.lease_seconds:
                    last_recovery = now
                    await self.recover()
                if now - last_expiry >= 3600:
                    last_expiry = now
                    await self.expire_results()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if storage_fault(exc) is not None:   # a full disk: retried each round
                    log.warning("job upkeep: the catalog cannot be written (%s); retrying", exc)
                else:
                    log.exception("job upkeep failed; retrying")

    async def recover(self) -> None:
        """Take over the jobs of servers that stopped (this one's earlier life included)."""
        for job in await self.catalog.orphans():
            attempts = await self.catalog.claim(job.id)
            if attempts is None:
                continue
            request = await self.catalog.request(job.id)
            event = jobs.TakenOver(
                time.time(), request["attempts"] if request else attempts,
                asynchronous=request is not None,
                bytes_in=request["bytes_in"] if request else 0, images=len(job.inputs))
            after, todo = jobs.handle(job, event)
            if after.state.terminal:
                log.warning("job %s: %s", job.id, after.error)
            else:
                log.info("job %s: taken over (%s), attempt %d", job.id, job.state.value,
                         event.attempts)
            await self.effects.apply(todo)

    async def expire_results(self, now: float | None = None) -> int:
        """Remove the files of jobs that ended more than the result retention ago."""
        now = time.time() if now is None else now
        removed = 0
        for job_id, _ in await self.catalog.results_before(now - self.config.result_retention):
            job = await self.catalog.get_job(job_id)
            if job is None:
                continue
            await self.effects.handle(job, jobs.ResultExpired(now))
            removed += 1
        return removed

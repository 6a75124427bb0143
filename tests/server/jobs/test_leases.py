"""Take-over of jobs whose server stopped, and expiry of kept results (no cluster)."""

import asyncio
import time

import pytest

from medcompute.server.config import ServerConfig
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.effects import JobEffects
from medcompute.server.jobs.leases import Leases
from tests.jobs_helpers import FakeService, new_job, submitted

pytestmark = pytest.mark.timeout(30)


def _with(tmp_path, body, catalog_at=None, **config):
    async def main():
        catalog = Catalog(catalog_at or tmp_path, runner="r1")
        try:
            launched = []
            cfg = ServerConfig(data_dir=tmp_path, **config)
            service = FakeService(catalog)
            effects = JobEffects(cfg, catalog, service, launch=launched.append)
            await body(catalog, effects, Leases(cfg, catalog, service, effects), launched)
        finally:
            catalog.close()
    asyncio.run(main())


def test_a_stopped_servers_queued_job_runs_again_here(tmp_path, catalog_at):
    async def body(catalog, effects, leases, launched):
        await submitted(catalog)
        await catalog.release_leases()               # its server stopped
        await leases.recover()
        assert launched == ["j1"]
        assert (await catalog.request("j1"))["attempts"] == 1
        await leases.recover()                       # now held here: not taken twice
        assert launched == ["j1"]
    _with(tmp_path, body, catalog_at)


def test_a_job_whose_inputs_never_arrived_fails_unbilled(tmp_path, catalog_at):
    async def body(catalog, effects, leases, launched):
        await submitted(catalog, queued=False)
        folder = effects.job_dir("j1")
        folder.mkdir(parents=True)
        (folder / "in0").write_bytes(b"partial")
        await catalog.release_leases()
        await leases.recover()
        job = await catalog.get_job("j1")
        assert (job.state, job.error_code, job.platform_fault) == (jobs.State.FAILED,
                                                                   "UNAVAILABLE", True)
        assert "while receiving the inputs" in job.error
        assert launched == [] and not folder.exists()
        [usage] = await catalog.usage_for("j1")
        assert usage["platform_fault"] and usage["images"] == 2
    _with(tmp_path, body, catalog_at)


def test_a_job_interrupted_too_often_fails(tmp_path, catalog_at):
    async def body(catalog, effects, leases, launched):
        await submitted(catalog)
        for _ in range(jobs.MAX_ATTEMPTS):
            await catalog.release_leases()
            await leases.recover()
        assert launched == ["j1"] * (jobs.MAX_ATTEMPTS - 1)
        job = await catalog.get_job("j1")
        assert job.state is jobs.State.FAILED and "interrupted" in job.error
    _with(tmp_path, body, catalog_at)


def test_a_synchronous_calls_job_fails_when_its_server_stopped(tmp_path, catalog_at):
    async def body(catalog, effects, leases, launched):
        await catalog.put_job(jobs.apply(new_job(), jobs.InputsReceived(11.0)))
        await catalog.release_leases()
        await leases.recover()
        job = await catalog.get_job("j1")
        assert job.state is jobs.State.FAILED and "stopped before the job ended" in job.error
        assert launched == []
    _with(tmp_path, body, catalog_at)


def test_results_past_the_retention_are_removed(tmp_path, catalog_at):
    async def body(catalog, effects, leases, launched):
        job = await submitted(catalog)
        folder = effects.job_dir("j1")
        folder.mkdir(parents=True)
        (folder / "out").write_bytes(b"result")
        done = jobs.apply(jobs.apply(job, jobs.Started(12.0, "")), jobs.Succeeded(13.0))
        await catalog.finish_job(done, None, lambda db: Catalog.store_result(
            db, "j1", b"header", str(folder / "out")))
        assert await leases.expire_results(now=13.0 + 50) == 0
        assert await leases.expire_results(now=13.0 + 101) == 1
        assert not folder.exists()
        assert (await catalog.request("j1"))["result_removed_at"] is not None
        assert await leases.expire_results(now=time.time() + 1000) == 0
    _with(tmp_path, body, catalog_at, result_retention=100)

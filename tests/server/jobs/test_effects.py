"""The machine's instructions carried out against a real catalog and job folders."""

import asyncio
import errno

import pytest

from medcompute.server.config import ServerConfig
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.effects import JobEffects
from tests.jobs_helpers import FakeService, submitted

pytestmark = pytest.mark.timeout(30)


def _with(tmp_path, body, *, error=None, audit=None):
    async def main():
        catalog = Catalog(tmp_path, runner="r1")
        launched = []
        try:
            service = FakeService(catalog, error)
            effects = JobEffects(ServerConfig(data_dir=tmp_path), catalog, service,
                                 launch=launched.append, audit=audit)
            await body(catalog, service, effects, launched)
        finally:
            catalog.close()
    asyncio.run(main())


def _files(effects, job_id, *names):
    folder = effects.job_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder


def test_a_failed_run_is_recorded_with_its_usage_and_its_files_go(tmp_path):
    async def body(catalog, service, effects, launched):
        job = await submitted(catalog)
        folder = _files(effects, "j1", "in0", "in1", "out", "out.raw")
        ended = await effects.handle(job, jobs.Failure(
            20.0, jobs.Fault.CALLER, "bad", "INVALID_ARGUMENT", images=2, bytes_in=16))
        stored = await catalog.get_job("j1")
        assert stored == ended and stored.state is jobs.State.FAILED
        [usage] = await catalog.usage_for("j1")
        assert (usage["images"], usage["bytes_in"], usage["state"]) == (2, 16, "FAILED")
        assert folder.is_dir() and list(folder.iterdir()) == []
    _with(tmp_path, body)


def test_a_failed_upload_leaves_no_folder(tmp_path):
    async def body(catalog, service, effects, launched):
        job = await submitted(catalog, queued=False)
        folder = _files(effects, "j1", "in0")
        await effects.handle(job, jobs.Failure(20.0, jobs.Fault.CANCELLED, "gone"))
        assert not folder.exists()
        assert (await catalog.get_job("j1")).state is jobs.State.CANCELLED
    _with(tmp_path, body)


def test_queueing_commits_the_audit_entry_and_launches(tmp_path):
    entries = []

    class Entry:
        def __init__(self, job):
            self.job, self.written, self.done = job, False, False
            entries.append(self)

        def write(self, db):
            self.written = True

        def committed(self):
            self.done = True

    async def body(catalog, service, effects, launched):
        job = await submitted(catalog, queued=False)
        queued = await effects.handle(job, jobs.InputsReceived(11.0, bytes_in=99))
        assert launched == ["j1"] and queued.state is jobs.State.QUEUED
        assert (await catalog.request("j1"))["bytes_in"] == 99
        assert [(e.job.state, e.written, e.done) for e in entries] == [
            (jobs.State.QUEUED, True, True)]
    _with(tmp_path, body, audit=Entry)


def test_a_job_ended_meanwhile_is_not_written_or_launched(tmp_path):
    async def body(catalog, service, effects, launched):
        job = await submitted(catalog)
        await catalog.finish_job(jobs.apply(job, jobs.Failure(12.0, jobs.Fault.CANCELLED,
                                                              "elsewhere")), None)
        _, todo = jobs.handle(job, jobs.Started(13.0, ""))
        assert not await effects.apply([*todo, jobs.Launch("j1")])
        assert launched == [] and (await catalog.get_job("j1")).state is jobs.State.CANCELLED
    _with(tmp_path, body)


def test_an_end_the_catalog_cannot_take_is_kept_for_later(tmp_path):
    async def body(catalog, service, effects, launched):
        job = await submitted(catalog)
        ended = await effects.handle(job, jobs.Failure(20.0, jobs.Fault.CALLER, "x", "NOT_FOUND"))
        assert service.unrecorded["j1"][0] == ended
        assert (await catalog.get_job("j1")).state is jobs.State.QUEUED
    _with(tmp_path, body, error=OSError(errno.ENOSPC, "full"))


def test_a_kept_end_keeps_the_jobs_files_until_it_is_recorded(tmp_path):
    """The catalog cannot take the end: the job's files stay (another server may take the
    job over and run it from them); once the end is recorded they go."""
    from medcompute.server.jobs.pipeline import Pipeline

    async def body(catalog, service, effects, launched):
        job = await submitted(catalog)
        folder = _files(effects, "j1", "in0", "in1")
        await effects.handle(job, jobs.Failure(20.0, jobs.Fault.CALLER, "x", "NOT_FOUND"))
        assert "j1" in service.unrecorded
        assert sorted(p.name for p in folder.iterdir()) == ["in0", "in1"]
        service.error = None                              # the catalog is back
        assert await Pipeline.record_unrecorded(service) == 0
        assert (await catalog.get_job("j1")).state is jobs.State.FAILED
        assert list(folder.iterdir()) == []
    _with(tmp_path, body, error=OSError(errno.ENOSPC, "full"))


def test_a_kept_end_refused_later_leaves_the_job_and_its_files_to_the_other(tmp_path):
    """The kept end finds the job ended elsewhere meanwhile: nothing of it is recorded and
    the files (the other server's to handle) are left alone."""
    from medcompute.server.jobs.pipeline import Pipeline

    async def body(catalog, service, effects, launched):
        job = await submitted(catalog)
        folder = _files(effects, "j1", "in0")
        await effects.handle(job, jobs.Failure(20.0, jobs.Fault.CALLER, "x", "NOT_FOUND"))
        service.error = None
        elsewhere = jobs.apply(job, jobs.Failure(21.0, jobs.Fault.CANCELLED, "elsewhere"))
        assert await catalog.finish_job(elsewhere, None)
        assert await Pipeline.record_unrecorded(service) == 0
        assert (await catalog.get_job("j1")).state is jobs.State.CANCELLED
        assert [p.name for p in folder.iterdir()] == ["in0"]
    _with(tmp_path, body, error=OSError(errno.ENOSPC, "full"))


def test_a_cancel_stops_the_run_here_with_its_reason(tmp_path):
    async def body(catalog, service, effects, launched):
        await submitted(catalog)
        task = asyncio.create_task(asyncio.sleep(30))
        effects.tasks["j1"] = task
        await effects.apply([jobs.CancelRun("j1", "stop it")])
        with pytest.raises(asyncio.CancelledError):
            await task
        assert effects.cancel_reasons == {"j1": "stop it"}
        assert (await catalog.request("j1"))["cancel_reason"] == "stop it"
    _with(tmp_path, body)


def test_a_cancel_of_a_job_no_server_holds_ends_it_here(tmp_path):
    async def body(catalog, service, effects, launched):
        await submitted(catalog)
        await catalog.release_leases()
        await effects.apply([jobs.CancelRun("j1", "stop it")])
        job = await catalog.get_job("j1")
        assert (job.state, job.error) == (jobs.State.CANCELLED, "stop it")
        [usage] = await catalog.usage_for("j1")
        assert (usage["images"], usage["bytes_in"]) == (2, 16)
    _with(tmp_path, body)


def test_a_cancel_of_a_job_another_server_holds_is_left_to_it(tmp_path):
    async def body(catalog, service, effects, launched):
        await submitted(catalog)                 # this catalog's lease, live
        await effects.apply([jobs.CancelRun("j1", "stop it")])
        assert (await catalog.get_job("j1")).state is jobs.State.QUEUED
        assert await catalog.renew() == [("j1", "stop it")]
    _with(tmp_path, body)

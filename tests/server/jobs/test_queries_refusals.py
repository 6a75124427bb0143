"""Every refusal of a subscriber's questions about its jobs (jobs/queries.py), against a
real catalog: the field each names and its words."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.server.config import ServerConfig
from medcompute.server.errors import FailedPrecondition, InvalidArgument
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.effects import JobEffects
from medcompute.server.jobs.queries import JobQueries
from medcompute.server.jobs.views import ResultInfo
from tests.jobs_helpers import FakeService, new_job, submitted

pytestmark = pytest.mark.timeout(30)


class Codec:
    @staticmethod
    def result_info(header: bytes) -> ResultInfo:
        return ResultInfo(compression=0, itemsize=4, file_sizes=())


def _with(tmp_path, body):
    async def main():
        catalog = Catalog(tmp_path, runner="r1")
        try:
            effects = JobEffects(ServerConfig(data_dir=tmp_path), catalog, FakeService(catalog),
                                 launch=lambda job_id: None)
            await body(catalog, effects, JobQueries(catalog, effects, Codec()))
        finally:
            catalog.close()
    asyncio.run(main())


async def _fetch_refused(queries, job_id) -> FailedPrecondition:
    with pytest.raises(FailedPrecondition) as info:
        await queries.fetch(job_id, "s", ("process",))
    assert info.value.field == "job_id"
    return info.value


@pytest.mark.parametrize("token", ["not a token", "yesterday:j1"])
def test_a_page_token_not_given_by_a_reply_is_refused(tmp_path, token):
    async def body(catalog, effects, queries):
        with pytest.raises(InvalidArgument) as info:
            await queries.list("s", page_token=token)
        assert info.value.field == "page_token"
        assert info.value.message == "expected a next_page_token of an earlier reply"
    _with(tmp_path, body)


def test_the_result_of_a_synchronous_call_cannot_be_fetched(tmp_path):
    async def body(catalog, effects, queries):
        job = jobs.apply(jobs.apply(new_job("sync1"), jobs.InputsReceived(11.0)),
                         jobs.Started(12.0, "w"))
        await catalog.put_job(job)
        await catalog.finish_job(jobs.apply(job, jobs.Succeeded(13.0)), None)
        err = await _fetch_refused(queries, "sync1")
        assert err.message == ("job sync1 was a synchronous call: its result was returned by "
                               "that call")
    _with(tmp_path, body)


def test_a_result_before_the_job_succeeded_or_after_it_failed_is_refused(tmp_path):
    async def body(catalog, effects, queries):
        await submitted(catalog, "waiting")
        err = await _fetch_refused(queries, "waiting")
        assert err.message == ("job waiting is QUEUED; a result exists once it has "
                               "SUCCEEDED (watch it)")
        job = jobs.apply(await submitted(catalog, "broken"), jobs.Started(12.0, "w"))
        failed = jobs.apply(job, jobs.failure(
            InvalidArgument("must be >= 0, got -1", "pipeline[0].gaussian.sigma"), at=13.0,
            reason=""))
        await catalog.finish_job(failed, None)
        err = await _fetch_refused(queries, "broken")
        assert err.message == ("job broken is FAILED (pipeline[0].gaussian.sigma: must be "
                               ">= 0, got -1); a result exists once it has SUCCEEDED (watch it)")
    _with(tmp_path, body)


def test_a_result_past_its_retention_is_refused(tmp_path):
    async def body(catalog, effects, queries):
        job = jobs.apply(await submitted(catalog, "old"), jobs.Started(12.0, "w"))
        out = effects.job_dir("old")
        out.mkdir(parents=True)
        (out / "result").write_bytes(b"result")
        await catalog.finish_job(jobs.apply(job, jobs.Succeeded(13.0)), None,
                                 lambda db: Catalog.store_result(db, "old", b"h",
                                                                 str(out / "result")))
        assert (await queries.fetch("old", "s", ("process",))).path.endswith("result")
        (out / "result").unlink()
        await catalog.result_removed("old")
        err = await _fetch_refused(queries, "old")
        assert err.message == ("the result of job old was removed after the server's "
                               "result retention")
    _with(tmp_path, body)

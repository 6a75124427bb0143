"""What a subscriber asks of its jobs and its inbox, answered as plain values."""

import asyncio

import pytest

from medcompute.server.config import ServerConfig
from medcompute.server.errors import FailedPrecondition, InvalidArgument, NotFound
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.effects import JobEffects
from medcompute.server.jobs.queries import JobQueries
from medcompute.server.jobs.views import DeliveryState, ResultInfo
from tests.jobs_helpers import FakeService, submitted

pytestmark = pytest.mark.timeout(30)


class Codec:
    @staticmethod
    def result_info(header: bytes) -> ResultInfo:
        assert header == b"result header"
        return ResultInfo(compression=2, itemsize=4, file_sizes=(10, 20))


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


async def _succeeded(catalog, effects, job_id="j1", destination=None):
    job = await submitted(catalog, job_id, destination=destination, label="night")
    folder = effects.job_dir(job_id)
    folder.mkdir(parents=True)
    (folder / "out").write_bytes(b"result")
    done = jobs.apply(jobs.apply(job, jobs.Started(12.0, "w")), jobs.Succeeded(13.0))

    def extra(db):
        Catalog.store_result(db, job_id, b"result header", str(folder / "out"))
        if destination:
            Catalog.deliver(db, job_id, destination, job.subscriber, 13.0)
    await catalog.finish_job(done, None, extra)
    return done


def test_another_subscribers_job_is_not_found(tmp_path):
    async def body(catalog, effects, queries):
        await submitted(catalog)
        view = await queries.get("j1", "s")
        assert (view.job_id, view.state, view.asynchronous) == ("j1", jobs.State.QUEUED, True)
        for who in ("other", ""):
            with pytest.raises(NotFound):
                await queries.get("j1", who)
        with pytest.raises(NotFound):
            await queries.get("", "s")
    _with(tmp_path, body)


def test_progress_and_a_result_show_in_the_view(tmp_path):
    async def body(catalog, effects, queries):
        await submitted(catalog)
        effects.progress["j1"] = (0.25, "slab 1 of 4 done")
        assert (await queries.info("j1")).progress == 0.25
        await _succeeded(catalog, effects, "j2")
        view = await queries.info("j2")
        assert (view.progress, view.result_available, view.label) == (1.0, True, "night")
        assert view.delivery is DeliveryState.NONE and view.destination == ""
    _with(tmp_path, body)


def test_watch_tells_each_change_until_the_end(tmp_path):
    async def body(catalog, effects, queries):
        job = await submitted(catalog)
        updates = []

        async def watch():
            async for update in queries.watch("j1", "s"):
                updates.append((update.job.state, update.message))

        task = asyncio.create_task(watch())
        await asyncio.sleep(0.1)
        await effects.handle(job, jobs.Failure(20.0, jobs.Fault.CALLER, "bad", "NOT_FOUND"))
        await asyncio.wait_for(task, 5)
        assert updates == [(jobs.State.QUEUED, "queued"), (jobs.State.FAILED, "bad")]
    _with(tmp_path, body)


def test_list_pages_newest_first_and_refuses_a_foreign_token(tmp_path):
    async def body(catalog, effects, queries):
        for i in range(3):
            job = await submitted(catalog, f"j{i}")
            await catalog.put_job(jobs.apply(job, jobs.Started(12.0, "")))
        first = await queries.list("s", page_size=2)
        assert len(first.jobs) == 2 and first.next_page_token
        rest = await queries.list("s", page_size=2, page_token=first.next_page_token)
        assert len(rest.jobs) == 1 and rest.next_page_token == ""
        ids = {v.job_id for v in first.jobs + rest.jobs}
        assert ids == {"j0", "j1", "j2"}
        assert (await queries.list("s", states=[jobs.State.SUCCEEDED])).jobs == []
        assert len((await queries.list("s", states=[jobs.State.RUNNING])).jobs) == 3
        with pytest.raises(InvalidArgument, match="page_token"):
            await queries.list("s", page_token="not a token")
    _with(tmp_path, body)


def test_fetch_gives_the_stored_result_once_it_has_succeeded(tmp_path):
    async def body(catalog, effects, queries):
        await submitted(catalog, "waiting")
        with pytest.raises(FailedPrecondition, match="QUEUED"):
            await queries.fetch("waiting", "s", ("process",))
        await _succeeded(catalog, effects)
        result = await queries.fetch("j1", "s", ("process",))
        assert (result.header, result.compression, result.itemsize, result.file_sizes,
                result.recipient) == (b"result header", 2, 4, (10, 20), False)
        assert result.path.endswith("out")
        await catalog.result_removed("j1")
        with pytest.raises(FailedPrecondition, match="removed"):
            await queries.fetch("j1", "s", ("process",))
    _with(tmp_path, body)


def test_a_delivered_result_is_in_the_recipients_inbox_and_fetched_once(tmp_path):
    async def body(catalog, effects, queries):
        await _succeeded(catalog, effects, destination="reader")
        assert (await queries.info("j1")).delivery is DeliveryState.DELIVERED
        [delivery] = await queries.inbox("reader")
        assert (delivery.job_id, delivery.sender, delivery.operations, delivery.label,
                delivery.result_header) == ("j1", "s", ("gaussian",), "night", b"result header")
        with pytest.raises(NotFound):
            await queries.fetch("j1", "reader", ("process",))     # not without receive
        result = await queries.fetch("j1", "reader", ("receive",))
        assert result.recipient
        await queries.fetched("j1")
        assert (await queries.info("j1")).delivery is DeliveryState.FETCHED
        assert await queries.inbox("reader", unfetched_only=True) == []
        watched = queries.watch_inbox("reader")
        assert (await asyncio.wait_for(watched.__anext__(), 5)).job_id == "j1"
        await watched.aclose()
    _with(tmp_path, body)

"""The job phases (jobs/pipeline.py): receiving payloads into memory, the spool or a job's
folder; admission through the one validator; recording a failure in a real catalog; and
a whole run on a real Dask cluster. Also the domain requests' own pieces (requests.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from medcompute.proto import wire
from medcompute.proto.v1 import operations_pb2
from medcompute.server.config import ServerConfig
from medcompute.server.errors import InvalidArgument, ResourceExhausted, named, renamed
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.pipeline import (
    InMemory,
    JobFolder,
    Pipeline,
    Spooled,
    receive,
)
from medcompute.server.jobs.requests import ProcessRequest, SubmitRequest
from medcompute.server.storage.spool import ExpectedImage, ImageWriter, Spool

pytestmark = pytest.mark.timeout(120)

IMAGE = np.arange(64, dtype=np.uint16).reshape(8, 8)
GAUSSIAN = operations_pb2.Operation(gaussian=operations_pb2.GaussianOp(sigma=[1.0]))


def _expected(array=IMAGE, field="input.inline") -> ExpectedImage:
    return ExpectedImage(field, "raw", array.nbytes, array.shape, array.dtype,
                         crc32=wire.crc32(array))


def _request(**kw) -> ProcessRequest:
    return ProcessRequest(pipeline=(GAUSSIAN,), input=_expected(), device="cpu", **kw)


async def _payloads(*pieces, image=0):
    for piece in pieces:
        yield image, piece


def _config(tmp_path, **kw) -> ServerConfig:
    return ServerConfig(data_dir=tmp_path, min_free_bytes=0, **kw)


# -- receiving ------------------------------------------------------------------------
def test_receive_writes_each_payload_and_counts_the_wire_bytes(tmp_path):
    data = IMAGE.tobytes()
    path = tmp_path / "in0"
    writer = ImageWriter(_expected(), path)
    got = asyncio.run(receive(_payloads(data[:50], data[50:]), [writer]))
    assert got == len(data)
    assert path.read_bytes() == data
    memory = ImageWriter(_expected(), None)
    asyncio.run(receive(_payloads(data), [memory]))
    assert memory.data == data


def test_receive_refuses_missing_bytes_naming_the_image_field(tmp_path):
    writer = ImageWriter(_expected(), tmp_path / "in0")
    with pytest.raises(InvalidArgument) as err:
        asyncio.run(receive(_payloads(IMAGE.tobytes()[:10]), [writer]))
    assert err.value.field == "input.inline.size"


def test_input_places(tmp_path):
    spool = Spool(tmp_path)
    spooled = Spooled(spool)
    paths = spooled.paths("j1", 2)
    assert all(p.parent == spool.dir for p in paths)
    for p in paths:
        p.write_bytes(b"x")
    assert spooled.out_path("j1").parent == spool.dir
    spooled.release(paths)
    assert not any(p.exists() for p in paths)

    assert InMemory().paths("j1", 2) == [None, None]
    assert InMemory().out_path("j1") is None

    folder = JobFolder(tmp_path / "jobs" / "j1")
    paths = folder.paths("j1", 1)
    paths[0].write_bytes(b"x")
    asyncio.run(folder.received(paths))       # fsynced; kept for the job's run
    folder.release(paths)
    assert paths[0].read_bytes() == b"x"
    assert folder.out_path("j1") == tmp_path / "jobs" / "j1" / "out"


# -- admission ------------------------------------------------------------------------
def test_the_validator_refuses_dicom_output_of_a_raw_image(tmp_path):
    catalog = Catalog(tmp_path)
    try:
        pipeline = Pipeline(_config(tmp_path), catalog, None, Spool(tmp_path))
        with pytest.raises(InvalidArgument) as err:
            asyncio.run(pipeline.prepare(_request(output_format="dicom_series"),
                                         subscriber="s"))
        assert err.value.field == "output_format"
        checked = asyncio.run(pipeline.prepare(_request(), subscriber="s"))
        pipeline.precheck(checked)
        assert pipeline.place(checked).__class__ is InMemory
        assert pipeline.place(_request(store_result=True)).__class__ is Spooled
    finally:
        catalog.close()


def test_the_validator_refuses_an_image_over_the_voxel_limit_before_its_bytes(tmp_path):
    catalog = Catalog(tmp_path)
    try:
        pipeline = Pipeline(_config(tmp_path, max_voxels=10), catalog, None, Spool(tmp_path))
        with pytest.raises(ResourceExhausted) as err:
            pipeline.precheck(_request())
        assert err.value.field == "input.inline.shape"
    finally:
        catalog.close()


# -- a failure is recorded ------------------------------------------------------------
def test_a_failed_upload_ends_the_job_failed_with_one_usage_record(tmp_path):
    catalog = Catalog(tmp_path)
    spool = Spool(tmp_path)
    try:
        pipeline = Pipeline(_config(tmp_path), catalog, None, spool)
        request = _request()

        async def main():
            job = pipeline.new_job(request, subscriber="s")
            await catalog.put_job(job)
            with pytest.raises(InvalidArgument):
                await pipeline.run(job, request, Spooled(spool),
                                   payloads=_payloads(IMAGE.tobytes()[:10]))
            return await catalog.get_job(job.id)

        ended = asyncio.run(main())
        assert ended.state is jobs.State.FAILED
        assert ended.error_code == "INVALID_ARGUMENT"
        assert "input.inline.size" in ended.error
        assert list(spool.dir.iterdir()) == []          # the inputs are released
    finally:
        catalog.close()


@pytest.mark.parametrize("exc, state, code, platform, reason", [
    (asyncio.CancelledError(), jobs.State.CANCELLED, "CANCELLED", False, "the call went"),
    (ValueError("boom"), jobs.State.FAILED, "INTERNAL", True, "internal error (ValueError)"),
    (InvalidArgument("bad", "x"), jobs.State.FAILED, "INVALID_ARGUMENT", False, "x: bad"),
])
def test_fail_records_the_machines_classification(tmp_path, exc, state, code, platform,
                                                   reason):
    catalog = Catalog(tmp_path)
    try:
        pipeline = Pipeline(_config(tmp_path), catalog, None, Spool(tmp_path))

        async def main():
            job = pipeline.new_job(_request(), subscriber="s")
            await catalog.put_job(job)
            await pipeline.fail(job, exc, bytes_in=5, n_images=1,
                                cancel_reason="the call went")
            return await catalog.get_job(job.id), await catalog.usage_for(job.id)

        ended, [usage] = asyncio.run(main())
        assert (ended.state, ended.error_code, ended.platform_fault, ended.error) == (
            state, code, platform, reason)
        assert (usage["bytes_in"], usage["images"], usage["state"]) == (5, 1, state.value)
    finally:
        catalog.close()


# -- the caller's steps (the asynchronous runner's) ------------------------------------
def _queued_in_folder(tmp_path, pipeline, catalog, request):
    """A QUEUED job whose input is in its job folder already (an asynchronous job)."""
    job = pipeline.new_job(request, subscriber="s")
    job = jobs.apply(job, jobs.InputsReceived(job.created_at))
    asyncio.run(catalog.put_job(job))
    place = JobFolder(tmp_path / "jobs" / job.id)
    place.paths(job.id, 1)[0].write_bytes(IMAGE.tobytes())
    return job, place


def test_a_run_whose_job_ended_elsewhere_before_it_started_runs_nothing(tmp_path):
    catalog = Catalog(tmp_path)
    try:
        # No dispatcher: running the job would fail.
        pipeline = Pipeline(_config(tmp_path), catalog, None, Spool(tmp_path))
        request = _request()
        job, place = _queued_in_folder(tmp_path, pipeline, catalog, request)
        seen = []

        async def started(job):
            seen.append(job.state)
            return None

        got = asyncio.run(pipeline.run(job, request, place, bytes_in=128, started=started))
        assert got is None and seen == [jobs.State.QUEUED]     # inputs already received
        assert asyncio.run(catalog.get_job(job.id)).state is jobs.State.QUEUED
        assert place.paths(job.id, 1)[0].exists()            # a job folder keeps its inputs
    finally:
        catalog.close()


def test_a_run_with_its_own_failure_step_records_nothing_itself(tmp_path):
    catalog = Catalog(tmp_path)
    try:
        pipeline = Pipeline(_config(tmp_path, max_voxels=10), catalog, None, Spool(tmp_path))
        request = _request()
        job, place = _queued_in_folder(tmp_path, pipeline, catalog, request)
        place.out_path(job.id).write_bytes(b"partial")
        calls = []

        async def failed(job, exc, *, bytes_in, n_images):
            calls.append((job.state, type(exc), bytes_in, n_images))

        with pytest.raises(ResourceExhausted):              # staged: over the voxel limit
            asyncio.run(pipeline.run(job, request, place, bytes_in=128, failed=failed))
        assert calls == [(jobs.State.QUEUED, ResourceExhausted, 128, 1)]
        assert asyncio.run(catalog.get_job(job.id)).state is jobs.State.QUEUED
        assert place.out_path(job.id).exists()               # the failure step's to remove
    finally:
        catalog.close()


# -- a whole run on a real cluster ----------------------------------------------------
@pytest.mark.timeout(300)
def test_a_run_in_memory_and_through_the_spool_records_the_end(tmp_path):
    from medcompute.server.dispatch.dispatcher import Dispatcher

    config = _config(tmp_path, workers=1, gpu_workers=0)
    catalog = Catalog(tmp_path)
    spool = Spool(tmp_path)

    async def main():
        dispatcher = Dispatcher(config)
        await dispatcher.start()
        try:
            pipeline = Pipeline(config, catalog, dispatcher, spool)
            request = await pipeline.prepare(_request(), subscriber="s")
            results = []
            for place in (InMemory(), Spooled(spool)):
                job = pipeline.new_job(request, subscriber="s")
                await catalog.put_job(job)
                results.append(await pipeline.run(job, request, place,
                                                  payloads=_payloads(IMAGE.tobytes())))
            return results
        finally:
            await dispatcher.close()

    try:
        in_memory, spooled = asyncio.run(main())
        for ended in (in_memory, spooled):
            assert ended.job.state is jobs.State.SUCCEEDED
            assert ended.usage.bytes_in == IMAGE.nbytes
            assert ended.usage.images == 1 and ended.usage.state == "SUCCEEDED"
            assert "gpu_seconds" not in ended.usage.as_dict()       # not measured on a CPU
            assert ended.result.shape == IMAGE.shape
            assert [op.name for op in ended.ops] == ["gaussian"]
        assert in_memory.result.data is not None and in_memory.result.out_path == ""
        out = np.fromfile(spooled.result.out_path, dtype=np.float32).reshape(IMAGE.shape)
        assert np.allclose(np.frombuffer(in_memory.result.data, np.float32).reshape(
            IMAGE.shape), out)
        Spool.remove(spooled.result.out_path)
        assert list(spool.dir.iterdir()) == []
    finally:
        catalog.close()


# -- the requests --------------------------------------------------------------------
def test_a_submit_request_survives_its_encoding():
    stored = ExpectedImage("operands[0].image_id", "stored", 0, stored="img1", version="review")
    request = SubmitRequest(
        _request(store_result=True, retention_seconds=60).with_images([_expected(), stored]),
        idempotency_key="k", label="l", destination="d")
    again = SubmitRequest.decode(request.encode())
    assert again == request
    assert again.encode() == request.encode()


def test_fields_are_renamed_relative_to_the_holding_request():
    def field(exc):
        return exc.field

    assert field(renamed(InvalidArgument("x", "pipeline[0]"), "process")) == \
        "process.pipeline[0]"
    assert field(renamed(InvalidArgument("x", "header.device"), "process")) == "process.device"
    assert field(renamed(InvalidArgument("x", "request[3].chunk"), "process")) == \
        "request[3].chunk"
    moves = (("input", "inputs[2]"),)
    assert field(renamed(InvalidArgument("x", "input.inline.size"), moves=moves)) == \
        "inputs[2].inline.size"
    # Renaming again changes nothing: inputs[2] is not input.
    assert field(renamed(InvalidArgument("x", "inputs[2].size"), moves=moves)) == \
        "inputs[2].size"
    with pytest.raises(InvalidArgument) as err:
        with named("rule.process"):
            raise InvalidArgument("x", "pipeline")
    assert err.value.field == "rule.process.pipeline"
    assert err.value.details == "rule.process.pipeline: x"

"""Stacked execution in the jobs room: which images stack, and a stack's run on a real
cluster: one worker call, one transaction for the ends, each image its own job, result
and usage line, a failing image alone."""

import dataclasses

import numpy as np
import pytest

from medcompute.client.ops import parse_op
from medcompute.server.config import ServerConfig
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs import stacks
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.storage.spool import ExpectedImage


class _Service:
    def __init__(self, **config):
        self.config = ServerConfig(**config)


def _request(shape=(8, 9), dtype="<u2", pipeline=("gaussian:sigma=1",), **fields):
    dt = np.dtype(dtype)
    image = ExpectedImage("input.inline", "raw", int(np.prod(shape)) * dt.itemsize,
                          shape=shape, dtype=dt)
    return ProcessRequest(pipeline=tuple(parse_op(p) for p in pipeline), input=image,
                          device="cpu", **fields)


def test_images_of_one_geometry_and_pipeline_share_a_key():
    service = _Service()
    a, b = _request(), _request()
    assert stacks.stack_key(service, a) == stacks.stack_key(service, b) is not None
    assert stacks.stack_key(service, _request(shape=(8, 10))) != stacks.stack_key(service, a)
    assert stacks.stack_key(service, _request(dtype="<i2")) != stacks.stack_key(service, a)
    assert (stacks.stack_key(service, _request(pipeline=("gaussian:sigma=2",)))
            != stacks.stack_key(service, a))


@pytest.mark.parametrize("change", [
    {"output_format": "dicom_series"}, {"store_result": True},
])
def test_what_is_not_stacked(change):
    assert stacks.stack_key(_Service(), _request(**change)) is None


def test_no_stacks_when_disabled_or_too_big_or_with_an_inline_operand():
    request = _request()
    assert stacks.stack_key(_Service(stack_bytes=0), request) is None
    assert stacks.stack_key(_Service(memory_inputs=False), request) is None
    assert stacks.stack_key(_Service(batch_bytes=100), request) is None
    inline = dataclasses.replace(request, operands=(request.input,))
    assert stacks.stack_key(_Service(), inline) is None


# -- on a real cluster and catalog ------------------------------------------------------


def _members(service, images, request):
    members = []
    for image in images:
        job = service.new_job(request, subscriber="local")
        members.append(stacks.Member(job, request, image.tobytes(), image.nbytes))
    return members


async def _run(service, members, writes):
    await service.catalog.put_jobs([m.job for m in members])
    write = service.catalog.db.write

    async def counted(fn, *args):
        writes.append(fn)
        return await write(fn, *args)

    service.catalog.db.write = counted
    try:
        return await stacks.run(service, members)
    finally:
        service.catalog.db.write = write


@pytest.mark.integration
def test_a_stack_runs_its_images_as_their_own_jobs_recorded_in_one_write(server, client):
    service = server.running.runner.service
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 4000, size=(8, 9), dtype=np.uint16) for _ in range(5)]
    request = _request()
    members = _members(service, images, request)
    writes = []
    outcomes = server.call(_run(service, members, writes))
    assert len(writes) == 1                         # every end, usage and audit line
    alone = [client.process(image, ["gaussian:sigma=1"], device="cpu") for image in images]
    for member, outcome, single in zip(members, outcomes, alone):
        assert outcome.job.id == member.job.id and outcome.job.state.value == "SUCCEEDED"
        assert np.asarray(outcome.result.data).tobytes() == single.array.tobytes()
        assert [op.summary for op in outcome.ops] == [a["summary"] for a in single.applied]
        usage = server.call(server.catalog.usage_for(member.job.id))
        assert len(usage) == 1 and usage[0]["images"] == 1
        assert usage[0]["voxels"] == 72 and usage[0]["bytes_out"] == 72 * 4
        assert server.call(server.catalog.get_job(member.job.id)).state.value == "SUCCEEDED"


@pytest.mark.integration
def test_an_image_that_fails_in_a_stack_fails_alone(server):
    service = server.running.runner.service
    images = [np.full((6, 6), k, np.uint16) for k in range(3)]
    members = _members(service, images, _request(shape=(6, 6)))
    run_stack = service.dispatcher.run_stack

    async def one_fails(spec, **kwargs):            # as the worker reports a refused image
        result, reason = await run_stack(spec, **kwargs)
        result.errors[1] = InvalidArgument("refused for this image",
                                                 "header.pipeline[0].gaussian")
        return result, reason

    service.dispatcher.run_stack = one_fails
    try:
        outcomes = server.call(_run(service, members, []))
    finally:
        del service.dispatcher.run_stack
    assert isinstance(outcomes[1], InvalidArgument)
    for k in (0, 2):
        assert outcomes[k].job.state.value == "SUCCEEDED"
        np.testing.assert_array_equal(np.asarray(outcomes[k].result.data), images[k])
    failed = server.call(server.catalog.get_job(members[1].job.id))
    assert failed.state.value == "FAILED" and failed.error_code == "INVALID_ARGUMENT"
    for member in members:
        assert len(server.call(server.catalog.usage_for(member.job.id))) == 1


@pytest.mark.integration
def test_a_pipeline_that_does_not_fit_fails_every_image_of_the_stack(server):
    service = server.running.runner.service
    images = [np.zeros((6, 6), np.uint16) for _ in range(2)]
    request = _request(shape=(6, 6), pipeline=("subtract:operand=0",))   # no operand
    members = _members(service, images, request)
    with pytest.raises(InvalidArgument):
        server.call(_run(service, members, []))
    for member in members:
        job = server.call(server.catalog.get_job(member.job.id))
        assert job.state.value == "FAILED" and job.error_code == "INVALID_ARGUMENT"
        assert len(server.call(server.catalog.usage_for(member.job.id))) == 1


@pytest.mark.integration
def test_a_stack_cancelled_while_it_runs_ends_every_image_cancelled_once(server):
    import asyncio

    service = server.running.runner.service
    images = [np.zeros((5, 5), np.uint16) for _ in range(3)]
    members = _members(service, images, _request(shape=(5, 5)))

    reached = []

    async def forever(spec, **kwargs):           # the worker call that never answers
        reached.append(spec.job_ids)
        await asyncio.Event().wait()

    async def cancelled_run():
        task = asyncio.ensure_future(_run(service, members, []))
        while not reached:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    service.dispatcher.run_stack = forever
    try:
        server.call(cancelled_run())
    finally:
        del service.dispatcher.run_stack
    for member in members:
        job = server.call(server.catalog.get_job(member.job.id))
        assert job.state.value == "CANCELLED"
        assert len(server.call(server.catalog.usage_for(member.job.id))) == 1

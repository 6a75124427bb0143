"""The dynamic batcher's queue: calls of one key leave together, by priority, within the
stack size; a full subscriber queue is refused; a call that goes away touches no other."""

import asyncio

import numpy as np
import pytest

from medcompute.client.ops import parse_op
from medcompute.server.config import ServerConfig
from medcompute.server.errors import InvalidArgument, ResourceExhausted
from medcompute.server.jobs import batcher as batching
from medcompute.server.jobs import stacks
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.storage.spool import ExpectedImage

SHAPE = (4, 4)        # 64 bytes of float32 work


class _Job:
    def __init__(self, n):
        self.id = f"job{n}"


class _Service:
    """What the batcher uses of the processing service, recording each call's end."""

    def __init__(self, workers=1, **config):
        self.config = ServerConfig(**{"batch_delay": 1000.0, "stack_bytes": 64 * 3,
                                      **config})
        self.dispatcher = type("D", (), {"slots": lambda _, kind: workers if kind == "cpu"
                                         else 0})()
        self.catalog = type("C", (), {"put_job": staticmethod(_nothing)})()
        self.jobs = 0
        self.completed: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.alone: list[ProcessRequest] = []

    async def prepare(self, request, *, subscriber):
        return request

    def check_space(self, request, *where):
        pass

    def precheck(self, request):
        pass

    def new_job(self, request, *, subscriber):
        self.jobs += 1
        return _Job(self.jobs)

    async def receive(self, request, payloads, paths, place):
        async for _ in payloads:
            pass
        return 16, [bytes(16)]

    async def complete(self, ended):
        self.completed.append(ended.job.id)
        return ended

    async def fail(self, job, exc, *, bytes_in, n_images):
        self.failed.append((job.id, type(exc).__name__))

    async def process(self, request, payloads, *, subscriber, on_job=None):
        self.alone.append(request)
        return "alone"


async def _nothing(*args):
    return True


class _Ended:
    def __init__(self, job):
        self.job = job


def _request(shape=SHAPE, pipeline="mean:size=3", **fields):
    image = ExpectedImage("input.inline", "raw", int(np.prod(shape)), shape=shape,
                          dtype=np.dtype("u1"))
    return ProcessRequest(pipeline=(parse_op(pipeline),), input=image, **fields)


async def _no_payloads():
    return
    yield


@pytest.fixture
def stacked(monkeypatch):
    """The stacks computed (each a list of job ids); a stack waits for its gate."""
    runs: list[list[str]] = []
    gates: list[asyncio.Event] = []
    failing: set[str] = set()

    async def compute(service, members):
        runs.append([m.job.id for m in members])
        gate = asyncio.Event()
        gates.append(gate)
        await gate.wait()
        return [InvalidArgument("refused", "pipeline[0]") if m.job.id in failing
                else _Ended(m.job) for m in members]

    monkeypatch.setattr(stacks, "compute", compute)
    return runs, gates, failing


async def _settle():
    for _ in range(5):
        await asyncio.sleep(0)


def _call(batcher, request=None, priority=batching.NORMAL, subscriber="s"):
    return asyncio.ensure_future(batcher.process(request or _request(), _no_payloads(),
                                                 subscriber=subscriber, priority=priority))


def test_calls_of_one_key_leave_together_once_the_stack_is_full(stacked):
    runs, gates, _ = stacked

    async def scenario():
        service = _Service()
        batcher = batching.DynamicBatcher(service)
        calls = [_call(batcher) for _ in range(3)]
        other = _call(batcher, _request(shape=(4, 5)))      # another geometry: waits
        await _settle()
        assert runs == [["job1", "job2", "job3"]]
        gates[0].set()
        ended = await asyncio.gather(*calls)
        assert [e.job.id for e in ended] == ["job1", "job2", "job3"]
        assert service.completed == ["job1", "job2", "job3"]   # each call records its own
        assert not other.done()
        other.cancel()
        with pytest.raises(asyncio.CancelledError):
            await other
        assert service.failed == [("job4", "CancelledError")]
        assert batcher.waiting == {} and batcher.queued == {}

    asyncio.run(scenario())


def test_higher_priority_takes_the_places_and_leaves_first(stacked):
    runs, gates, _ = stacked

    async def scenario():
        batcher = batching.DynamicBatcher(_Service())
        busy = [_call(batcher, _request(pipeline="median:size=3")) for _ in range(3)]
        await _settle()
        assert runs == [["job1", "job2", "job3"]]             # the only worker is busy
        low = [_call(batcher, priority=batching.LOW) for _ in range(2)]        # job4, 5
        await _settle()
        high = [_call(batcher, priority=batching.HIGH) for _ in range(2)]      # job6, 7
        other = _call(batcher, _request(shape=(2, 2)), priority=batching.HIGH)  # job8
        await _settle()
        assert len(runs) == 1
        # Ready groups: all are due (full, or by the delay set to 0 below).
        for key in batcher.due:
            batcher.due[key] = 0.0
        gates[0].set()
        await asyncio.gather(*busy)
        await _settle()
        # The group holding the oldest high-priority call leaves first, high calls first.
        assert runs[1] == ["job6", "job7", "job4"]
        gates[1].set()
        await _settle()
        assert runs[2] == ["job8"]
        gates[2].set()
        await _settle()
        assert runs[3] == ["job5"]
        gates[3].set()
        await asyncio.gather(*low, *high, other)

    asyncio.run(scenario())


def test_a_full_subscriber_queue_is_refused_before_any_job(stacked):
    runs, gates, _ = stacked

    async def scenario():
        service = _Service(batch_queue=2)
        batcher = batching.DynamicBatcher(service)
        waiting = [_call(batcher) for _ in range(2)]
        await _settle()
        with pytest.raises(ResourceExhausted, match="batch_queue=2"):
            await _call(batcher)
        assert service.jobs == 2
        another = _call(batcher, _request(shape=(5, 5)), subscriber="another")
        await _settle()
        assert batcher.queued == {"s": 2, "another": 1}
        waiting.append(another)
        for call in waiting:
            call.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        assert batcher.queued == {} and runs == []

    asyncio.run(scenario())


def test_a_call_that_goes_away_while_its_stack_runs_leaves_the_others(stacked):
    runs, gates, failing = stacked

    async def scenario():
        service = _Service()
        batcher = batching.DynamicBatcher(service)
        calls = [_call(batcher) for _ in range(3)]
        failing.add("job3")
        await _settle()
        calls[1].cancel()                    # its deadline passed, or its caller left
        await _settle()
        gates[0].set()
        first = await calls[0]
        with pytest.raises(asyncio.CancelledError):
            await calls[1]
        with pytest.raises(InvalidArgument):
            await calls[2]
        assert first.job.id == "job1" and service.completed == ["job1"]
        assert sorted(service.failed) == [("job2", "CancelledError"),
                                          ("job3", "InvalidArgument")]

    asyncio.run(scenario())


def test_what_is_not_batched_runs_as_before():
    async def scenario():
        for service, request in [
                (_Service(batch_delay=0), _request()),
                (_Service(stack_bytes=0), _request()),
                (_Service(), _request(output_format="dicom_series")),
                (_Service(), ProcessRequest(pipeline=(parse_op("subtract:operand=0"),),
                                            input=_request().input,
                                            operands=(_request().input,)))]:
            batcher = batching.DynamicBatcher(service)
            assert await _call(batcher, request) == "alone"
            assert service.alone == [request]

    asyncio.run(scenario())

"""When a batch's images leave as stacks: at once while workers are free, gathered while
they are busy, cut by the stack size in bytes."""

import asyncio

import numpy as np

from medcompute.client.ops import parse_op
from medcompute.server.config import ServerConfig
from medcompute.server.jobs.batch import _Stacking
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.storage.spool import ExpectedImage


class _Dispatcher:
    def __init__(self, workers):
        self.workers = workers

    def slots(self, kind):
        return self.workers if kind == "cpu" else 0


class _Batch:
    """Records what leaves; each run ends when the test says so."""

    def __init__(self, workers, **config):
        self.service = type("S", (), {})()
        self.service.config = ServerConfig(**config)
        self.service.dispatcher = _Dispatcher(workers)
        self.runs: list[tuple[str, list[int]]] = []
        self.gates: list[asyncio.Event] = []

    async def _gate(self):
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()

    async def _item(self, i, *args):
        self.runs.append(("alone", [i]))
        await self._gate()

    async def _stack(self, members, *args):
        self.runs.append(("stack", [m[0] for m in members]))
        await self._gate()


def _pending(shapes):
    out = {}
    for i, shape in enumerate(shapes):
        image = ExpectedImage(f"inputs[{i}]", "raw", int(np.prod(shape)) * 2, shape=shape,
                              dtype=np.dtype("<u2"))
        out[i] = (ProcessRequest(pipeline=(parse_op("mean:size=3"),), input=image), None)
    return out


async def _settle():
    for _ in range(3):
        await asyncio.sleep(0)


def test_images_leave_alone_while_workers_are_free_then_gather():
    async def scenario():
        batch = _Batch(workers=1)
        tasks = {}
        stacking = _Stacking(batch, _pending([(4, 4)] * 5), None, None, tasks)
        stacking.arrived(0, b"", 0)
        await _settle()
        assert batch.runs == [("alone", [0])]          # a free worker: no waiting
        for i in (1, 2, 3):
            stacking.arrived(i, b"", 0)
        await _settle()
        assert len(batch.runs) == 1                     # the worker is busy: they gather
        batch.gates[0].set()
        await _settle()
        assert batch.runs[1] == ("stack", [1, 2, 3])
        stacking.arrived(4, b"", 0)
        batch.gates[1].set()
        await _settle()
        assert batch.runs[2] == ("alone", [4])
        batch.gates[2].set()
        await _settle()
        assert set(tasks) == {0, 1, 2, 3, 4} and stacking.running == 0

    asyncio.run(scenario())


def test_shapes_make_separate_stacks_cut_by_bytes():
    async def scenario():
        # (4, 4) images are 64 float32 bytes: at most two in a 128-byte stack.
        batch = _Batch(workers=1, stack_bytes=128)
        stacking = _Stacking(batch, _pending([(2, 2), (4, 4), (4, 4), (4, 4), (3, 3),
                                              (3, 3)]), None, None, {})
        for i in range(6):
            stacking.arrived(i, b"", 0)
        for _ in range(5):
            await _settle()
            if batch.gates:
                batch.gates[-1].set()
        await _settle()
        assert batch.runs == [("alone", [0]), ("stack", [1, 2]), ("stack", [4, 5]),
                              ("alone", [3])]

    asyncio.run(scenario())


def test_nothing_leaves_once_the_call_has_ended():
    async def scenario():
        batch = _Batch(workers=1)
        stacking = _Stacking(batch, _pending([(4, 4)] * 2), None, None, {})
        stacking.closed = True
        stacking.arrived(0, b"", 0)
        await _settle()
        assert batch.runs == []

    asyncio.run(scenario())

"""The loss of the worker holding a GPU task, heard from the scheduler's events
(dispatch/losses.py), and how the dispatcher names it (a GPU failure: a CPU re-run)."""

from __future__ import annotations

import asyncio

import pytest
from distributed.scheduler import KilledWorker

from medcompute.server.config import ServerConfig
from medcompute.server.dispatch.dispatcher import Dispatcher
from medcompute.server.dispatch.losses import WorkerLosses, WorkerLost
from medcompute.server.errors import Internal
from medcompute.server.worker.tasks import GpuFailure

pytestmark = pytest.mark.timeout(60)


def _removed(worker: str, keys, expected: bool = False) -> tuple:
    """A scheduler ``remove-worker`` event as the ``all`` topic delivers it."""
    return (0.0, {"action": "remove-worker", "worker": worker, "processing-tasks": set(keys),
                  "lost-computed-tasks": set(), "lost-scattered-tasks": set(),
                  "stimulus_id": "test", "expected": expected})


async def _watched(losses: WorkerLosses, keys, events) -> tuple:
    """Watch ``keys`` with work that never ends, send ``events``; (the outcome, whether
    the work was cancelled)."""
    cancelled = asyncio.Event()

    async def work():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    watch = asyncio.create_task(losses.watch(keys, work()))
    await asyncio.sleep(0)                      # the watch registers its keys
    for event in events:
        losses.on_event(event)
    try:
        outcome = await asyncio.wait_for(watch, 5)
    except WorkerLost as exc:
        outcome = exc
    except asyncio.TimeoutError:
        outcome = None
    return outcome, cancelled.is_set()


def test_the_loss_of_the_worker_holding_a_task_ends_its_wait_and_cancels_it():
    losses = WorkerLosses()
    outcome, cancelled = asyncio.run(_watched(
        losses, ["job-1-slab0", "job-1-slab1"], [_removed("tcp://gpu:1", ["job-1-slab1"])]))
    assert isinstance(outcome, WorkerLost) and outcome.worker == "tcp://gpu:1"
    assert cancelled and losses.heard == 1
    assert not losses._watched                  # nothing left behind


def test_a_retired_worker_or_another_task_is_not_a_loss():
    losses = WorkerLosses()
    outcome, cancelled = asyncio.run(_watched(losses, ["job-2"], [
        _removed("tcp://gpu:1", ["job-2"], expected=True),      # Dask reschedules it
        _removed("tcp://cpu:1", ["job-3"]),
        (0.0, {"action": "add-worker", "worker": "tcp://gpu:2"}),
        (0.0, "not a dict")]))
    assert outcome is None and losses.heard == 2     # still waiting when the bound ran out


def test_work_that_ends_first_gives_its_result_and_errors():
    losses = WorkerLosses()

    async def done():
        return "result"

    async def fails():
        raise ValueError("the task's own error")

    assert asyncio.run(losses.watch(["job-4"], done())) == "result"
    with pytest.raises(ValueError, match="own error"):
        asyncio.run(losses.watch(["job-5"], fails()))
    assert not losses._watched


def test_a_lost_gpu_task_is_a_gpu_failure_and_a_lost_cpu_task_stays_internal():
    dispatcher = Dispatcher(ServerConfig())
    lost = dispatcher.translate(WorkerLost("tcp://gpu:1"), "gpu")
    assert isinstance(lost, GpuFailure) and not lost.restart
    assert lost.worker == "tcp://gpu:1" and "was lost while it ran the job" in lost.reason

    class Gone:
        address = "tcp://gpu:2"

    killed = KilledWorker("job-6", Gone(), 3)
    again = dispatcher.translate(killed, "gpu")
    assert isinstance(again, GpuFailure) and again.worker == "tcp://gpu:2"
    on_cpu = dispatcher.translate(killed, "cpu")
    assert isinstance(on_cpu, Internal) and "not billed" in on_cpu.message

"""The dispatcher's UNAVAILABLE when there is no cluster to ask (dispatch/dispatcher.py):
the embedded cluster not running, an external scheduler that cannot be reached."""

from __future__ import annotations

import asyncio
import socket

import dask
import pytest

from medcompute.server.config import ServerConfig
from medcompute.server.dispatch.dispatcher import Dispatcher
from medcompute.server.errors import Cancelled, Unavailable

pytestmark = pytest.mark.timeout(60)


def test_without_the_embedded_cluster_the_view_is_unavailable():
    dispatcher = Dispatcher(ServerConfig())         # never started
    with pytest.raises(Unavailable) as info:
        asyncio.run(dispatcher.view())
    assert info.value.field is None                 # the service's state, no request field's
    assert info.value.message == "the embedded Dask cluster is not running"
    assert asyncio.run(dispatcher.worker_count()) == 0
    assert asyncio.run(dispatcher.cpu_workers()) == 1   # a store task then fails as one


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]                   # nothing listens there once closed


def test_an_external_scheduler_that_cannot_be_reached_is_unavailable():
    address = f"tcp://127.0.0.1:{_closed_port()}"
    dispatcher = Dispatcher(ServerConfig(scheduler=address))
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(Unavailable) as info:
            asyncio.run(dispatcher.view())
    assert info.value.field is None
    assert info.value.message.startswith(f"the Dask scheduler at {address} cannot be "
                                         "reached (")



def test_a_scheduler_that_went_away_after_joining_is_unavailable():
    from distributed import Client, Scheduler

    async def main():
        async with Scheduler(host="127.0.0.1", port=0, dashboard_address=":0") as scheduler:
            address = scheduler.address
            dispatcher = Dispatcher(ServerConfig(scheduler=address))
            dispatcher.client = await Client(address, asynchronous=True)
            assert (await dispatcher.view()).cpu == ()          # joined: no worker yet
        try:                                                    # the scheduler has stopped
            with pytest.raises(Unavailable) as info:
                await dispatcher._identity(timeout=1.0)
        finally:
            await dispatcher.client.close()
        return address, info.value

    address, err = asyncio.run(asyncio.wait_for(main(), 30))
    assert err.field is None
    assert err.message == f"the Dask scheduler at {address} cannot be reached (TimeoutError)"

class FakeRunner:
    """Stands for a worker's runner (a Dask actor) whose worker is restarted to stop the
    kernel of a cancelled batch: a fault no test cluster makes on cue. ``cancel`` ends
    the call in flight as the restart does, with the comm closed."""

    def __init__(self):
        self.cancelled = asyncio.Event()

    async def run_batch(self, specs, _direct):
        await self.cancelled.wait()
        from distributed.comm.core import CommClosedError

        raise CommClosedError("the worker restarted")

    async def cancel(self, ids):
        self.cancelled.set()


def test_a_batch_whose_callers_went_away_is_not_sent_again_when_its_worker_goes():
    from medcompute.server.dispatch.dispatcher import WorkerView
    from medcompute.server.dispatch.small_jobs import CALLERS_GONE
    from medcompute.server.worker.specs import TaskSpec

    spec = TaskSpec("job-1", (), (), "/nonexistent/out")   # never run: the worker is gone

    async def main():
        dispatcher = Dispatcher(ServerConfig())
        dispatcher._view = WorkerView(cpu=("tcp://a",))
        dispatcher._runners = {"tcp://a": (FakeRunner(), None)}
        cancel: list = []
        sent = asyncio.create_task(dispatcher.send_batch("cpu", [spec], cancel))
        while not cancel:
            await asyncio.sleep(0)
        # every caller went away (SmallJobs.run): the batch marked, then cancelled
        stop = cancel[0]
        cancel.append(CALLERS_GONE)
        await stop()
        with pytest.raises(Cancelled) as info:
            await sent                          # not resent as a task (there is no client)
        return info.value

    err = asyncio.run(asyncio.wait_for(main(), 30))
    assert err.field is None
    assert err.message == "every caller of these jobs went away"

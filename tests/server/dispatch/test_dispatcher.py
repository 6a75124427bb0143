"""The dispatcher's choice of a CPU worker's runner for a direct call."""

import asyncio

from medcompute.server.config import ServerConfig
from medcompute.server.dispatch.dispatcher import Dispatcher, WorkerView


def _dispatcher() -> Dispatcher:
    dispatcher = Dispatcher(ServerConfig())
    dispatcher._view = WorkerView(cpu=("tcp://a", "tcp://b"))
    dispatcher._runners = {"tcp://a": ("runner a", None), "tcp://b": ("runner b", None)}
    return dispatcher


def test_equally_busy_runners_take_turns():
    dispatcher = _dispatcher()
    picks = [asyncio.run(dispatcher._runner())[0] for _ in range(4)]
    assert picks == ["tcp://a", "tcp://b", "tcp://a", "tcp://b"]


def test_the_least_busy_runner_goes_first():
    dispatcher = _dispatcher()
    dispatcher._runner_load["tcp://a"] = 1
    assert [asyncio.run(dispatcher._runner())[0] for _ in range(2)] == ["tcp://b", "tcp://b"]

"""The dispatcher's UNAVAILABLE when there is no cluster to ask (dispatch/dispatcher.py):
the embedded cluster not running, an external scheduler that cannot be reached."""

from __future__ import annotations

import asyncio
import socket

import dask
import pytest

from medcompute.server.config import ServerConfig
from medcompute.server.dispatch.dispatcher import Dispatcher
from medcompute.server.errors import Unavailable

pytestmark = pytest.mark.timeout(60)


def test_without_the_embedded_cluster_the_view_is_unavailable():
    dispatcher = Dispatcher(ServerConfig())         # never started
    with pytest.raises(Unavailable) as info:
        asyncio.run(dispatcher.view())
    assert info.value.field is None                 # the service's state, no request field's
    assert info.value.message == "the embedded Dask cluster is not running"
    assert asyncio.run(dispatcher.worker_count()) == 0


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

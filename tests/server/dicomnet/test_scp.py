"""The storage SCP's association bookkeeping: a series is marked released however
pynetdicom orders the release and the connection's close."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest
from pynetdicom import evt

from medcompute.server.dicomnet import scp as scp_module
from medcompute.server.dicomnet.scp import StorageSCP


class RecordingIngress:
    """Not a fake of a peer: it only records which series the SCP reports released."""

    def __init__(self):
        self.marked: list[set] = []

    async def released(self, keys):
        self.marked.append(set(keys))


@pytest.fixture
def scp():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    node = StorageSCP(RecordingIngress(), None, ae_title="MEDCOMPUTE", max_associations=2,
                      max_instance_bytes=1 << 20)
    node._loop = loop
    yield node
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def _association(node: StorageSCP, key=("alice", "1.2.3")):
    assoc = SimpleNamespace()
    node._callers[id(assoc)] = SimpleNamespace(subscriber="alice", ae_title="CT")
    node._series[id(assoc)] = {key}
    return assoc


def test_a_release_reported_after_the_connection_closed_still_marks_the_series(scp):
    assoc = _association(scp)
    scp._on_ended(SimpleNamespace(event=evt.EVT_CONN_CLOSE, assoc=assoc))
    scp._on_released(SimpleNamespace(event=evt.EVT_RELEASED, assoc=assoc))
    assert scp.ingress.marked == [{("alice", "1.2.3")}]


def test_an_aborted_association_releases_nothing(scp):
    assoc = _association(scp)
    scp._on_ended(SimpleNamespace(event=evt.EVT_ABORTED, assoc=assoc))
    scp._on_released(SimpleNamespace(event=evt.EVT_RELEASED, assoc=assoc))
    assert scp.ingress.marked == [] and not scp._series and not scp._callers


def test_a_closed_connection_without_a_release_is_forgotten_after_the_grace(scp, monkeypatch):
    monkeypatch.setattr(scp_module, "RELEASE_GRACE", 0.05)
    assoc = _association(scp)
    scp._on_ended(SimpleNamespace(event=evt.EVT_CONN_CLOSE, assoc=assoc))
    deadline = time.monotonic() + 10
    while scp._series and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not scp._series and not scp._callers and scp.ingress.marked == []

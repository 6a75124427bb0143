"""app.start's one teardown: what was built closes in the reverse order of its
construction, exactly once, whether a later part fails to start or the server stops.

The parts are the real ones (SQLite books in a temporary data directory, the gRPC server,
the DICOM node, the metrics endpoint), each recording its close; only the Dask cluster is
a fake (:class:`FakeDispatcher`), so no worker process starts.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import socket
import sqlite3

import pytest

from medcompute.server import app
from medcompute.server.config import ServerConfig
from medcompute.server.errors import FailedPrecondition
from medcompute.server.storage.db import FILENAME

#: The teardown of a server started with a DICOM node and a metrics endpoint, from the
#: last part built to the first (GRACE: the grace its gRPC server stops with).
TEARDOWN = ["DicomNode.stop", "server.stop(GRACE)", "SourceBook.close", "PushBook.close",
            "RuleBook.close", "NodeRegistry.close", "JobRunner.stop", "AuditLog.close",
            "KeyStore.close", "BillingService.close", "Metrics.stop", "ImageStore.close",
            "FakeDispatcher.close", "Catalog.close", "Database.close"]


class FakeDispatcher:
    """Stands in for the Dask dispatcher: one CPU worker, no cluster; ``fail`` makes its
    start raise."""

    fail = False

    def __init__(self, config):
        self.config = config
        self.scheduler_address = ""
        self.listeners = []

    async def start(self):
        if self.fail:
            raise RuntimeError("no Dask cluster")

    async def close(self):
        pass

    async def call(self, *args, **kwargs):
        raise AssertionError("nothing is sent to the cluster here")

    async def worker_kinds(self):
        return 1, 0

    async def cpu_workers(self):
        return 1

    def add_listener(self, listener):
        self.listeners.append(listener)

    def remove_listener(self, listener):
        self.listeners.remove(listener)


def _recording(cls, method: str, events: list):
    """``cls`` whose ``method`` also appends "Class.method" to ``events``."""
    original = getattr(cls, method)
    label = f"{cls.__name__}.{method}"
    if inspect.iscoroutinefunction(original):
        async def recorded(self, *args, **kwargs):
            events.append(label)
            return await original(self, *args, **kwargs)
    else:
        def recorded(self, *args, **kwargs):
            events.append(label)
            return original(self, *args, **kwargs)
    return type(cls.__name__, (cls,), {method: recorded})


@pytest.fixture
def events(monkeypatch):
    """What the parts of app.start do at teardown, in order."""
    events: list[str] = []
    monkeypatch.setattr(app, "Dispatcher", _recording(FakeDispatcher, "close", events))
    for name, method in (("Catalog", "close"), ("ImageStore", "close"), ("Metrics", "stop"),
                         ("BillingService", "close"), ("KeyStore", "close"),
                         ("AuditLog", "close"), ("JobRunner", "stop"),
                         ("NodeRegistry", "close"), ("RuleBook", "close"),
                         ("PushBook", "close"), ("SourceBook", "close"),
                         ("DicomNode", "stop"), ("Database", "close")):
        monkeypatch.setattr(app, name, _recording(getattr(app, name), method, events))
    real_server = app._grpc_server

    def grpc_server(*args, **kwargs):
        server = real_server(*args, **kwargs)
        stop = server.stop

        async def recorded_stop(grace):
            events.append(f"server.stop({grace})")
            return await stop(grace)
        server.stop = recorded_stop
        return server
    monkeypatch.setattr(app, "_grpc_server", grpc_server)
    return events


def _teardown(grace, first: str | None = None) -> list[str]:
    """TEARDOWN from ``first`` on, the gRPC server stopping with ``grace``."""
    steps = [s.replace("GRACE", str(grace)) for s in TEARDOWN]
    return steps[[s.split("(")[0] for s in steps].index(first):] if first else steps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_a_stop_closes_every_part_in_reverse_once(tmp_path, events):
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, dicom_port=0,
                          metrics_port=0)

    async def main():
        running = await app.start(config)
        assert running.dicom_port and running.metrics_port and not events
        assert not _refused(running.port)
        await running.stop(grace=0.5)
        assert events == _teardown(0.5)
        assert _refused(running.port) and _refused(running.dicom_port)
        await running.stop(grace=0.5)         # a second stop closes nothing twice
        assert events == _teardown(0.5)
    _run(main())


def test_a_failed_cluster_start_closes_what_was_built_before_it(tmp_path, events,
                                                                monkeypatch):
    monkeypatch.setattr(FakeDispatcher, "fail", True)
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, dicom_port=0)
    with pytest.raises(RuntimeError, match="no Dask cluster"):
        _run(app.start(config))
    assert events == _teardown(None, first="BillingService.close")


def test_a_taken_dicom_port_closes_the_grpc_server_then_the_rest(tmp_path, events):
    grpc_port = _free_port()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        config = ServerConfig(address=f"127.0.0.1:{grpc_port}", data_dir=tmp_path,
                              dicom_port=taken.getsockname()[1])
        with pytest.raises(FailedPrecondition) as err:
            _run(app.start(config))
    assert err.value.field == "--dicom-port"
    # The node stops what it had started itself, once: it is handed to the stack only
    # once it listens.
    assert events == ["DicomNode.stop", *_teardown(None, first="server.stop")]
    assert _refused(grpc_port)


def test_a_taken_metrics_port_stops_the_dicom_node_first(tmp_path, events):
    grpc_port = _free_port()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        config = ServerConfig(address=f"127.0.0.1:{grpc_port}", data_dir=tmp_path,
                              dicom_port=0, metrics_port=taken.getsockname()[1])
        with pytest.raises(OSError):
            _run(app.start(config))
    assert events == _teardown(None)
    assert _refused(grpc_port)


def test_a_failing_close_does_not_keep_the_others_open(tmp_path, events, monkeypatch):
    """One part that cannot close (a full disk, say) does not skip the closes after it;
    its error is raised once every part has had its turn."""
    class BillingThatCannotClose(app.BillingService):     # the recording one, then fails
        def close(self):
            super().close()
            raise OSError("cannot close")
    monkeypatch.setattr(app, "BillingService", BillingThatCannotClose)
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path)

    async def main():
        running = await app.start(config)
        with pytest.raises(OSError, match="cannot close"):
            await running.stop(grace=0)
    _run(main())
    assert events == [s for s in _teardown(0) if s != "DicomNode.stop"]


def _connections_to(path) -> int:
    """The open sqlite3 connections of this process to the database file ``path``."""
    gc.collect()
    found = 0
    for obj in gc.get_objects():
        if isinstance(obj, sqlite3.Connection):
            try:
                files = [row[2] for row in obj.execute("PRAGMA database_list")]
            except sqlite3.ProgrammingError:        # closed
                continue
            found += str(path) in files
    return found


def test_a_server_holds_one_catalog_connection_shared_by_every_store(tmp_path, monkeypatch):
    monkeypatch.setattr(app, "Dispatcher", FakeDispatcher)
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, dicom_port=0)
    path = tmp_path / FILENAME

    async def main():
        running = await app.start(config)
        try:
            assert _connections_to(path) == 1
            db, dicom, billing = running.db, running.dicom, running.billing
            stores = [running.catalog, running.store.catalog, running.store.fetches,
                      running.store.studies, billing.book, billing.ledger, billing.fetches,
                      billing.deliveries, running.guard.keys, running.guard.audit,
                      dicom.registry, dicom.rules, dicom.pushes, dicom.sources, dicom.audit]
            assert all(store.db is db for store in stores)
            assert db.connection is running.catalog.db.connection
        finally:
            await running.stop(grace=0)
        assert _connections_to(path) == 0
    _run(main())


# -- one address, one server (or the processes of one --processes group) ------------------

@pytest.mark.parametrize("second", [{}, {"processes": 2}], ids=["alone", "a group"])
@pytest.mark.parametrize("first", [{}, {"processes": 2}], ids=["alone", "a group"])
def test_a_second_server_on_a_taken_address_stops_naming_it(tmp_path, monkeypatch, first,
                                                           second):
    """Before anything is built (no cluster started): the address in use, with the flag."""
    monkeypatch.setattr(app, "Dispatcher", FakeDispatcher)

    async def main():
        running = await app.start(ServerConfig(address="127.0.0.1:0", data_dir=tmp_path / "a",
                                               **first))
        try:
            address = f"127.0.0.1:{running.port}"
            started = []
            monkeypatch.setattr(FakeDispatcher, "start", lambda self: started.append(self))
            with pytest.raises(FailedPrecondition) as err:
                await app.start(ServerConfig(address=address, data_dir=tmp_path / "b",
                                             **second))
            assert started == []
            return address, err.value
        finally:
            await running.stop(grace=0)

    address, err = _run(main())
    assert err.field == "--address"
    assert f"address {address} is in use" in err.message


def test_the_processes_of_one_group_share_its_address(tmp_path, monkeypatch):
    """The first process of ``--processes 2`` binds with SO_REUSEPORT; an extra process of
    the group (``joins_group``, front_ends.py) binds beside it; a server of its own not."""
    monkeypatch.setattr(app, "Dispatcher", FakeDispatcher)

    async def main():
        first = await app.start(ServerConfig(address="127.0.0.1:0", data_dir=tmp_path,
                                             processes=2))
        address = f"127.0.0.1:{first.port}"
        try:
            extra = await app.start(ServerConfig(address=address, data_dir=tmp_path,
                                                 joins_group=True, spool_name="p1",
                                                 sweep_store=False))
            assert extra.port == first.port
            await extra.stop(grace=0)
        finally:
            await first.stop(grace=0)
        alone = await app.start(ServerConfig(address="127.0.0.1:0", data_dir=tmp_path))
        try:       # a lone server does not share: not even with a group's extra process
            with pytest.raises(FailedPrecondition):
                await app.start(ServerConfig(address=f"127.0.0.1:{alone.port}",
                                             data_dir=tmp_path, joins_group=True))
        finally:
            await alone.stop(grace=0)
    _run(main())


def test_a_second_dicom_listener_on_a_taken_dicom_port_stops(tmp_path, monkeypatch):
    """pynetdicom binds with SO_REUSEADDR only: the DICOM port of a running server is
    refused to the next one, naming the flag."""
    monkeypatch.setattr(app, "Dispatcher", FakeDispatcher)

    async def main():
        running = await app.start(ServerConfig(address="127.0.0.1:0", data_dir=tmp_path / "a",
                                               dicom_port=0))
        try:
            with pytest.raises(FailedPrecondition) as err:
                await app.start(ServerConfig(address="127.0.0.1:0", data_dir=tmp_path / "b",
                                             dicom_port=running.dicom_port))
            return err.value
        finally:
            await running.stop(grace=0)

    err = _run(main())
    assert err.field == "--dicom-port" and "cannot listen on" in err.message

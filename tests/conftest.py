"""Shared fixtures: a real gRPC server on port 0 with a real Dask LocalCluster of
worker processes and a real SQLite catalog in a temporary data directory."""

from __future__ import annotations

import asyncio
import compileall
import sys
import threading
from pathlib import Path

import pytest


def _write_bytecode() -> None:
    """The project's bytecode, written once per session where the environment turns its
    writing off (PYTHONDONTWRITEBYTECODE, ``python -B``): each server, Dask worker and
    command-line process the tests start then loads it instead of compiling every module
    of the project again (about 0.3 s of each start on a 2-core machine)."""
    if not sys.flags.dont_write_bytecode:
        return                      # Python writes it itself as modules are imported
    root = Path(__file__).resolve().parents[1]
    for folder in ("server", "client", "kernels", "proto", "tests", "benchmarks"):
        compileall.compile_dir(root / folder, quiet=1)


_write_bytecode()

from medcompute.client import Client  # noqa: E402
from medcompute.server.app import start  # noqa: E402
from medcompute.server.config import ServerConfig  # noqa: E402

STARTUP_TIMEOUT = 120


class ServerThread:
    """The server running on its own event loop in a background thread, so that
    tests can use the blocking client against it."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.running = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="medcompute-server")

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.running = self.call(start(self.config), timeout=STARTUP_TIMEOUT)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.call(self.running.stop(grace=1.0), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()

    def call(self, coro, timeout: float = 60):
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def address(self) -> str:
        return self.running.address

    @property
    def catalog(self):
        return self.running.catalog


@pytest.fixture(scope="session")
def server_thread():
    """The ServerThread class, for modules that need a cluster of another shape."""
    return ServerThread


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> ServerThread:
    data_dir: Path = tmp_path_factory.mktemp("data")
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=2)
    with ServerThread(config) as running:
        yield running


@pytest.fixture
def client(server) -> Client:
    with Client(server.address, timeout=120) as c:
        yield c


class RawCaller:
    """Sends hand-made request messages, for the tests of malformed requests."""

    def __init__(self, address: str):
        import grpc

        from medcompute.proto.v1 import processing_pb2_grpc

        self._channel = grpc.insecure_channel(address)
        self.stub = processing_pb2_grpc.ProcessingServiceStub(self._channel)

    def process(self, messages, timeout: float = 60):
        """All responses of a Process call; grpc.RpcError if it fails."""
        return list(self.stub.Process(iter(messages), timeout=timeout))

    def close(self):
        self._channel.close()


@pytest.fixture
def raw(server) -> RawCaller:
    caller = RawCaller(server.address)
    yield caller
    caller.close()


# -- the catalog's two backends ----------------------------------------------------------
@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the session (tests/postgres_peer.py)."""
    from tests.postgres_peer import PostgresServer
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_at(request, tmp_path):
    """Where a test's catalog is, on each backend: the data directory (its SQLite file)
    or the URL of a fresh schema on the session's PostgreSQL; a Store or a Database takes
    either."""
    if request.param == "sqlite":
        return tmp_path
    return request.getfixturevalue("postgres").fresh_url()


"""Limits under a burst: over a limit answers RESOURCE_EXHAUSTED at once, the work in
flight finishes, and the next call within the limits succeeds."""

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from medcompute.client import Client, ServiceError
from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SLOW = ["median:size=5"] * 15
VOLUME = np.random.default_rng(0).normal(size=(16, 64, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def limited(tmp_path_factory, server_thread):
    data = tmp_path_factory.mktemp("limited")
    keys = KeyStore(data)
    tokens = {name: keys.create(name, "process,store")[1] for name in ("a", "b")}
    keys.close()
    # Three workers, so that every call the limits let in runs at once.
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=3, gpu_workers=0,
                          require_keys=True, max_jobs_per_subscriber=2, max_queue=3,
                          max_streams=4, max_image_bytes=1 << 20)
    with server_thread(config) as server:
        server.tokens = tokens
        yield server


class Running:
    """Starts slow calls and waits until the server has accepted each (a job exists)."""

    def __init__(self, server):
        self.server = server
        self.pool = ThreadPoolExecutor(8)
        self.accepted = threading.Semaphore(0)
        server.running.dispatcher.add_listener(lambda message: self.accepted.release())

    def start(self, who: str, n: int):
        futures = []
        for _ in range(n):
            futures.append(self.pool.submit(self._call, who))
            assert self.accepted.acquire(timeout=60), "the slow call did not start"
        return futures

    def _call(self, who):
        with Client(self.server.address, api_key=self.server.tokens[who], timeout=120) as c:
            return c.process(VOLUME, SLOW, device="cpu")


def _refused(server, who, image=VOLUME, ops=("gaussian:sigma=1",)):
    with Client(server.address, api_key=server.tokens[who], timeout=60) as c:
        with pytest.raises(ServiceError) as info:
            c.process(image, list(ops))
    return info.value


def _ok(server, who):
    with Client(server.address, api_key=server.tokens[who], timeout=60) as c:
        return c.process(VOLUME[:2], ["gaussian:sigma=1"])


def test_jobs_per_subscriber_and_the_queue(limited):
    running = Running(limited)
    a_jobs = running.start("a", 2)
    error = _refused(limited, "a")
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_jobs_per_subscriber=2" in error.details
    # Refused at once: the two calls in flight have not ended (it did not wait for a slot).
    assert not any(f.done() for f in a_jobs)
    # Another subscriber still gets in, until the server's queue (3) is full.
    b_jobs = running.start("b", 1)
    error = _refused(limited, "b")
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_queue=3" in error.details
    # The work in flight finishes; then calls within the limits succeed again.
    for f in a_jobs + b_jobs:
        assert f.result(timeout=200).array.shape == VOLUME.shape
    assert _ok(limited, "a").array.shape == (2, 64, 64)
    assert _ok(limited, "b").array.shape == (2, 64, 64)


def test_a_burst_of_concurrent_calls(limited):
    """Eight calls at once from one subscriber: two run, six are refused at once."""
    barrier = threading.Barrier(8)

    def call(_):
        with Client(limited.address, api_key=limited.tokens["a"], timeout=120) as c:
            barrier.wait(timeout=30)
            try:
                c.process(VOLUME, SLOW, device="cpu")
                return "OK"
            except ServiceError as exc:
                return exc.code.name

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(call, range(8)))
    assert outcomes.count("OK") >= 2
    assert set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED"}
    assert outcomes.count("RESOURCE_EXHAUSTED") >= 4
    assert _ok(limited, "a").array.shape == (2, 64, 64)


def test_image_size_limit(limited):
    big = np.zeros((2, 512, 512), np.float32)   # 2 MiB > 1 MiB
    error = _refused(limited, "a", image=big)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "header.input.inline.shape" in error.details and "at most 1048576" in error.details

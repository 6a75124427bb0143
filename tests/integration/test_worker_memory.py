"""A kernel's working memory is checked against the workers' before a task starts, and a
call whose deadline passes stops its running kernel so the next call does not wait behind
it (issue 20, item 3)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from medcompute.client import Client, ServiceError
from medcompute.server.config import ServerConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def small_workers(server_thread, tmp_path_factory):
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path_factory.mktemp("memory"),
                          workers=1, gpu_workers=0, worker_memory="3GiB")
    with server_thread(config) as server:
        yield server


@pytest.mark.parametrize("shape, op, field", [
    ((128, 128), "median:size=301", "header.pipeline[0].median.size"),
    ((64, 64), "median:size=[1024]", "header.pipeline[0].median.size"),
    ((128, 128), "median:size_mm=301", "header.pipeline[0].median.size_mm"),
])
def test_a_median_window_the_worker_cannot_hold_is_refused(small_workers, shape, op, field):
    with Client(small_workers.address, timeout=120) as c:
        with pytest.raises(ServiceError) as info:
            c.process(np.zeros(shape, np.float32), [op], spacing=(1.0, 1.0))
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details
        assert field in info.value.details and "GiB" in info.value.details
        ok = c.process(np.ones((8, 8), np.float32), ["median:size=3"])
        np.testing.assert_allclose(ok.array, 1.0)


def test_a_call_after_an_expired_long_call_completes(small_workers):
    # About a minute of median on one core (1,000,000 voxels x a 6,561-voxel window): the
    # caller gives up after 3 s; the worker's cancellation hook stops the kernel.
    image = np.random.default_rng(0).random((1000, 1000), dtype=np.float32)
    with Client(small_workers.address, timeout=120) as c:
        with pytest.raises(ServiceError) as info:
            c.process(image, ["median:size=81"], timeout=3)
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        small = np.arange(64, dtype=np.float32).reshape(8, 8)
        # Well under the minute the abandoned kernel would still run.
        ok = c.process(small, ["gaussian:sigma=1"], timeout=40)
        assert ok.array.shape == (8, 8)


def test_a_call_after_an_expired_long_task_completes(small_workers):
    # Over the batching size: each job is a Dask task of its own, cancelled through its
    # future; the worker's watcher stops the kernel that would still run for a minute.
    image = np.random.default_rng(1).random((1100, 1100), dtype=np.float32)
    with Client(small_workers.address, timeout=120) as c:
        with pytest.raises(ServiceError) as info:
            c.process(image, ["median:size=81"], timeout=3)
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        ok = c.process(image, ["gaussian:sigma=1"], timeout=40)
        assert ok.array.shape == image.shape

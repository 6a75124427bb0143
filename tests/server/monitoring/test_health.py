"""The health watch: what it publishes as the workers and the free space change."""

from __future__ import annotations

import asyncio

from medcompute.server.monitoring.health import STORAGE_HEALTH_NAME, watch_health
from medcompute.server.monitoring.metrics import Metrics
from medcompute.server.storage.space import FreeSpaceReserve, MinFree
from tests.space_helpers import MIB, FakeStatvfs


class FakeDispatcher:
    """Answers worker_kinds from a script of (cpu, gpu) counts, the last one repeated."""

    def __init__(self, *kinds):
        self.kinds = list(kinds)
        self.asked = 0

    async def worker_kinds(self):
        self.asked += 1
        return self.kinds[min(self.asked, len(self.kinds)) - 1]


def _watch(dispatcher, looks: int, **kwargs) -> list[tuple[str, bool]]:
    """What watch_health publishes in its first ``looks`` looks."""
    published = []

    async def publish(name, serving):
        published.append((name, serving))

    async def main():
        task = asyncio.create_task(watch_health(dispatcher, publish, ("", "svc"), interval=0,
                                                **kwargs))
        while dispatcher.asked < looks:
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    asyncio.run(asyncio.wait_for(main(), 30))
    return published


def test_the_worker_services_follow_the_workers_and_publish_changes_only():
    metrics = Metrics()
    try:
        published = _watch(FakeDispatcher((1, 0), (1, 0), (0, 0), (0, 1)), looks=5,
                           metrics=metrics)
        assert published == [("", True), ("svc", True), ("", False), ("svc", False),
                             ("", True), ("svc", True)]
        text = metrics.render().decode()
        assert 'medcompute_workers{kind="gpu"} 1.0' in text
    finally:
        metrics.stop()


def test_the_storage_is_published_before_the_workers(tmp_path):
    statvfs = FakeStatvfs(total=100 * MIB, free=5 * MIB)
    space = FreeSpaceReserve(tmp_path, MinFree(bytes=10 * MIB), statvfs=statvfs)
    published = _watch(FakeDispatcher((0, 0)), looks=3, space=space)
    assert published == [(STORAGE_HEALTH_NAME, False), ("", False), ("svc", False)]


def test_the_catalog_and_its_backend_are_published_and_follow_the_database():
    """A real PostgreSQL, stopped and started: the catalog's two health names follow."""
    from medcompute.server.monitoring.health import CATALOG_HEALTH_NAME
    from medcompute.server.storage.db import Database
    from tests.postgres_peer import PostgresServer

    with PostgresServer() as pg:
        db = Database(url=pg.url, timeout=1)
        try:
            up = _watch(FakeDispatcher((1, 0)), looks=2, db=db)
            assert up[:2] == [(CATALOG_HEALTH_NAME, True),
                              (f"{CATALOG_HEALTH_NAME}.postgresql", True)]
            pg.stop()
            down = _watch(FakeDispatcher((1, 0)), looks=2, db=db)
            assert down[:2] == [(CATALOG_HEALTH_NAME, False),
                                (f"{CATALOG_HEALTH_NAME}.postgresql", False)]
        finally:
            db.close()


def test_a_sqlite_catalog_is_published_under_its_backend(tmp_path):
    from medcompute.server.storage.db import Database

    db = Database(tmp_path)
    try:
        published = _watch(FakeDispatcher((1, 0)), looks=2, db=db)
        assert published[:2] == [("medcompute.catalog", True),
                                 ("medcompute.catalog.sqlite", True)]
    finally:
        db.close()


def test_a_gpu_worker_that_cannot_compile_its_kernels_is_not_serving_in_health():
    # As on a GPU without NVRTC: the warm-up failed; its jobs would all run on CPU.
    from medcompute.server.monitoring.health import GPU_HEALTH_NAME

    script = iter([{"gpu-0": {"state": "running"}},
                   {"gpu-0": {"state": "failed", "error": "CompileException: nvrtc"}}])
    last = {}

    async def gpu_states():
        last.update(next(script, last))
        return dict(last)
    published = _watch(FakeDispatcher((1, 1)), looks=4, gpu_states=gpu_states)
    gpu = [serving for name, serving in published if name == GPU_HEALTH_NAME]
    assert gpu == [True, False]
    # Without GPU workers nothing is published for the GPU.
    published = _watch(FakeDispatcher((1, 0)), looks=3, gpu_states=gpu_states)
    assert GPU_HEALTH_NAME not in [name for name, _ in published]

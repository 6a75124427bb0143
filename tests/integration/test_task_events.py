"""A worker says when a job starts: once per job, and once for all the jobs of a batch of
small ones (an event per job would cost more than the job)."""

import threading

import numpy as np
import pytest

from medcompute.client import Client
from medcompute.server.worker import tasks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _specs(tmp_path, n: int) -> list[tasks.TaskSpec]:
    path = tmp_path / "in.raw"
    np.arange(12, dtype=np.float32).reshape(3, 4).tofile(path)
    image = tasks.InputSpec(str(path), "raw", (3, 4), "<f4")
    return [tasks.TaskSpec(job_id=f"events-{tmp_path.name}-{k}", inputs=(image,), ops=(),
                           out_path=str(tmp_path / f"out{k}")) for k in range(n)]


def _events_of(server, specs) -> list[dict]:
    ids = {s.job_id for s in specs}
    seen, lock = [], threading.Lock()

    def listener(message):
        if ids & set(message.get("jobs") or [message.get("job")]):
            with lock:
                seen.append(message)

    dispatcher = server.running.dispatcher
    dispatcher.add_listener(listener)
    try:
        async def run():
            return await dispatcher.client.submit(tasks.run_batch, specs, pure=False)

        results = server.call(run())
        assert all(isinstance(r, tasks.TaskResult) for r in results), results
        # Events travel through the scheduler: wait for the one(s) expected.
        for _ in range(100):
            if seen:
                break
            threading.Event().wait(0.05)
        threading.Event().wait(0.3)          # and for any further one
    finally:
        dispatcher.remove_listener(listener)
    return seen


def test_a_batch_of_jobs_is_announced_once_naming_them_all(server, tmp_path):
    specs = _specs(tmp_path, 3)
    events = _events_of(server, specs)
    assert len(events) == 1
    assert events[0]["event"] == "started"
    assert list(events[0]["jobs"]) == [s.job_id for s in specs]
    assert events[0]["worker"]


def test_a_job_alone_is_announced_as_before(server, tmp_path):
    [spec] = _specs(tmp_path, 1)
    events = _events_of(server, [spec])
    assert len(events) == 1 and events[0]["job"] == spec.job_id and "jobs" not in events[0]


def test_jobs_sent_by_a_direct_call_are_told_by_the_server_with_their_worker(server):
    """No event crosses the scheduler for them: the dispatcher, which chose the worker,
    tells its listeners itself."""
    seen, lock = [], threading.Lock()

    def listener(message):
        with lock:
            seen.append(message)

    dispatcher = server.running.dispatcher
    dispatcher.add_listener(listener)
    try:
        with Client(server.address, timeout=60) as c:
            r = c.process(np.arange(64, dtype=np.int16).reshape(8, 8), ["gaussian:sigma=1"],
                          device="cpu")
        threading.Event().wait(0.3)          # an event from the worker would come by now
    finally:
        dispatcher.remove_listener(listener)
    mine = [m for m in seen if r.job_id in (m.get("jobs") or [m.get("job")])]
    assert [(m["event"], m["worker"]) for m in mine] == [("sent", r.header.worker)]

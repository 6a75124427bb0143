"""Dynamic batching end to end: concurrent single-image Process calls of one pipeline and
geometry computed as one stack, each with its own job, result, usage record and audit
entry; a call's deadline touches no other call; a full subscriber queue is refused."""

import threading
import time

import grpc
import numpy as np
import pytest

from medcompute.client import Client, ServiceError
from medcompute.proto.v1 import processing_pb2
from medcompute.server.config import ServerConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SHAPE = (16, 16)                      # 1 KiB of float32 work: four fill a stack
OPS = ["gaussian:sigma=1", "edge:operator=sobel"]


@pytest.fixture(scope="module")
def served(server_thread, tmp_path_factory):
    # A group leaves only once full (the delay is an hour): which calls share a stack is
    # then decided by the test, not by timing.
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path_factory.mktemp("data"),
                          workers=1, gpu_workers=0, batch_delay=3600.0,
                          stack_bytes=4 * 4 * 256, batch_queue=6)
    with server_thread(config) as server:
        yield server


def _images(n, seed, shape=SHAPE):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 3000, size=shape).astype(np.int16) for _ in range(n)]


def _concurrently(address, images, ops=OPS, **kwargs):
    """Each image by its own client, at once; (results, errors) by image index."""
    results, errors = {}, {}

    def call(i, image):
        with Client(address, timeout=120) as c:
            try:
                results[i] = c.process(image, ops, device="cpu", **kwargs)
            except ServiceError as exc:
                errors[i] = exc

    threads = [threading.Thread(target=call, args=(i, image)) for i, image in enumerate(images)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_concurrent_calls_share_a_stack_each_with_its_own_job_usage_and_audit(
        served, server):
    images = _images(4, seed=1)
    results, errors = _concurrently(served.address, images)
    assert errors == {}
    with Client(server.address, timeout=120) as alone, \
            Client(served.address, timeout=60) as c:
        for i, image in enumerate(images):
            expected = alone.process(image, OPS, device="cpu")    # batched or not: the same
            assert results[i].array.tobytes() == expected.array.tobytes()
            assert results[i].applied == expected.applied
        assert len({r.job_id for r in results.values()}) == 4
        audit = c.audit(limit=1000)
        for r in results.values():
            usage = served.call(served.catalog.usage_for(r.job_id))
            assert len(usage) == 1 and usage[0]["images"] == 1
            assert usage[0]["voxels"] == 256 and r.usage["job_id"] == r.job_id
            assert [(e.action, e.outcome) for e in audit if e.object_id == r.job_id] == [
                ("process", "OK")]


def test_a_call_past_its_deadline_ends_alone_and_the_others_succeed(served):
    [late] = _images(1, seed=2)
    started = time.time()
    with Client(served.address, timeout=60) as c:
        with pytest.raises(ServiceError) as info:
            # Alone in its group, it waits for three more until its deadline.
            c.process(late, OPS, device="cpu", timeout=1.0)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    late_jobs = _wait_jobs(served, "CANCELLED", 1, since=started)
    # Four calls now fill a stack: the expired call took no place in it.
    results, errors = _concurrently(served.address, _images(4, seed=3))
    assert errors == {} and len(results) == 4
    [job] = late_jobs
    assert len(served.call(served.catalog.usage_for(job["id"]))) == 1


def test_a_full_subscriber_queue_answers_resource_exhausted(served):
    shape = (12, 12)                  # three of these do not fill a stack
    ref = f"inline:{12 * 12 * 2}"
    # Six calls, each on a channel of its own, wait in the queue (a generous deadline
    # bounds a hang); closing their channels cancels them once the check is done.
    clients = [Client(served.address, timeout=120) for _ in range(6)]
    errors = {}

    def call(i, c, image):
        try:
            c.process(image, OPS, device="cpu")
        except ServiceError as exc:
            errors[i] = exc.code

    waiting = [threading.Thread(target=call, args=(i, c, image)) for i, (c, image) in
               enumerate(zip(clients, _images(6, seed=4, shape=shape), strict=True))]
    started = time.time()
    for t in waiting:
        t.start()
    try:
        _wait_jobs(served, None, 6, since=started, ref=ref)
        with Client(served.address, timeout=60) as c:
            with pytest.raises(ServiceError) as info:
                c.process(_images(1, seed=5, shape=shape)[0], OPS, device="cpu")
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "batch_queue=6" in info.value.details
    finally:
        for c in clients:
            c.close()
        for t in waiting:
            t.join()
    assert errors == dict.fromkeys(range(6), grpc.StatusCode.CANCELLED)
    # The cancelled calls left the queue: their jobs ended cancelled.
    _wait_jobs(served, "CANCELLED", 6, since=started, ref=ref)


def test_priority_is_a_request_field_checked_by_the_server(served):
    from medcompute.client.calls import _descriptor
    from medcompute.client.io import LocalImage
    from medcompute.client.ops import parse_op
    from medcompute.proto.v1 import image_pb2, processing_pb2_grpc

    image = _images(1, seed=6)[0]
    with Client(served.address, timeout=60) as c:
        with pytest.raises(ValueError, match="priority"):
            c.process(image, OPS, priority="urgent")
    header = processing_pb2.ProcessHeader(
        pipeline=[parse_op("mean:size=3")],
        input=image_pb2.ImageSource(inline=_descriptor(LocalImage(image, None), 0)),
        priority=9)
    with grpc.insecure_channel(served.address) as channel:
        stub = processing_pb2_grpc.ProcessingServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Process(iter([processing_pb2.ProcessRequest(header=header)]),
                              timeout=30))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert info.value.details().startswith("header.priority")


def test_high_and_low_priority_calls_are_served(served):
    images = _images(4, seed=7)
    high, errors = _concurrently(served.address, images, priority="high")
    assert errors == {} and len(high) == 4


def _wait_jobs(server, state, n, since=0.0, ref=f"inline:{16 * 16 * 2}", timeout=60.0):
    """At least ``n`` jobs of input ``ref`` created since ``since`` (in ``state``)."""
    import json
    import sqlite3

    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(server.config.data_dir / "catalog.sqlite3") as db:
            records = [json.loads(row[0]) for row in db.execute("SELECT record FROM jobs")]
        rows = [r for r in records if r["inputs"] == [ref] and r["created_at"] >= since
                and (state is None or r["state"] == state)]
        if len(rows) >= n:
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)

"""Asynchronous jobs on a real server and Dask cluster: submit, watch, fetch, cancel,
list, idempotency keys and the errors of each call."""

import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from medcompute.client import Client, ServiceError
from medcompute.proto.v1 import image_pb2, jobs_pb2, jobs_pb2_grpc
from medcompute.server.config import ServerConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SLOW = ["median:size=5"] * 40   # a few seconds on one worker


def _img(shape=(48, 48), seed=0):
    return np.random.default_rng(seed).normal(100, 20, shape).astype(np.float32)


def _usage_rows(server, job_id):
    with sqlite3.connect(server.catalog.path) as db:
        return [json.loads(r[0]) for r in db.execute(
            "SELECT record FROM usage WHERE job_id = ?", (job_id,))]


@pytest.fixture(scope="module")
def busy(tmp_path_factory, server_thread):
    """A server that runs one asynchronous job at a time (max_queue=1): later ones wait;
    volumes over 256 KiB are split into slabs."""
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path_factory.mktemp("busy"),
                          workers=1, gpu_workers=0, max_queue=1, max_pending_jobs=4,
                          split_bytes=256 << 10)
    with server_thread(config) as server:
        yield server


def test_submit_returns_at_once_and_the_result_equals_a_synchronous_call(client, server):
    image = _img()
    info = client.submit(image, ["gaussian:sigma=2", "edge:operator=sobel"], label="tour")
    assert info.state in (jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_RUNNING,
                          jobs_pb2.JOB_STATE_SUCCEEDED)
    assert info.asynchronous and info.label == "tour" and info.queued_at >= info.created_at
    events = list(client.watch(info.job_id, timeout=60))
    assert events[-1].job.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert events[-1].job.progress == 1.0 and events[-1].job.result_available
    states = [e.job.state for e in events]
    assert states == sorted(states)              # never backwards
    result = client.fetch(info.job_id)
    expected = client.process(image, ["gaussian:sigma=2", "edge:operator=sobel"]).array
    np.testing.assert_array_equal(result.array, expected)
    assert [a["name"] for a in result.applied] == ["gaussian", "edge"]
    assert result.job_id == info.job_id
    [usage] = _usage_rows(server, info.job_id)
    assert usage["state"] == "SUCCEEDED" and usage["bytes_in"] == image.nbytes
    assert result.header.usage.bytes_out == usage["bytes_out"] > 0
    # Inputs are removed once the job has ended; the result stays for fetching.
    job_dir = server.config.data_dir / "jobs" / info.job_id
    assert sorted(p.name for p in job_dir.iterdir()) == ["out"]


def test_a_fetched_blosc_result_is_shuffled_by_its_voxel_size_as_a_process_reply(client,
                                                                                server):
    image = _img(seed=7)
    info = client.submit(image, ["gaussian:sigma=1"], compression="blosc")
    assert client.wait(info.job_id, timeout=60).state == jobs_pb2.JOB_STATE_SUCCEEDED
    with grpc.insecure_channel(server.address) as channel:
        replies = list(jobs_pb2_grpc.JobsServiceStub(channel).Fetch(
            jobs_pb2.FetchRequest(job_id=info.job_id), timeout=60))
    output = replies[0].header.output
    assert (output.encoding, output.dtype) == (image_pb2.ENCODING_RAW,
                                               image_pb2.DATA_TYPE_FLOAT32)
    payloads = [r.chunk.data for r in replies[1:]]
    # A BLOSC chunk's fourth header byte is its type size, the shuffle unit.
    assert payloads and {p[3] for p in payloads} == {4}
    np.testing.assert_array_equal(client.fetch(info.job_id).array,
                                  client.process(image, ["gaussian:sigma=1"]).array)


def test_an_idempotency_key_returns_the_same_job_never_a_second(client, server):
    image = _img(seed=1)
    first = client.submit(image, ["mean:size=3"], idempotency_key="scan-0042")
    again = client.submit(image, ["mean:size=3"], idempotency_key="scan-0042")
    assert again.job_id == first.job_id
    with pytest.raises(ServiceError) as info:
        client.submit(image, ["mean:size=5"], idempotency_key="scan-0042")
    assert info.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert "header.idempotency_key" in info.value.details and first.job_id in info.value.details
    # Concurrent retries with one key: still one job.
    with ThreadPoolExecutor(4) as pool:
        ids = set()
        for f in [pool.submit(client.submit, image, ["mean:size=3"], idempotency_key="race-7")
                  for _ in range(4)]:
            try:
                ids.add(f.result().job_id)
            except ServiceError as exc:      # the first one is still receiving its inputs
                assert exc.code == grpc.StatusCode.ABORTED
    assert len(ids) == 1
    with sqlite3.connect(server.catalog.path) as db:
        count = db.execute("SELECT COUNT(*) FROM job_requests WHERE idempotency_key = ?",
                           ("race-7",)).fetchone()[0]
    assert count == 1
    client.wait(first.job_id, timeout=60)
    assert len(_usage_rows(server, first.job_id)) == 1


def test_jobs_are_listed_newest_first_with_filters(client):
    a = client.submit(_img(seed=2), ["gaussian:sigma=1"], label="list-a")
    b = client.submit(_img(seed=3), ["laplacian"], label="list-b")
    for j in (a, b):
        client.wait(j.job_id, timeout=60)
    page = client.jobs(limit=1000)
    ids = [j.job_id for j in page.jobs]
    assert ids.index(b.job_id) < ids.index(a.job_id)
    assert [j.job_id for j in client.jobs(label="list-a").jobs] == [a.job_id]
    assert b.job_id in [j.job_id for j in client.jobs(operation="laplacian").jobs]
    assert a.job_id not in [j.job_id for j in client.jobs(operation="laplacian").jobs]
    succeeded = client.jobs(states=["succeeded"], limit=1000).jobs
    assert {a.job_id, b.job_id} <= {j.job_id for j in succeeded}
    assert all(j.state == jobs_pb2.JOB_STATE_SUCCEEDED for j in succeeded)
    first = client.jobs(limit=1)
    second = client.jobs(limit=1, page_token=first.next_page_token)
    assert first.next_page_token and first.jobs[0].job_id != second.jobs[0].job_id
    # Synchronous calls are jobs too.
    r = client.process(_img(seed=4), ["gaussian:sigma=1"])
    [sync] = [j for j in client.jobs(limit=5).jobs if j.job_id == r.job_id]
    assert not sync.asynchronous and sync.state == jobs_pb2.JOB_STATE_SUCCEEDED


def test_a_waiting_job_is_cancelled_without_running_and_a_running_one_stops(busy):
    with Client(busy.address, timeout=120) as c:
        running = c.submit(_img((24, 96, 96)), SLOW, device="cpu")
        waiting = c.submit(_img(seed=5), ["gaussian:sigma=1"])
        deadline = time.monotonic() + 60
        while c.job(running.job_id).state != jobs_pb2.JOB_STATE_RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert c.job(waiting.job_id).state == jobs_pb2.JOB_STATE_QUEUED
        cancelled = c.cancel(waiting.job_id)
        assert cancelled.state == jobs_pb2.JOB_STATE_CANCELLED
        assert cancelled.error == "cancelled by the subscriber"
        stopped = c.cancel(running.job_id)
        assert stopped.state == jobs_pb2.JOB_STATE_CANCELLED
        assert stopped.finished_at - stopped.started_at < 30
        # Cancelling an ended job changes nothing.
        assert c.cancel(running.job_id).state == jobs_pb2.JOB_STATE_CANCELLED
        with pytest.raises(ServiceError) as info:
            c.fetch(running.job_id)
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "CANCELLED" in info.value.details
        # The worker is free again: a new job runs at once.
        after = c.submit(_img(seed=6), ["gaussian:sigma=1"])
        assert c.wait(after.job_id, timeout=60).state == jobs_pb2.JOB_STATE_SUCCEEDED
        for job_id in (waiting.job_id, running.job_id):
            [usage] = _usage_rows(busy, job_id)
            assert usage["state"] == "CANCELLED" and usage["platform_fault"] is False


def test_watch_reports_the_slabs_of_a_split_volume_as_they_finish(busy):
    volume = _img((32, 128, 128))                # 2 MiB of float32: split into slabs
    ops = ["median:size=3"] * 4                  # each slab takes a while on one worker
    with Client(busy.address, timeout=120) as c:
        job = c.submit(volume, ops, device="cpu")
        events = list(c.watch(job.job_id, timeout=120))
        result = c.fetch(job.job_id)
        whole = c.process(volume, ops, device="cpu")
    n = result.header.slabs
    assert n >= 2
    done = [e for e in events if e.message.endswith(" done")]
    # Watch shows the state as it is when it looks: each finished slab it saw, in order.
    assert done, [e.message for e in events]
    counts = [int(e.message.split()[1]) for e in done]
    assert all(e.message == f"slab {k} of {n} done" for e, k in zip(done, counts))
    assert counts == sorted(set(counts))
    assert [e.job.progress for e in done] == [k / n for k in counts]
    assert events[-1].job.state == jobs_pb2.JOB_STATE_SUCCEEDED
    np.testing.assert_array_equal(result.array, whole.array)


def test_pending_jobs_per_subscriber_are_limited(busy):
    with Client(busy.address, timeout=120) as c:
        first = c.submit(_img((24, 96, 96)), SLOW, device="cpu")
        queued = [c.submit(_img(seed=s), ["gaussian:sigma=1"], idempotency_key=f"p{s}")
                  for s in range(3)]
        with pytest.raises(ServiceError) as info:
            c.submit(_img(seed=9), ["gaussian:sigma=1"])
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_pending_jobs=4" in info.value.details
        # A retry of an answered submit is still answered with its job.
        retry = c.submit(_img(seed=0), ["gaussian:sigma=1"], idempotency_key="p0")
        assert retry.job_id == queued[0].job_id
        for job in (first, *queued):
            c.cancel(job.job_id)


def test_a_stored_image_by_id_is_answered_from_the_store_the_second_time(client):
    stored = client.store.register(_img((32, 32), seed=11))
    first = client.submit(f"id:{stored.image_id}", ["gaussian:sigma=1"], store_result=True)
    assert client.wait(first.job_id, timeout=60).state == jobs_pb2.JOB_STATE_SUCCEEDED
    computed = client.fetch(first.job_id)
    assert not computed.reused and computed.stored_image_id
    again = client.submit(f"id:{stored.image_id}", ["gaussian:sigma=1"], store_result=True)
    assert client.wait(again.job_id, timeout=60).state == jobs_pb2.JOB_STATE_SUCCEEDED
    reused = client.fetch(again.job_id)
    assert reused.reused and reused.stored_image_id == computed.stored_image_id
    assert reused.header.usage.compute_seconds == 0 and reused.header.usage.bytes_in == 0
    np.testing.assert_array_equal(reused.array, computed.array)


# -- bad input -----------------------------------------------------------------------
def _raw_submit(address, messages):
    with grpc.insecure_channel(address) as channel:
        return jobs_pb2_grpc.JobsServiceStub(channel).Submit(iter(messages), timeout=30)


def _header(image, ops=("gaussian:sigma=1",), **fields):
    from medcompute.client.request import _header as build

    header, _ = build(image, list(ops), spacing=None, operands=(), device="auto",
                      output_dtype="float32", compute_dtype="float32", output="array",
                      compression="none", allow_fallback=False, store_result=False,
                      retention=None, recompute=False)
    return jobs_pb2.SubmitHeader(process=header, **fields)


@pytest.mark.parametrize("fields, field, words", [
    ({"idempotency_key": "has space"}, "header.idempotency_key", "printable"),
    ({"idempotency_key": "k" * 129}, "header.idempotency_key", "128"),
    ({"label": "x" * 257}, "header.label", "256"),
])
def test_bad_submit_headers_name_their_field(server, fields, field, words):
    image = _img((4, 4))
    messages = [jobs_pb2.SubmitRequest(header=_header(image, **fields)),
                jobs_pb2.SubmitRequest(chunk=image_pb2.Chunk(data=image.tobytes()))]
    with pytest.raises(grpc.RpcError) as info:
        _raw_submit(server.address, messages)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field) and words in info.value.details()


def test_a_bad_pipeline_is_refused_before_a_job_is_queued(server, client):
    image = _img((4, 4))
    messages = [jobs_pb2.SubmitRequest(header=_header(image, ops=("gaussian:sigma=-1",))),
                jobs_pb2.SubmitRequest(chunk=image_pb2.Chunk(data=image.tobytes()))]
    with pytest.raises(grpc.RpcError) as info:
        _raw_submit(server.address, messages)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("header.process.pipeline[0].gaussian.sigma")


def test_a_submit_without_its_header_or_request_is_refused(server):
    image = _img((4, 4))
    for messages, field in [
        ([jobs_pb2.SubmitRequest(chunk=image_pb2.Chunk(data=image.tobytes()))],
         "request[0].header"),
        ([jobs_pb2.SubmitRequest(header=jobs_pb2.SubmitHeader(label="no request"))],
         "header.process"),
        ([jobs_pb2.SubmitRequest(header=_header(image)),
          jobs_pb2.SubmitRequest(header=_header(image))], "request[1]"),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            _raw_submit(server.address, messages)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith(field)


def test_a_short_upload_fails_the_job_and_frees_its_key(server, client):
    image = _img((16, 16))
    messages = [jobs_pb2.SubmitRequest(header=_header(image, idempotency_key="short-1")),
                jobs_pb2.SubmitRequest(chunk=image_pb2.Chunk(data=image.tobytes()[:100]))]
    with pytest.raises(grpc.RpcError) as info:
        _raw_submit(server.address, messages)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    failed = [j for j in client.jobs(states=["failed"], limit=20).jobs
              if j.idempotency_key == "short-1"]
    assert failed and "size" in failed[0].error
    # The key was never answered with a job: a retry with it is a new job.
    retry = client.submit(image, ["gaussian:sigma=1"], idempotency_key="short-1")
    assert retry.job_id != failed[0].job_id
    assert client.wait(retry.job_id, timeout=60).state == jobs_pb2.JOB_STATE_SUCCEEDED


@pytest.mark.parametrize("call", ["job", "fetch", "cancel", "watch"])
def test_an_unknown_job_is_not_found(client, call):
    with pytest.raises(ServiceError) as info:
        result = getattr(client, call)("0123456789abcdef")
        if call == "watch":
            list(result)
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert info.value.details == "job_id: no job '0123456789abcdef'"


def test_a_synchronous_job_has_nothing_to_fetch(client):
    r = client.process(_img((8, 8)), ["gaussian:sigma=1"])
    with pytest.raises(ServiceError) as info:
        client.fetch(r.job_id)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "synchronous" in info.value.details


def test_a_bad_page_token_and_state_are_refused(client):
    with pytest.raises(ServiceError) as info:
        client.jobs(page_token="not-a-token")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details.startswith("page_token:")
    with pytest.raises(ValueError, match="states"):
        client.jobs(states=["sleeping"])


def test_an_expired_result_is_gone_but_its_job_stays(server, client):
    info = client.submit(_img((8, 8)), ["gaussian:sigma=1"])
    client.wait(info.job_id, timeout=60)
    runner = server.running.runner
    removed = server.call(runner.expire_results(now=time.time() + 365 * 86400))
    assert removed >= 1
    assert not client.job(info.job_id).result_available
    with pytest.raises(ServiceError) as err:
        client.fetch(info.job_id)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "retention" in err.value.details
    assert not (server.config.data_dir / "jobs" / info.job_id).exists()


def test_watch_shows_the_upload_progress_of_a_job_still_receiving(server, client):
    image = _img((16, 256, 256))          # 4 MiB: four chunks, each sent once watched
    data = image.tobytes()
    header = _header(image, label="slow-upload", idempotency_key="slow-key")
    chunks = [data[at:at + (1 << 20)] for at in range(0, len(data), 1 << 20)]
    # Chunk k leaves once the watch has shown the progress of the k before it: the upload
    # is paced by what the watcher saw, not by the clock.
    release = [threading.Event() for _ in chunks]
    release[0].set()

    def paced():
        yield jobs_pb2.SubmitRequest(header=header)
        for k, chunk in enumerate(chunks):
            assert release[k].wait(60), f"chunk {k} was never released"
            yield jobs_pb2.SubmitRequest(chunk=image_pb2.Chunk(data=chunk))

    def watch(job_id):
        seen = []
        for e in client.watch(job_id, timeout=120):
            seen.append(e)
            if e.job.state == jobs_pb2.JOB_STATE_RECEIVING:
                arrived = round(e.job.progress * len(chunks))
                if 0 < arrived < len(chunks):
                    release[arrived].set()
        return seen

    with ThreadPoolExecutor(2) as pool:
        pending = pool.submit(_raw_submit, server.address, paced())
        deadline = time.monotonic() + 30
        receiving = []
        while not receiving:
            assert time.monotonic() < deadline
            receiving = [j for j in client.jobs(states=["receiving"]).jobs
                         if j.label == "slow-upload"]
        # The same request with the same key while the first is still receiving (its
        # second chunk waits for the watch below): retry later.
        with pytest.raises(ServiceError) as info:
            client.submit(image, ["gaussian:sigma=1"], label="slow-upload",
                          idempotency_key="slow-key")
        assert info.value.code == grpc.StatusCode.ABORTED
        assert "still receiving" in info.value.details
        events = pool.submit(watch, receiving[0].job_id).result(120)
        reply = pending.result(60)
    assert reply.job.job_id == receiving[0].job_id
    again = client.submit(image, ["gaussian:sigma=1"], label="slow-upload",
                          idempotency_key="slow-key")
    assert again.job_id == reply.job.job_id
    uploading = [e.job.progress for e in events if e.job.state == jobs_pb2.JOB_STATE_RECEIVING]
    assert len(uploading) >= 2 and uploading == sorted(uploading) and 0 < uploading[-1] <= 1
    assert all(e.message == "receiving the inputs" for e in events
               if e.job.state == jobs_pb2.JOB_STATE_RECEIVING and e.job.progress > 0)
    assert events[-1].job.state == jobs_pb2.JOB_STATE_SUCCEEDED
    np.testing.assert_array_equal(client.fetch(reply.job.job_id).array,
                                  client.process(image, ["gaussian:sigma=1"]).array)

"""Batch requests end to end: many images, one pipeline, one job and usage record each."""

import grpc
import numpy as np
import pytest

from medcompute.client import Client, ServiceError
from medcompute.proto import wire
from medcompute.proto.v1 import batch_pb2, batch_pb2_grpc, image_pb2, operations_pb2
from medcompute.proto.v1 import processing_pb2 as pp

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _slices(n, shape=(48, 40), seed=3):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4000, size=shape).astype(np.uint16) for _ in range(n)]


def test_batch_results_equal_one_by_one_results(client, server):
    images = _slices(24)
    ops = ["gaussian:sigma=1.5", "edge:operator=sobel"]
    items = list(client.process_many(images, ops, device="cpu"))
    assert sorted(item.index for item in items) == list(range(len(images)))
    assert all(item.ok for item in items), [item.error for item in items if not item.ok]
    alone = [client.process(img, ops, device="cpu") for img in images]
    by_index = {item.index: item.result for item in items}
    for i, single in enumerate(alone):
        batched = by_index[i]
        np.testing.assert_array_equal(batched.array, single.array)
        assert batched.applied == single.applied
        assert batched.header.backend == single.header.backend
    job_ids = {item.result.job_id for item in items}
    assert len(job_ids) == len(images)          # one job per image


def test_one_usage_record_per_image_job(client, server):
    images = _slices(6, shape=(20, 30), seed=5)
    items = list(client.process_many(images, ["mean:size=3"], compression="zstd"))
    for item in items:
        usage = item.result.usage
        assert usage["job_id"] == item.job_id == item.result.job_id
        assert usage["images"] == 1 and int(usage["voxels"]) == images[item.index].size
        assert int(usage["bytes_out"]) == images[item.index].size * 4
        assert usage["operations"] == ["mean"] and usage["state"] == "SUCCEEDED"
        stored = server.call(server.catalog.usage_for(item.job_id))
        assert len(stored) == 1 and stored[0]["voxels"] == images[item.index].size
        job = server.call(server.catalog.get_job(item.job_id))
        assert job.state.value == "SUCCEEDED"


def test_stored_and_inline_images_in_one_batch_with_a_stored_operand(client):
    images = _slices(3, shape=(16, 16), seed=7)
    mask = np.full((16, 16), 100, np.uint16)
    kept = client.store.register(images[1])
    mask_id = client.store.register(mask)
    items = list(client.process_many([images[0], kept, images[2]],
                                     ["subtract:operand=0"], operands=[mask_id]))
    by_index = {item.index: item.result for item in items}
    for i, img in enumerate(images):
        np.testing.assert_allclose(by_index[i].array, img.astype(np.float32) - 100)


def test_one_failing_image_fails_alone(client, server, tmp_path):
    good = _slices(2, shape=(12, 12), seed=9)
    bad = tmp_path / "not-dicom.dcm"          # sent as DICOM, but it is not one
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 100)
    items = {item.index: item for item in client.process_many(
        [good[0], str(bad), good[1]], ["gaussian:sigma=1"])}
    assert items[0].ok and items[2].ok
    failed = items[1]
    assert failed.error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failed.error.details.startswith("header.inputs[1]")
    assert failed.error.violations and failed.error.violations[0][0].startswith(
        "header.inputs[1]")
    job = server.call(server.catalog.get_job(failed.job_id))
    assert job.state.value == "FAILED" and job.error_code == "INVALID_ARGUMENT"
    assert len(server.call(server.catalog.usage_for(failed.job_id))) == 1


def test_two_concurrent_streams_keep_the_indices(client):
    images = _slices(7, shape=(10, 14), seed=11)
    items = list(client.process_many(images, ["mean:size=3"], streams=3))
    assert sorted(item.index for item in items) == list(range(7))
    for item in items:
        assert item.result.array.shape == images[item.index].shape
        single = client.process(images[item.index], ["mean:size=3"])
        np.testing.assert_array_equal(item.result.array, single.array)


# -- the header and the stream, checked --------------------------------------------------

def _raw_header(n=2, shape=(4, 4), **process):
    desc = image_pb2.ImageDescriptor(encoding=image_pb2.ENCODING_RAW, shape=shape,
                                     dtype=image_pb2.DATA_TYPE_UINT8,
                                     size=int(np.prod(shape)))
    proc = pp.ProcessHeader(pipeline=[operations_pb2.Operation(
        mean=operations_pb2.MeanOp(size=[3]))], **process)
    return batch_pb2.ProcessBatchHeader(
        process=proc, inputs=[image_pb2.ImageSource(inline=desc) for _ in range(n)])


def _call(server, messages):
    with grpc.insecure_channel(server.address) as channel:
        stub = batch_pb2_grpc.BatchServiceStub(channel)
        return list(stub.ProcessBatch(iter(messages), timeout=60))


def _chunk(item, data, **kw):
    return batch_pb2.ProcessBatchRequest(chunk=batch_pb2.BatchChunk(
        item=item, chunk=image_pb2.Chunk(data=data, **kw)))


@pytest.mark.parametrize("change, field", [
    (lambda h: h.process.input.CopyFrom(h.inputs[0]), "header.process.input"),
    (lambda h: h.ClearField("inputs"), "header.inputs"),
    (lambda h: h.process.operands.add().inline.CopyFrom(h.inputs[0].inline),
     "header.process.operands[0]"),
    (lambda h: h.inputs[1].inline.ClearField("shape"), "header.inputs[1].inline.shape"),
    (lambda h: setattr(h.process, "output_format", 99), "header.process.output_format"),
    (lambda h: h.process.pipeline.add(), "header.process.pipeline[1]"),
])
def test_a_mistake_in_the_header_fails_the_call_naming_its_field(server, change, field):
    header = _raw_header()
    change(header)
    with pytest.raises(grpc.RpcError) as info:
        _call(server, [batch_pb2.ProcessBatchRequest(header=header)])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field), info.value.details()


def test_a_chunk_for_an_image_that_does_not_exist_fails_the_call(server):
    messages = [batch_pb2.ProcessBatchRequest(header=_raw_header()),
                _chunk(5, bytes(16))]
    with pytest.raises(grpc.RpcError) as info:
        _call(server, messages)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("request[1].chunk.item: image 5 does not exist")


def test_a_short_or_corrupt_image_fails_alone(server):
    header = _raw_header(n=3)
    header.inputs[1].inline.crc32 = wire.crc32(bytes(16)) ^ 1
    messages = [batch_pb2.ProcessBatchRequest(header=header), _chunk(0, bytes(16)),
                _chunk(1, bytes(16)), _chunk(2, bytes(7))]
    responses = _call(server, messages)
    failures = {r.failure.item: r.failure for r in responses if r.HasField("failure")}
    results = [r.result.item for r in responses if r.HasField("result")]
    assert results == [0]
    assert failures[1].code == "INVALID_ARGUMENT" and failures[1].field == \
        "header.inputs[1].inline.crc32"
    assert failures[2].field == "header.inputs[2].inline.size"
    assert "ended after 7 of the 16 bytes" in failures[2].message
    for f in failures.values():
        job = server.call(server.catalog.get_job(f.job_id))
        assert job.state.value == "FAILED"


def test_the_client_refuses_an_empty_batch(client):
    with pytest.raises(ValueError, match="images"):
        list(client.process_many([], ["mean:size=3"]))


def test_an_unknown_stored_id_fails_the_call_before_any_job(client):
    with pytest.raises(ServiceError) as info:
        list(client.process_many([np.zeros((4, 4), np.uint8), "id:nonexistent"],
                                 ["mean:size=3"]))
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert "header.inputs[1]" in info.value.details


# -- the command line: a folder of slices with --each ---------------------------------------

def _series_folder():
    import os

    from pydicom.data import get_testdata_file

    return os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                        "98892001", "CT5N")


def test_cli_each_processes_every_file_of_a_folder_as_its_own_job(client, server, tmp_path,
                                                                  capsys):
    import json

    from medcompute.client.cli import main

    folder = tmp_path / "slices"
    folder.mkdir()
    images = _slices(4, shape=(18, 22), seed=13)
    for k, img in enumerate(images):
        np.save(folder / f"slice{k:03d}.npy", img)
    out = tmp_path / "out"
    status = main(["process", str(folder), "--each", "--op", "mean:size=3", "-o", str(out),
                   "--json", "--server", server.address])
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["index"] for r in report] == [0, 1, 2, 3]
    assert len({r["result"]["job_id"] for r in report}) == 4
    for k, img in enumerate(images):
        written = np.load(out / f"slice{k:03d}.npy")
        np.testing.assert_array_equal(written, client.process(img, ["mean:size=3"]).array)


def test_cli_each_writes_a_derived_dicom_file_per_slice(server, tmp_path, capsys):
    import pydicom

    from medcompute.client.cli import main

    out = tmp_path / "derived"
    status = main(["process", _series_folder(), "--each", "--each-format", "dcm",
                   "--op", "gaussian:sigma=1", "-o", str(out), "-q", "--server",
                   server.address, "--streams", "2"])
    assert status == 0
    ids = capsys.readouterr().out.split()
    files = sorted(out.glob("*.dcm"))
    assert len(ids) == len(files) == 5
    for f in files:
        ds = pydicom.dcmread(f)
        assert "DERIVED" in ds.ImageType


def test_cli_each_exits_1_when_an_image_fails_and_writes_the_others(server, tmp_path, capsys):
    from medcompute.client.cli import main

    folder = tmp_path / "mixed"
    folder.mkdir()
    np.save(folder / "a.npy", np.ones((8, 8), np.uint8))
    (folder / "b.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)
    status = main(["process", str(folder), "--each", "--op", "mean:size=3", "-o",
                   str(tmp_path / "o"), "--server", server.address])
    assert status == 1
    assert (tmp_path / "o" / "a.npy").exists() and not (tmp_path / "o" / "b.npy").exists()
    assert "b.dcm: INVALID_ARGUMENT: header.inputs[1]" in capsys.readouterr().err


def test_cli_each_refuses_two_inputs_with_one_result_name(server, tmp_path, capsys):
    from medcompute.client.cli import main

    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        np.save(tmp_path / d / "same.npy", np.ones((4, 4), np.uint8))
    status = main(["process", str(tmp_path / "x"), str(tmp_path / "y"), "--each", "--op",
                   "mean:size=3", "-o", str(tmp_path / "o"), "--server", server.address])
    assert status == 2
    assert "same" in capsys.readouterr().err


# -- SubmitBatch: each image its own asynchronous job ---------------------------------------

def test_submit_many_queues_one_job_per_image_and_fetches_equal_one_by_one(client, server):
    from medcompute.proto.v1 import jobs_pb2

    images = _slices(5, shape=(14, 18), seed=17)
    items = client.submit_many(images, ["gaussian:sigma=1"], label="batch",
                               idempotency_key="series-17")
    assert [item.index for item in items] == list(range(5))
    assert all(item.ok and not item.existing for item in items)
    assert len({item.job_id for item in items}) == 5
    for item in items:
        assert client.wait(item.job_id, timeout=120).state == jobs_pb2.JOB_STATE_SUCCEEDED
        fetched = client.fetch(item.job_id)
        single = client.process(images[item.index], ["gaussian:sigma=1"])
        np.testing.assert_array_equal(fetched.array, single.array)
        assert len(server.call(server.catalog.usage_for(item.job_id))) == 1
    again = client.submit_many(images, ["gaussian:sigma=1"], label="batch",
                               idempotency_key="series-17")
    assert [item.job_id for item in again] == [item.job_id for item in items]
    assert all(item.existing for item in again)


def _submit_call(server, messages):
    with grpc.insecure_channel(server.address) as channel:
        stub = batch_pb2_grpc.BatchServiceStub(channel)
        return stub.SubmitBatch(iter(messages), timeout=60)


def test_submit_batch_a_corrupt_image_fails_alone(server):
    from medcompute.proto.v1 import jobs_pb2

    raw = _raw_header(n=2)
    raw.inputs[0].inline.crc32 = wire.crc32(bytes(16)) ^ 1
    header = batch_pb2.SubmitBatchHeader(submit=jobs_pb2.SubmitHeader(process=raw.process),
                                         inputs=raw.inputs)
    reply = _submit_call(server, [
        batch_pb2.SubmitBatchRequest(header=header),
        batch_pb2.SubmitBatchRequest(chunk=batch_pb2.BatchChunk(
            item=0, chunk=image_pb2.Chunk(data=bytes(16)))),
        batch_pb2.SubmitBatchRequest(chunk=batch_pb2.BatchChunk(
            item=1, chunk=image_pb2.Chunk(data=bytes(16))))])
    bad, good = reply.items
    assert bad.HasField("failure") and bad.failure.field == "header.inputs[0].inline.crc32"
    assert bad.job.state == jobs_pb2.JOB_STATE_FAILED
    assert not good.HasField("failure") and good.job.state != jobs_pb2.JOB_STATE_FAILED


@pytest.mark.parametrize("change, field", [
    (lambda h: h.submit.process.input.CopyFrom(h.inputs[0]), "header.submit.process.input"),
    (lambda h: h.inputs[1].inline.ClearField("shape"), "header.inputs[1].inline.shape"),
    (lambda h: setattr(h.submit, "idempotency_key", "k" * 121),
     "header.submit.idempotency_key"),
])
def test_submit_batch_a_mistake_in_the_header_names_its_field(server, change, field):
    from medcompute.proto.v1 import jobs_pb2

    raw = _raw_header(n=2)
    header = batch_pb2.SubmitBatchHeader(submit=jobs_pb2.SubmitHeader(process=raw.process),
                                         inputs=raw.inputs)
    change(header)
    with pytest.raises(grpc.RpcError) as info:
        _submit_call(server, [batch_pb2.SubmitBatchRequest(header=header)])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field), info.value.details()


# -- a batch call that ends early: every job it made is ended and recorded ------------------

def _jobs_with_input(server, ref: str, since: float = 0.0) -> list:
    """The jobs whose one input is ``ref``, created at or after ``since`` (the server is
    shared with other tests)."""
    import sqlite3

    with sqlite3.connect(server.config.data_dir / "catalog.sqlite3") as db:
        rows = db.execute("SELECT record FROM jobs").fetchall()
    import json

    return [r for r in (json.loads(row[0]) for row in rows)
            if r["inputs"] == [ref] and r["created_at"] >= since]


def _wait_ended(server, ref: str, n: int, timeout=30.0, since: float = 0.0) -> list:
    import time

    deadline = time.monotonic() + timeout
    while True:
        rows = _jobs_with_input(server, ref, since)
        if len(rows) == n and all(r["state"] in ("SUCCEEDED", "FAILED", "CANCELLED")
                                  for r in rows):
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)


def test_a_cancelled_batch_call_ends_every_job_it_made(server):
    import threading
    import time

    # The server is shared: its jobs are those of this size created from now on.
    started = time.time()
    shape = (7, 3)
    header = _raw_header(n=3, shape=shape)
    release = threading.Event()

    def messages():
        yield batch_pb2.ProcessBatchRequest(header=header)
        yield _chunk(0, bytes(21))
        release.wait(30)               # images 1 and 2 never come

    with grpc.insecure_channel(server.address) as channel:
        call = batch_pb2_grpc.BatchServiceStub(channel).ProcessBatch(messages(), timeout=60)
        try:
            first = next(call)
            assert first.HasField("result") and first.result.item == 0
            call.cancel()              # the caller goes away, its stream still open
            rows = _wait_ended(server, "inline:21", 3, since=started)
        finally:
            release.set()
    states = sorted(r["state"] for r in rows)
    assert states[-1] == "SUCCEEDED"
    # Cancelled (or, had gRPC been slow to mark the call cancelled, failed as cut off):
    # never left running, never billed twice.
    assert set(states[:2]) <= {"CANCELLED", "FAILED"}, rows
    for r in rows:
        assert len(server.call(server.catalog.usage_for(r["id"]))) == 1


def test_a_stream_mistake_after_some_images_fails_the_rest_naming_it(server):
    import time

    started = time.time()      # the server is shared: other tests send 5x5 images too
    header = _raw_header(n=3, shape=(5, 5))
    messages = [batch_pb2.ProcessBatchRequest(header=header), _chunk(0, bytes(25)),
                _chunk(9, bytes(25))]
    with pytest.raises(grpc.RpcError) as info:
        _call(server, messages)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request[2].chunk.item" in info.value.details()
    rows = _wait_ended(server, "inline:25", 3, since=started)
    failed = [r for r in rows if r["state"] == "FAILED"]
    assert len(failed) >= 2
    assert all(r["error_code"] == "INVALID_ARGUMENT" and "request[2].chunk.item" in r["error"]
               for r in failed)


def test_a_batch_can_keep_each_result_in_the_store(client):
    images = _slices(3, shape=(12, 10), seed=21)
    kept = client.store.register(images[0])
    items = {i.index: i for i in client.process_many([kept, images[1], images[2]],
                                                     ["mean:size=3"], store_result=True)}
    ids = [items[k].result.stored_image_id for k in range(3)]
    assert all(ids) and len(set(ids)) == 3
    for k in range(3):
        np.testing.assert_array_equal(client.store.get(ids[k]).array,
                                      items[k].result.array)
    # The same request again on the stored image is answered from the store.
    [again] = list(client.process_many([kept], ["mean:size=3"], store_result=True))
    assert again.result.reused and again.result.stored_image_id == ids[0]


def test_submit_batch_a_stream_mistake_fails_the_call_and_ends_its_jobs(server):
    import time

    from medcompute.proto.v1 import jobs_pb2

    raw = _raw_header(n=2, shape=(3, 11))
    started = time.time()
    header = batch_pb2.SubmitBatchHeader(submit=jobs_pb2.SubmitHeader(process=raw.process),
                                         inputs=raw.inputs)

    def messages():
        yield batch_pb2.SubmitBatchRequest(header=header)
        yield batch_pb2.SubmitBatchRequest(chunk=batch_pb2.BatchChunk(
            item=0, chunk=image_pb2.Chunk(data=bytes(33))))
        deadline = time.monotonic() + 20      # until both jobs exist (image 1 receiving)
        while (len(_jobs_with_input(server, "inline:33", started)) < 2
               and time.monotonic() < deadline):
            time.sleep(0.05)
        yield batch_pb2.SubmitBatchRequest(chunk=batch_pb2.BatchChunk(
            item=7, chunk=image_pb2.Chunk(data=bytes(33))))

    with pytest.raises(grpc.RpcError) as info:
        _submit_call(server, messages())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("request[2].chunk.item: image 7 does not exist")
    rows = _jobs_with_input(server, "inline:33", started)
    # Each image's upload ends with the stream: the call failed, so none was queued (all
    # or nothing) and none is left receiving.
    assert len(rows) == 2
    assert all(r["queued_at"] is None and r["state"] == "CANCELLED" for r in rows), rows


def test_a_batch_of_stacks_fails_a_corrupt_image_alone(server):
    # Twelve images of one shape (stacked while the workers are busy), one of them with a
    # wrong checksum: it fails alone, the others equal their one-by-one results.
    rng = np.random.default_rng(11)
    images = [rng.integers(0, 255, size=(9, 7), dtype=np.uint8) for _ in range(12)]
    header = _raw_header(n=len(images), shape=(9, 7))
    for i, image in enumerate(images):
        header.inputs[i].inline.crc32 = wire.crc32(image.tobytes()) ^ (1 if i == 5 else 0)
    messages = [batch_pb2.ProcessBatchRequest(header=header),
                *(_chunk(i, image.tobytes()) for i, image in enumerate(images))]
    responses = _call(server, messages)
    failures = [r.failure for r in responses if r.HasField("failure")]
    assert [(f.item, f.code, f.field) for f in failures] == [
        (5, "INVALID_ARGUMENT", "header.inputs[5].inline.crc32")]
    results = {r.result.item: r.result.header for r in responses if r.HasField("result")}
    data: dict[int, bytes] = {}
    for r in responses:
        if r.HasField("chunk"):
            data[r.chunk.item] = data.get(r.chunk.item, b"") + r.chunk.chunk.data
    assert sorted(results) == [i for i in range(12) if i != 5]
    with Client(server.address, timeout=120) as client:
        for i in results:
            alone = client.process(images[i], ["mean:size=3"])
            assert data[i] == alone.array.tobytes()
            usage = server.call(server.catalog.usage_for(results[i].job_id))
            assert len(usage) == 1 and usage[0]["images"] == 1
    failed = server.call(server.catalog.get_job(failures[0].job_id))
    assert failed.state.value == "FAILED" and failed.error_code == "INVALID_ARGUMENT"

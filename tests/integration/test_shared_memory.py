"""Shared memory for same-host clients, end to end: a region registered by a client on
the server's host, Process and ProcessBatch calls that name their inputs and outputs by
region instead of chunks (the workers read and write it by name, stacks too), regions
refused to other subscribers, out of bounds, in the wrong number, and unknown names, and
a killed client leaving no region and no job behind."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from multiprocessing import shared_memory

import grpc
import numpy as np
import pytest

from medcompute.client import Client, ServiceError
from medcompute.client.ops import to_operation
from medcompute.proto.v1 import (
    batch_pb2,
    batch_pb2_grpc,
    image_pb2,
    processing_pb2,
    processing_pb2_grpc,
)
from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OPS = ["gaussian:sigma=2", "edge:operator=sobel"]


@pytest.fixture(scope="module")
def site(tmp_path_factory, server_thread):
    """A server without dynamic batching (each call its own job: the worker reads the
    region), with two subscribers."""
    data = tmp_path_factory.mktemp("shm")
    keys = KeyStore(data)
    tokens = {}
    for name, subscriber in [("a", "st-mary"), ("b", "north-clinic")]:
        _, tokens[name] = keys.create(subscriber, ["process"])
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=1, gpu_workers=0,
                          batch_delay=0.0)
    with server_thread(config) as server:
        server.tokens = tokens
        yield server


def _jobs(server, subscriber="st-mary"):
    """The states of the subscriber's jobs, newest first."""
    rows = server.call(server.catalog.list_jobs(subscriber, limit=1000))
    return [job.state.value for job, *_ in rows]


def _regions(server):
    return server.running.runner.service.regions


def _stub(server, who):
    channel = grpc.insecure_channel(server.address)
    metadata = (("authorization", f"Bearer {server.tokens[who]}"),)
    return channel, processing_pb2_grpc.ProcessingServiceStub(channel), metadata


@pytest.fixture
def shm():
    made = []

    def make(size):
        region = shared_memory.SharedMemory(create=True, size=size)
        made.append(region)
        return region
    yield make
    for region in made:
        region.close()
        try:
            region.unlink()
        except FileNotFoundError:
            pass


def _image(seed=0, shape=(64, 48)):
    return np.random.default_rng(seed).normal(1000, 300, shape).astype(np.int16)


def _header(image, region_id, *, in_at=0, in_len=None, out_at=None, out_len=None,
            output_dtype=image_pb2.DATA_TYPE_FLOAT32):
    header = processing_pb2.ProcessHeader(
        pipeline=[], input=image_pb2.ImageSource(inline=image_pb2.ImageDescriptor(
            encoding=image_pb2.ENCODING_RAW, shape=image.shape,
            dtype=image_pb2.DATA_TYPE_INT16, size=image.nbytes)),
        device=processing_pb2.DEVICE_CPU, output_dtype=output_dtype,
        input_region=processing_pb2.SharedRegion(
            region_id=region_id, offset=in_at,
            length=image.nbytes if in_len is None else in_len))
    header.pipeline.extend(to_operation(op) for op in OPS)
    if out_at is not None:
        header.output_region.CopyFrom(processing_pb2.SharedRegion(
            region_id=region_id, offset=out_at, length=out_len))
    return header


def _process(stub, metadata, header):
    return list(stub.Process(iter([processing_pb2.ProcessRequest(header=header)]),
                             metadata=metadata, timeout=60))


def _refused(cases, call) -> dict[str, str]:
    """Each ``(kwargs, field)`` of ``cases``: ``call(**kwargs)`` fails INVALID_ARGUMENT
    naming ``field`` alone; the details of each, by field."""
    details = {}
    for kwargs, field in cases:
        with pytest.raises(grpc.RpcError) as exc:
            call(**kwargs)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert _violations(exc.value) == [field]
        details[field] = exc.value.details()
    return details


def _violations(exc):
    from medcompute.client.calls import field_violations
    return [f for f, _ in field_violations(exc)]


@pytest.mark.parametrize("dtype", ["int16", "float32", "uint8"])
def test_results_over_a_region_equal_results_over_chunks_bit_for_bit(site, dtype):
    image = _image(1).astype(dtype)
    with Client(site.address, timeout=60, api_key=site.tokens["a"]) as c, \
            Client(site.address, timeout=60, api_key=site.tokens["a"],
                   shared_memory=False) as chunks:
        for output_dtype in ("float32", "int16"):
            over = c.process(image, OPS, device="cpu", output_dtype=output_dtype)
            sent = chunks.process(image, OPS, device="cpu", output_dtype=output_dtype)
            assert [a.region_id != "" for a in c._arenas] == [True]   # it used a region
            assert over.array.dtype == sent.array.dtype
            assert over.array.tobytes() == sent.array.tobytes()
            assert over.applied == sent.applied
            assert over.header.usage.bytes_in == sent.header.usage.bytes_in == image.nbytes
        # A result smaller than the input (a projection): its shape from the header.
        volume = np.stack([image] * 3)
        over = c.process(volume, ["mip"], device="cpu")
        assert over.array.shape == image.shape
        assert over.array.tobytes() == chunks.process(volume, ["mip"],
                                                      device="cpu").array.tobytes()
        name = c._arenas[0].shm.name
        assert os.path.exists(f"/dev/shm/{name}")
    assert not os.path.exists(f"/dev/shm/{name}")       # closed: unregistered and unlinked
    assert all(r.name != name for r in _regions(site).regions.values())


def test_the_reply_over_an_output_region_carries_the_header_only(site, shm):
    image = _image(2)
    region = shm(1 << 20)
    channel, stub, metadata = _stub(site, "a")
    try:
        region_id = stub.RegisterRegion(processing_pb2.RegisterRegionRequest(
            name=region.name, size=region.size), metadata=metadata).region_id
        np.frombuffer(region.buf, np.int16, image.size)[:] = image.reshape(-1)
        out_len = image.size * 4
        replies = _process(stub, metadata, _header(image, region_id, out_at=4096,
                                                   out_len=out_len))
        assert [r.WhichOneof("msg") for r in replies] == ["header"]
        out = replies[0].header.output
        assert tuple(out.shape) == image.shape and out.size == out_len
        got = np.frombuffer(region.buf, np.float32, image.size, offset=4096).copy()
        with Client(site.address, timeout=60, api_key=site.tokens["a"],
                    shared_memory=False) as chunks:
            expected = chunks.process(image, OPS, device="cpu")
        assert got.tobytes() == expected.array.tobytes()
        stub.UnregisterRegion(processing_pb2.UnregisterRegionRequest(region_id=region_id),
                              metadata=metadata)
        assert region_id not in _regions(site).regions
        with pytest.raises(grpc.RpcError) as exc:        # unregistered: unknown now
            _process(stub, metadata, _header(image, region_id))
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        channel.close()


def test_another_subscribers_region_and_an_unknown_id_are_not_found(site, shm):
    image = _image(3)
    region = shm(1 << 16)
    channel_a, stub_a, meta_a = _stub(site, "a")
    channel_b, stub_b, meta_b = _stub(site, "b")
    try:
        region_id = stub_a.RegisterRegion(processing_pb2.RegisterRegionRequest(
            name=region.name, size=region.size), metadata=meta_a).region_id
        for stub, metadata, rid in [(stub_b, meta_b, region_id),
                                    (stub_a, meta_a, "no-such-region")]:
            with pytest.raises(grpc.RpcError) as exc:
                _process(stub, metadata, _header(image, rid))
            assert exc.value.code() == grpc.StatusCode.NOT_FOUND
            assert _violations(exc.value) == ["header.input_region.region_id"] \
                or "region" in exc.value.details()
        with pytest.raises(grpc.RpcError) as exc:
            stub_b.UnregisterRegion(processing_pb2.UnregisterRegionRequest(
                region_id=region_id), metadata=meta_b)
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        assert region_id in _regions(site).regions            # still a's
    finally:
        channel_a.close()
        channel_b.close()


def test_out_of_bounds_parts_are_invalid_arguments_naming_the_field(site, shm):
    image = _image(4)
    region = shm(1 << 16)
    channel, stub, metadata = _stub(site, "a")
    try:
        region_id = stub.RegisterRegion(processing_pb2.RegisterRegionRequest(
            name=region.name, size=region.size), metadata=metadata).region_id
        cases = [
            (dict(in_at=region.size - 10), "header.input_region.offset"),
            (dict(in_len=image.nbytes - 2), "header.input_region.length"),
            (dict(out_at=region.size - 100, out_len=image.size * 4),
             "header.output_region.offset"),
            (dict(out_at=8192, out_len=image.size * 4 - 4), "header.output_region.length"),
        ]
        jobs_before = len(_jobs(site))
        _refused(cases, lambda **kwargs: _process(stub, metadata,
                                                  _header(image, region_id, **kwargs)))
        assert len(_jobs(site)) == jobs_before                  # no job was made
        with pytest.raises(grpc.RpcError) as exc:            # larger than the object
            stub.RegisterRegion(processing_pb2.RegisterRegionRequest(
                name=region.name, size=region.size + 1), metadata=metadata)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _violations(exc.value) == ["size"]
    finally:
        channel.close()


def test_an_unknown_name_is_failed_precondition_and_the_client_falls_back(site):
    channel, stub, metadata = _stub(site, "a")
    try:
        with pytest.raises(grpc.RpcError) as exc:
            stub.RegisterRegion(processing_pb2.RegisterRegionRequest(
                name="medcompute-no-such-object", size=4096), metadata=metadata)
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "same machine" in exc.value.details()
    finally:
        channel.close()
    # A server on another host cannot open the client's object: the client sends chunks.
    from medcompute.client import shm as client_shm

    image = _image(5)
    with Client(site.address, timeout=60, api_key=site.tokens["a"]) as c:
        real = client_shm.SharedArena.ensure

        def elsewhere(arena, nbytes):       # an object the server's host does not have
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION, "not on this host")
        client_shm.SharedArena.ensure = elsewhere
        try:
            result = c.process(image, OPS, device="cpu")
        finally:
            client_shm.SharedArena.ensure = real
        assert c.shared_memory is False and result.array.shape == image.shape


def test_regions_are_only_for_process_calls(site, shm):
    region = shm(1 << 16)
    channel, stub, metadata = _stub(site, "a")
    try:
        region_id = stub.RegisterRegion(processing_pb2.RegisterRegionRequest(
            name=region.name, size=region.size), metadata=metadata).region_id
        header = _header(_image(6), region_id)
        header.store_result = True
        with pytest.raises(grpc.RpcError) as exc:
            _process(stub, metadata, header)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _violations(exc.value) == ["header.store_result"]
    finally:
        channel.close()


KILLED_CLIENT = textwrap.dedent("""
    import sys, numpy as np
    from medcompute.client import Client
    c = Client(sys.argv[1], timeout=600, api_key=sys.argv[2])
    image = np.zeros((64, 64), np.int16)
    c.process(image, ["gaussian:sigma=1"], device="cpu")      # registers the region
    print(c._arenas[0].shm.name, flush=True)
    big = np.random.default_rng(0).normal(0, 1, (96, 256, 256)).astype(np.float32)
    c.process(big, ["gaussian:sigma=6", "gaussian:sigma=6", "gaussian:sigma=6"],
              device="cpu", compute_dtype="float64")          # killed while it runs
""")


def test_a_killed_client_leaves_no_region_and_no_running_job(site):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, site.address,
                             site.tokens["a"]], stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
        assert name and os.path.exists(f"/dev/shm/{name}")
        assert any(r.name == name for r in _regions(site).regions.values())
        # A synchronous job is in the catalog from its start, and written again at its end.
        done = len(_jobs(site))
        deadline = time.monotonic() + 120
        while len(_jobs(site)) == done and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _jobs(site)[0] == "RECEIVING"                  # the call is running
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()
    # Python's resource tracker unlinks the object of the killed process.
    deadline = time.monotonic() + 60
    while os.path.exists(f"/dev/shm/{name}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/dev/shm/{name}")
    site.call(_sweep(_regions(site)))
    assert all(r.name != name for r in _regions(site).regions.values())
    # gRPC cancels the dead client's call: its job ends, none stays running.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = _jobs(site)
        if not {"RUNNING", "QUEUED", "RECEIVING"} & set(states):
            break
        time.sleep(0.2)
    assert not {"RUNNING", "QUEUED", "RECEIVING"} & set(states)
    assert states[0] == "CANCELLED"                          # the killed call's job


async def _sweep(registry):
    return registry.sweep()


@pytest.fixture(scope="module")
def batching(tmp_path_factory, server_thread):
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path_factory.mktemp("shmb"),
                          workers=1, gpu_workers=0, batch_delay=0.05)
    with server_thread(config) as server:
        yield server


def test_calls_over_regions_on_a_batching_server_give_the_same_results(batching):
    import threading

    images = [_image(10 + k, (32, 32)) for k in range(4)]
    results = {}

    def call(k):
        with Client(batching.address, timeout=60) as c:
            results[k] = c.process(images[k], OPS, device="cpu")

    threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Client(batching.address, timeout=60, shared_memory=False) as chunks:
        for k, image in enumerate(images):
            expected = chunks.process(image, OPS, device="cpu")
            assert results[k].array.tobytes() == expected.array.tobytes()
        # Each call read to its end: one audit entry, OK (never also CANCELLED).
        audit = chunks.audit(limit=1000)
    for r in results.values():
        assert [(e.action, e.outcome) for e in audit if e.object_id == r.job_id] == [
            ("process", "OK")]


def test_threads_sharing_one_client_each_get_their_own_result(site):
    from concurrent.futures import ThreadPoolExecutor

    images = [_image(20 + k, (48, 48)) for k in range(12)]
    with Client(site.address, timeout=60, api_key=site.tokens["a"]) as c, \
            ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda im: c.process(im, OPS, device="cpu"), images))
        assert c._arenas and len(c._free) == len(c._arenas)     # every region back
        names = [a.shm.name for a in c._arenas]
    with Client(site.address, timeout=60, api_key=site.tokens["a"],
                shared_memory=False) as chunks:
        for image, result in zip(images, results):
            assert result.array.tobytes() == chunks.process(image, OPS,
                                                            device="cpu").array.tobytes()
    assert not any(os.path.exists(f"/dev/shm/{n}") for n in names)


@pytest.fixture(scope="module")
def slabs(tmp_path_factory, server_thread):
    """Volumes over 64 KiB of float32 work are split into slabs."""
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path_factory.mktemp("shms"),
                          workers=1, gpu_workers=0, batch_delay=0.0, split_bytes=1 << 16)
    with server_thread(config) as server:
        yield server


def test_a_volume_split_into_slabs_reads_and_fills_its_regions(slabs):
    volume = np.random.default_rng(30).normal(1000, 300, (64, 32, 32)).astype(np.int16)
    ops = ["mean:size=3"]
    with Client(slabs.address, timeout=60) as c, \
            Client(slabs.address, timeout=60, shared_memory=False) as chunks:
        over = c.process(volume, ops, device="cpu")
        sent = chunks.process(volume, ops, device="cpu")
        assert c._arenas                                   # through a region
    assert over.header.slabs > 1
    assert over.array.tobytes() == sent.array.tobytes()


def test_a_client_whose_region_the_server_forgot_registers_again(site):
    image = _image(40)
    with Client(site.address, timeout=60, api_key=site.tokens["a"]) as c:
        first = c.process(image, OPS, device="cpu")
        [arena] = c._arenas
        old = arena.region_id
        # As after a restart, or a call that reached another process of `serve --processes`.
        _regions(site).regions.pop(old)
        again = c.process(image, OPS, device="cpu")
        assert arena.region_id not in ("", old) and arena.region_id in _regions(site).regions
    assert again.array.tobytes() == first.array.tobytes()


# -- batches over shared memory (ProcessBatchHeader.input_regions, output_regions) --------

def _batch_images(n, shape=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(1000, 300, shape).astype(np.int16) for _ in range(n)]


def test_a_batch_over_regions_equals_the_batch_over_chunks_bit_for_bit(site):
    images = _batch_images(10) + [a[:32, :32].astype(np.uint8) for a in _batch_images(6, seed=1)]
    with Client(site.address, timeout=120, api_key=site.tokens["a"]) as c, \
            Client(site.address, timeout=120, api_key=site.tokens["a"],
                   shared_memory=False) as chunks:
        over = {i.index: i for i in c.process_many(images, OPS, device="cpu")}
        assert [a.region_id != "" for a in c._arenas] == [True]      # it used a region
        sent = {i.index: i for i in chunks.process_many(images, OPS, device="cpu")}
    assert sorted(over) == sorted(sent) == list(range(len(images)))
    for k, image in enumerate(images):
        a, b = over[k].result, sent[k].result
        assert over[k].ok and a.array.dtype == b.array.dtype == np.float32
        assert a.array.tobytes() == b.array.tobytes()
        assert a.applied == b.applied
        assert a.header.usage.bytes_in == b.header.usage.bytes_in == image.nbytes
    assert len({i.job_id for i in over.values()}) == len(images)   # a job per image


def _stubs(site, who):
    channel = grpc.insecure_channel(site.address)
    metadata = (("authorization", f"Bearer {site.tokens[who]}"),)
    return (channel, batch_pb2_grpc.BatchServiceStub(channel),
            processing_pb2_grpc.ProcessingServiceStub(channel), metadata)


def _register(stub, metadata, region) -> str:
    return stub.RegisterRegion(processing_pb2.RegisterRegionRequest(
        name=region.name, size=region.size), metadata=metadata).region_id


def _batch_header(images, region_id, *, out_at=1 << 16, in_regions=None, out_regions=None):
    """Image k at k * 8 KiB, its float32 result at ``out_at`` + k * 16 KiB."""
    header = batch_pb2.ProcessBatchHeader(
        process=processing_pb2.ProcessHeader(
            pipeline=[to_operation(op) for op in OPS], device=processing_pb2.DEVICE_CPU),
        inputs=[image_pb2.ImageSource(inline=image_pb2.ImageDescriptor(
            encoding=image_pb2.ENCODING_RAW, shape=a.shape, dtype=image_pb2.DATA_TYPE_INT16,
            size=a.nbytes)) for a in images])
    header.input_regions.extend(in_regions if in_regions is not None else [
        processing_pb2.SharedRegion(region_id=region_id, offset=k * 8192, length=a.nbytes)
        for k, a in enumerate(images)])
    header.output_regions.extend(out_regions if out_regions is not None else [
        processing_pb2.SharedRegion(region_id=region_id, offset=out_at + k * 16384,
                                    length=a.size * 4)
        for k, a in enumerate(images)])
    return header


def _batch_call(stub, metadata, header, chunks=()):
    messages = [batch_pb2.ProcessBatchRequest(header=header), *chunks]
    return list(stub.ProcessBatch(iter(messages), metadata=metadata, timeout=120))


def test_the_replies_carry_the_headers_only_and_the_region_holds_the_results(site, shm):
    images = _batch_images(5, seed=2)
    region = shm(1 << 18)
    channel, batch, processing, metadata = _stubs(site, "a")
    try:
        region_id = _register(processing, metadata, region)
        for k, a in enumerate(images):
            np.frombuffer(region.buf, np.int16, a.size, offset=k * 8192)[:] = a.reshape(-1)
        replies = _batch_call(batch, metadata, _batch_header(images, region_id))
        assert [r.WhichOneof("msg") for r in replies] == ["result"] * len(images)
        with Client(site.address, timeout=60, api_key=site.tokens["a"],
                    shared_memory=False) as chunks:
            expected = {i.index: i.result.array for i in
                        chunks.process_many(images, OPS, device="cpu")}
        for r in replies:
            k = r.result.item
            got = np.frombuffer(region.buf, np.float32, images[k].size,
                                offset=(1 << 16) + k * 16384)
            assert tuple(r.result.header.output.shape) == images[k].shape
            assert got.tobytes() == expected[k].tobytes()
            del got
    finally:
        channel.close()


def test_regions_in_the_wrong_number_or_out_of_bounds_are_refused_naming_the_field(
        site, shm):
    images = _batch_images(3, seed=3)
    region = shm(1 << 17)
    channel, batch, processing, metadata = _stubs(site, "a")
    try:
        region_id = _register(processing, metadata, region)
        ok = _batch_header(images, region_id)
        ins, outs = list(ok.input_regions), list(ok.output_regions)
        short = processing_pb2.SharedRegion(region_id=region_id, offset=0,
                                            length=images[2].nbytes - 2)
        small = processing_pb2.SharedRegion(region_id=region_id, offset=1 << 16, length=16)
        past = processing_pb2.SharedRegion(region_id=region_id, offset=region.size - 8,
                                           length=images[0].nbytes)
        cases = [
            (dict(in_regions=ins[:2]), "header.input_regions"),
            (dict(out_regions=outs[:1]), "header.output_regions"),
            (dict(in_regions=[ins[0], processing_pb2.SharedRegion(length=8), ins[2]]),
             "header.input_regions[1].region_id"),
            (dict(in_regions=[ins[0], ins[1], short]), "header.input_regions[2].length"),
            (dict(in_regions=[past, ins[1], ins[2]]), "header.input_regions[0].offset"),
            (dict(out_regions=[small, outs[1], outs[2]]), "header.output_regions[0].length"),
        ]
        before = len(_jobs(site))
        details = _refused(cases, lambda **kwargs: _batch_call(
            batch, metadata, _batch_header(images, region_id, **kwargs)))
        assert "expected one region per image of inputs (3), or none; got 2" \
            in details["header.input_regions"]
        assert len(_jobs(site)) == before                        # no job was made
        # Chunks for an image whose bytes are in a region: the stream is refused.
        chunk = batch_pb2.ProcessBatchRequest(chunk=batch_pb2.BatchChunk(
            item=1, chunk=image_pb2.Chunk(data=images[1].tobytes())))
        with pytest.raises(grpc.RpcError) as exc:
            _batch_call(batch, metadata, ok, [chunk])
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _violations(exc.value) == ["request[1].chunk.item"]
        assert "input_regions[1]" in exc.value.details()
    finally:
        channel.close()


def test_another_subscribers_region_is_not_found(site, shm):
    images = _batch_images(2, seed=4)
    region = shm(1 << 17)
    channel_a, _, processing_a, meta_a = _stubs(site, "a")
    channel_b, batch_b, _, meta_b = _stubs(site, "b")
    try:
        region_id = _register(processing_a, meta_a, region)
        before = len(_jobs(site, "north-clinic"))
        with pytest.raises(grpc.RpcError) as exc:
            _batch_call(batch_b, meta_b, _batch_header(images, region_id))
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        assert exc.value.details().startswith("header.input_regions[0].region_id: no region")
        assert len(_jobs(site, "north-clinic")) == before
    finally:
        channel_a.close()
        channel_b.close()

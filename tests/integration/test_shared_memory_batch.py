"""A batch over shared memory, end to end: a same-host client's ProcessBatch names each
image's input and output part of its registered region (ProcessBatchHeader.input_regions,
output_regions) instead of sending chunks; the workers read the images and write the
results there (also when the images are computed as stacks), the reply is the headers
alone, and regions are refused to other subscribers, out of bounds, or in the wrong
number."""

from multiprocessing import shared_memory

import grpc
import numpy as np
import pytest

from medcompute.client import Client
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
    """One worker (a batch's later images gather into stacks while it is busy), two
    subscribers."""
    data = tmp_path_factory.mktemp("shm-batch")
    keys = KeyStore(data)
    tokens = {}
    for name, subscriber in [("a", "st-mary"), ("b", "north-clinic")]:
        _, tokens[name] = keys.create(subscriber, ["process"])
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=1, gpu_workers=0)
    with server_thread(config) as server:
        server.tokens = tokens
        yield server


@pytest.fixture
def region():
    made = []

    def make(size):
        shm = shared_memory.SharedMemory(create=True, size=size)
        made.append(shm)
        return shm
    yield make
    for shm in made:
        shm.close()
        try:
            shm.unlink()
        except FileNotFoundError:
            pass


def _images(n, shape=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(1000, 300, shape).astype(np.int16) for _ in range(n)]


def _jobs(site, subscriber="st-mary"):
    return len(site.call(site.catalog.list_jobs(subscriber, limit=10000)))


def test_a_batch_over_regions_equals_the_batch_over_chunks_bit_for_bit(site):
    images = _images(10) + [a[:32, :32].astype(np.uint8) for a in _images(6, seed=1)]
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


def _register(stub, metadata, shm) -> str:
    return stub.RegisterRegion(processing_pb2.RegisterRegionRequest(
        name=shm.name, size=shm.size), metadata=metadata).region_id


def _header(images, region_id, *, out_at=1 << 16, in_regions=None, out_regions=None):
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


def _call(stub, metadata, header, chunks=()):
    messages = [batch_pb2.ProcessBatchRequest(header=header), *chunks]
    return list(stub.ProcessBatch(iter(messages), metadata=metadata, timeout=120))


def _violations(exc):
    from medcompute.client.calls import field_violations
    return [f for f, _ in field_violations(exc)]


def test_the_replies_carry_the_headers_only_and_the_region_holds_the_results(site, region):
    images = _images(5, seed=2)
    shm = region(1 << 18)
    channel, batch, processing, metadata = _stubs(site, "a")
    try:
        region_id = _register(processing, metadata, shm)
        for k, a in enumerate(images):
            np.frombuffer(shm.buf, np.int16, a.size, offset=k * 8192)[:] = a.reshape(-1)
        replies = _call(batch, metadata, _header(images, region_id))
        assert [r.WhichOneof("msg") for r in replies] == ["result"] * len(images)
        with Client(site.address, timeout=60, api_key=site.tokens["a"],
                    shared_memory=False) as chunks:
            expected = {i.index: i.result.array for i in
                        chunks.process_many(images, OPS, device="cpu")}
        for r in replies:
            k = r.result.item
            got = np.frombuffer(shm.buf, np.float32, images[k].size,
                                offset=(1 << 16) + k * 16384)
            assert tuple(r.result.header.output.shape) == images[k].shape
            assert got.tobytes() == expected[k].tobytes()
            del got
    finally:
        channel.close()


def test_regions_in_the_wrong_number_or_out_of_bounds_are_refused_naming_the_field(
        site, region):
    images = _images(3, seed=3)
    shm = region(1 << 17)
    channel, batch, processing, metadata = _stubs(site, "a")
    try:
        region_id = _register(processing, metadata, shm)
        ok = _header(images, region_id)
        ins, outs = list(ok.input_regions), list(ok.output_regions)
        short = processing_pb2.SharedRegion(region_id=region_id, offset=0,
                                            length=images[2].nbytes - 2)
        small = processing_pb2.SharedRegion(region_id=region_id, offset=1 << 16, length=16)
        past = processing_pb2.SharedRegion(region_id=region_id, offset=shm.size - 8,
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
        before = _jobs(site)
        for kwargs, field in cases:
            with pytest.raises(grpc.RpcError) as exc:
                _call(batch, metadata, _header(images, region_id, **kwargs))
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            assert _violations(exc.value) == [field]
            if field == "header.input_regions":
                assert "expected one region per image of inputs (3), or none; got 2" \
                    in exc.value.details()
        assert _jobs(site) == before                        # no job was made
        # Chunks for an image whose bytes are in a region: the stream is refused.
        chunk = batch_pb2.ProcessBatchRequest(chunk=batch_pb2.BatchChunk(
            item=1, chunk=image_pb2.Chunk(data=images[1].tobytes())))
        with pytest.raises(grpc.RpcError) as exc:
            _call(batch, metadata, ok, [chunk])
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _violations(exc.value) == ["request[1].chunk.item"]
        assert "input_regions[1]" in exc.value.details()
    finally:
        channel.close()


def test_another_subscribers_region_is_not_found(site, region):
    images = _images(2, seed=4)
    shm = region(1 << 17)
    channel_a, _, processing_a, meta_a = _stubs(site, "a")
    channel_b, batch_b, _, meta_b = _stubs(site, "b")
    try:
        region_id = _register(processing_a, meta_a, shm)
        before = _jobs(site, "north-clinic")
        with pytest.raises(grpc.RpcError) as exc:
            _call(batch_b, meta_b, _header(images, region_id))
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        assert exc.value.details().startswith("header.input_regions[0].region_id: no region")
        assert _jobs(site, "north-clinic") == before
    finally:
        channel_a.close()
        channel_b.close()

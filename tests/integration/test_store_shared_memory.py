"""The store's Get into a same-host client's shared-memory region: the same voxels and
DICOM files as over chunks, only the header on the wire, and every misuse refused with
the field it names (another subscriber's region, a part too small or out of bounds, a
compressed or versioned Get)."""

from __future__ import annotations

from multiprocessing import shared_memory
from pathlib import Path

import grpc
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medcompute.client import Client
from medcompute.client.calls import field_violations
from medcompute.client.store import StoreClient
from medcompute.proto.v1 import (
    image_pb2,
    processing_pb2,
    processing_pb2_grpc,
    store_pb2,
    store_pb2_grpc,
)
from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def site(tmp_path_factory, server_thread):
    data = tmp_path_factory.mktemp("store-shm")
    keys = KeyStore(data)
    tokens = {}
    for name, subscriber in [("a", "st-mary"), ("b", "north-clinic")]:
        _, tokens[name] = keys.create(subscriber, ["process", "store"])
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=1, gpu_workers=0)
    with server_thread(config) as server:
        server.tokens = tokens
        yield server


@pytest.fixture(scope="module")
def stored(site):
    """An image registered as voxels and one registered as DICOM files, by a."""
    volume = np.random.default_rng(7).normal(300, 90, (6, 40, 52)).astype(np.int16)
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    with StoreClient(site.address, api_key=site.tokens["a"], shared_memory=False) as s:
        return volume, s.register(volume).image_id, ct, s.register(
            get_testdata_file("CT_small.dcm")).image_id


def test_a_get_through_the_region_equals_the_get_over_chunks(site, stored):
    volume, raw_id, ct, dicom_id = stored
    with StoreClient(site.address, api_key=site.tokens["a"]) as s:
        assert s.shared_memory                       # a server on this host: by itself
        shared = s.get(raw_id)
        files = s.get(dicom_id, dicom=True).files
        assert s._arena is not None and s._arena.shm is not None   # the region was used
        np.testing.assert_array_equal(shared.array, volume)
        assert shared.array.dtype == volume.dtype and shared.array.flags.writeable
        assert files == [ct]
        again = s.get(raw_id)                        # the region is reused, not a view
        again.array[0, 0, 0] += 1
        np.testing.assert_array_equal(shared.array, volume)
    with Client(site.address, api_key=site.tokens["a"]) as c:
        assert c.store is c.store                    # one store client, one region
        np.testing.assert_array_equal(c.store.get(raw_id).array, volume)
    with StoreClient(site.address, api_key=site.tokens["a"], shared_memory=False) as s:
        np.testing.assert_array_equal(s.get(raw_id).array, volume)
        assert s._arena is None


def _stubs(site, who):
    channel = grpc.insecure_channel(site.address)
    metadata = (("authorization", f"Bearer {site.tokens[who]}"),)
    return (channel, store_pb2_grpc.StoreServiceStub(channel),
            processing_pb2_grpc.ProcessingServiceStub(channel), metadata)


def _get(store, metadata, **fields):
    region = fields.pop("region")
    request = store_pb2.GetRequest(**fields)
    request.output_region.CopyFrom(processing_pb2.SharedRegion(**region))
    return list(store.Get(request, metadata=metadata, timeout=60))


def test_the_reply_is_the_header_alone_and_the_region_holds_the_bytes(site, stored):
    volume, raw_id, _, _ = stored
    region = shared_memory.SharedMemory(create=True, size=1 << 20)
    channel, store, processing, meta = _stubs(site, "a")
    try:
        rid = processing.RegisterRegion(processing_pb2.RegisterRegionRequest(
            name=region.name, size=region.size), metadata=meta).region_id
        replies = _get(store, meta, image_id=raw_id,
                       region=dict(region_id=rid, offset=4096, length=volume.nbytes))
        assert [r.WhichOneof("msg") for r in replies] == ["header"]
        assert replies[0].header.data.size == volume.nbytes
        got = np.frombuffer(region.buf, np.int16, volume.size, offset=4096)
        np.testing.assert_array_equal(got.reshape(volume.shape), volume)
        del got
        head = _get(store, meta, image_id=raw_id, header_only=True,
                    region=dict(region_id=rid, offset=0, length=1))
        assert [r.WhichOneof("msg") for r in head] == ["header"]     # nothing written
    finally:
        channel.close()
        region.close()
        region.unlink()


def test_misused_regions_are_refused_naming_the_field(site, stored):
    volume, raw_id, _, dicom_id = stored
    region = shared_memory.SharedMemory(create=True, size=1 << 20)
    channel, store, processing, meta = _stubs(site, "a")
    channel_b, store_b, _, meta_b = _stubs(site, "b")
    try:
        rid = processing.RegisterRegion(processing_pb2.RegisterRegionRequest(
            name=region.name, size=region.size), metadata=meta).region_id
        whole = dict(region_id=rid, offset=0, length=volume.nbytes)
        cases = [
            (store, meta, dict(image_id=raw_id, region=dict(whole, length=volume.nbytes - 2)),
             grpc.StatusCode.INVALID_ARGUMENT, "output_region.length",
             "the region's part holds"),
            (store, meta, dict(image_id=raw_id, region=dict(whole, offset=region.size - 8)),
             grpc.StatusCode.INVALID_ARGUMENT, "output_region.offset", "runs past"),
            (store, meta, dict(image_id=raw_id, region=dict(whole, region_id="")),
             grpc.StatusCode.INVALID_ARGUMENT, "output_region.region_id", "required"),
            (store, meta, dict(image_id=raw_id, region=dict(whole, length=0)),
             grpc.StatusCode.INVALID_ARGUMENT, "output_region.length", "more than 0"),
            (store, meta, dict(image_id=raw_id, region=whole,
                               compression=image_pb2.COMPRESSION_ZSTD),
             grpc.StatusCode.INVALID_ARGUMENT, "compression",
             "the bytes in a shared-memory region are uncompressed"),
            (store, meta, dict(image_id=dicom_id, region=whole, version="review"),
             grpc.StatusCode.INVALID_ARGUMENT, "version",
             "a shared-memory region takes the image as registered"),
            (store_b, meta_b, dict(image_id=raw_id, region=whole),   # b: a's region
             grpc.StatusCode.NOT_FOUND, "output_region.region_id", "no region"),
        ]
        for stub, metadata, fields, code, field, words in cases:
            with pytest.raises(grpc.RpcError) as exc:
                _get(stub, metadata, **fields)
            assert exc.value.code() == code, field
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                assert [f for f, _ in field_violations(exc.value)] == [field]
            assert words in exc.value.details() and field in exc.value.details()
        assert bytes(region.buf[:16]) == bytes(16)          # nothing was written
    finally:
        channel.close()
        channel_b.close()
        region.close()
        region.unlink()


def test_a_store_client_whose_region_the_server_forgot_registers_again(site, stored):
    volume, raw_id, _, _ = stored
    regions = site.running.runner.service.regions
    with StoreClient(site.address, api_key=site.tokens["a"]) as s:
        s.get(raw_id)
        old = s._arena.region_id
        regions.regions.pop(old)          # as after a restart of the server
        again = s.get(raw_id)
        assert s._arena.region_id not in ("", old) and s._arena.region_id in regions.regions
    np.testing.assert_array_equal(again.array, volume)

"""The API's conventions, read from the compiled descriptors, and what the protos promise
about the bytes on the wire."""

import numpy as np
import pytest

from medcompute.proto import wire
from medcompute.proto.v1 import (
    admin_pb2,
    image_pb2,
    jobs_pb2,
    operations_pb2,
    processing_pb2,
    store_pb2,
)

FILES = [m.DESCRIPTOR for m in (admin_pb2, image_pb2, jobs_pb2, operations_pb2, processing_pb2,
                                store_pb2)]
GO_PACKAGE = "medcompute/gen/go/medcompute/v1;medcomputev1"


@pytest.mark.parametrize("file", FILES, ids=lambda f: f.name)
def test_every_file_names_its_go_package(file):
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    assert proto.options.go_package == GO_PACKAGE


@pytest.mark.parametrize("file", FILES, ids=lambda f: f.name)
def test_every_enum_is_prefixed_with_an_unspecified_zero(file):
    import re

    for enum in file.enum_types_by_name.values():
        prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
        assert enum.values_by_number[0].name == prefix + "UNSPECIFIED"
        assert all(v.name.startswith(prefix) for v in enum.values), enum.name


@pytest.mark.parametrize("file", FILES, ids=lambda f: f.name)
def test_every_rpc_has_its_own_request_and_response(file):
    seen = set()
    for service in file.services_by_name.values():
        assert service.name.endswith("Service")
        for method in service.methods:
            assert method.input_type.name == f"{method.name}Request"
            assert method.output_type.name == f"{method.name}Response"
            assert method.input_type.name not in seen
            seen |= {method.input_type.name, method.output_type.name}


def test_a_blosc_chunk_is_the_documented_blosc2_chunk():
    import blosc2

    data = np.arange(50000, dtype="<i2").tobytes()
    [chunk] = list(wire.iter_chunks(data, compression=image_pb2.COMPRESSION_BLOSC, itemsize=2))
    assert len(chunk) < len(data)
    assert chunk[3] == 2                                          # typesize
    assert int.from_bytes(chunk[4:8], "little") == len(data)      # nbytes
    assert int.from_bytes(chunk[12:16], "little") == len(chunk)   # cbytes
    assert blosc2.get_cbuffer_sizes(chunk) == (
        len(data), len(chunk), int.from_bytes(chunk[8:12], "little"))
    assert blosc2.Filter.SHUFFLE.value in chunk[16:22]            # the filter pipeline
    assert blosc2.decompress(chunk) == data
    with pytest.raises(RuntimeError):                             # a chunk, not a frame
        blosc2.schunk_from_cframe(chunk)


def test_a_zstd_chunk_is_one_zstandard_frame():
    import zstandard

    data = bytes(range(256)) * 100
    [chunk] = list(wire.iter_chunks(data, compression=image_pb2.COMPRESSION_ZSTD))
    assert chunk[:4] == b"\x28\xb5\x2f\xfd"                         # the frame's magic number
    assert zstandard.ZstdDecompressor().decompress(chunk) == data


@pytest.mark.parametrize("compression", [image_pb2.COMPRESSION_UNSPECIFIED,
                                         image_pb2.COMPRESSION_NONE])
def test_unspecified_compression_is_none(compression):
    data = b"abc" * 10
    assert list(wire.iter_chunks(data, compression=compression)) == [data]
    assert bytes(wire.ChunkDecoder(compression, "x").decode(data)) == data


def test_a_refused_enum_value_is_named():
    text = wire.enum_choices(image_pb2.Compression, 7)
    assert text == ("expected one of COMPRESSION_ZSTD, COMPRESSION_BLOSC, COMPRESSION_NONE; "
                    "got 7 (not a value of Compression)")
    assert wire.enum_choices(processing_pb2.Device, 0, (1, 2)).endswith(
        "got DEVICE_UNSPECIFIED (0)")
    with pytest.raises(wire.WireError, match=r"got 99 \(not a value of Compression\)"):
        wire.ChunkDecoder(99, "header.input.inline.compression")


def test_operands_are_counted_from_zero_in_chunks_as_in_operations():
    assert not wire.image_chunk(0, b"x").HasField("operand")
    assert wire.image_chunk(1, b"x").operand == 0
    assert wire.image_chunk(3, b"x").operand == 2
    assert "image" not in image_pb2.Chunk.DESCRIPTOR.fields_by_name


def test_chunk_messages_set_in_place_equal_the_nested_constructors():
    from medcompute.proto.v1 import batch_pb2

    data = bytes(range(256)) * 16
    for index in (0, 1, 3):
        assert wire.chunk_message(processing_pb2.ProcessRequest, data, index=index) == \
            processing_pb2.ProcessRequest(chunk=wire.image_chunk(index, data))
    built = wire.chunk_message(batch_pb2.ProcessBatchResponse, data, item=7)
    assert built.SerializeToString() == batch_pb2.ProcessBatchResponse(
        chunk=batch_pb2.BatchChunk(item=7, chunk=image_pb2.Chunk(data=data))).SerializeToString()
    assert built.WhichOneof("msg") == "chunk" and not built.chunk.chunk.HasField("operand")

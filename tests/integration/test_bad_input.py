"""Bad input: a precise status, a message naming the field, and the server keeps serving."""

from pathlib import Path

import grpc
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medcompute.client.ops import parse_op
from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2 as img
from medcompute.proto.v1 import processing_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _raw_desc(array, **changes):
    desc = img.ImageDescriptor(encoding=img.ENCODING_RAW, shape=array.shape,
                               dtype=wire.dtype_to_proto(array.dtype), size=array.nbytes,
                               crc32=wire.crc32(array))
    for key, value in changes.items():
        if isinstance(value, (list, tuple)):
            field = getattr(desc, key)
            del field[:]
            field.extend(value)
        else:
            setattr(desc, key, value)
    return desc


def _messages(desc, payloads, ops=("gaussian:sigma=1",), operands=(), **header):
    head = pb.ProcessHeader(pipeline=[parse_op(t) for t in ops],
                            input=img.ImageSource(inline=desc),
                            operands=[img.ImageSource(inline=d) for d, _ in operands], **header)
    yield pb.ProcessRequest(header=head)
    for data in payloads:
        yield pb.ProcessRequest(chunk=img.Chunk(data=data))
    for i, (_, blobs) in enumerate(operands):
        for data in blobs:
            yield pb.ProcessRequest(chunk=img.Chunk(operand=i, data=data))


def _expect(raw, client, messages, code, *fragments):
    with pytest.raises(grpc.RpcError) as info:
        raw.process(messages)
    assert info.value.code() == code, info.value.details()
    for fragment in fragments:
        assert fragment in info.value.details(), info.value.details()
    # The server is still serving: a good call right after succeeds.
    ok = client.process(np.ones((4, 4), np.float32), ["gaussian:sigma=1"])
    np.testing.assert_allclose(ok.array, 1.0, rtol=1e-6)
    return info.value.details()


A = np.arange(64, dtype=np.int16).reshape(8, 8)


def test_unknown_operation(raw, client):
    from medcompute.proto.v1 import operations_pb2 as o

    head = pb.ProcessHeader(pipeline=[o.Operation.FromString(bytes([0xFA, 0x01, 0x00]))],
                            input=img.ImageSource(inline=_raw_desc(A)))
    _expect(raw, client, [pb.ProcessRequest(header=head),
                          pb.ProcessRequest(chunk=img.Chunk(data=A.tobytes()))],
            INVALID, "header.pipeline[0]", "does not know", "gaussian")


def test_unknown_parameter(raw, client):
    from medcompute.proto.v1 import operations_pb2 as o

    op = o.Operation(gaussian=o.GaussianOp.FromString(
        o.GaussianOp(sigma=[1]).SerializeToString() + bytes([0x78, 5])))
    head = pb.ProcessHeader(pipeline=[op], input=img.ImageSource(inline=_raw_desc(A)))
    _expect(raw, client, [pb.ProcessRequest(header=head),
                          pb.ProcessRequest(chunk=img.Chunk(data=A.tobytes()))],
            INVALID, "header.pipeline[0].gaussian", "unknown parameter")


@pytest.mark.parametrize("op, field, words", [
    ("gaussian:sigma=-2", "header.pipeline[0].gaussian.sigma", ">= 0"),
    ("gaussian:sigma=nan", "header.pipeline[0].gaussian.sigma", "finite"),
    ("gaussian:sigma=inf", "header.pipeline[0].gaussian.sigma", "finite"),
    ("gaussian:sigma_mm=1", "header.pipeline[0].gaussian.sigma_mm", "no voxel spacing"),
    ("mip:axis=2", "header.pipeline[0].project.axis", "out of range"),
])
def test_bad_parameters(raw, client, op, field, words):
    _expect(raw, client, _messages(_raw_desc(A), [A.tobytes()], ops=[op]), INVALID, field, words)


def test_shape_and_dtype_inconsistent_with_the_declared_size(raw, client):
    desc = _raw_desc(A, size=A.nbytes + 2)
    _expect(raw, client, _messages(desc, [A.tobytes()]), INVALID, "header.input.inline.size",
            "needs 128")


def test_more_bytes_than_the_shape_holds(raw, client):
    desc = _raw_desc(A, shape=[4, 8])
    desc.ClearField("size")
    desc.ClearField("crc32")
    _expect(raw, client, _messages(desc, [A.tobytes()]), INVALID, "header.input.inline.size",
            "more bytes")


def test_stream_that_ends_early(raw, client):
    data = A.tobytes()
    _expect(raw, client, _messages(_raw_desc(A), [data[:50]]), INVALID,
            "header.input.inline.size", "ended after 50 of the 128 bytes")


def test_checksum_mismatch(raw, client):
    desc = _raw_desc(A, crc32=wire.crc32(A) ^ 1)
    _expect(raw, client, _messages(desc, [A.tobytes()]), INVALID, "header.input.inline.crc32",
            "checksum mismatch")


def test_zero_sized_image(raw, client):
    empty = np.zeros((0, 8), np.int16)
    _expect(raw, client, _messages(_raw_desc(empty), []), INVALID, "header.input.inline.shape",
            "empty")


def test_five_dimensional_image(raw, client):
    five = np.zeros((1, 1, 1, 2, 2), np.int16)
    _expect(raw, client, _messages(_raw_desc(five), [five.tobytes()]), INVALID,
            "header.input.inline.shape", "1 to 4 axes")


def test_unknown_dtype(raw, client):
    _expect(raw, client, _messages(_raw_desc(A, dtype=0), [A.tobytes()]), INVALID,
            "header.input.inline.dtype", "UINT8")


def test_subtraction_with_mismatched_shapes(raw, client):
    other = np.zeros((7, 8), np.int16)
    _expect(raw, client,
            _messages(_raw_desc(A), [A.tobytes()], ops=["subtract"],
                      operands=[(_raw_desc(other), [other.tobytes()])]),
            INVALID, "header.pipeline[0].subtract.operand", "(7, 8)", "(8, 8)")


def test_chunk_for_an_image_that_does_not_exist(raw, client):
    head = pb.ProcessHeader(pipeline=[parse_op("gaussian:sigma=1")],
                            input=img.ImageSource(inline=_raw_desc(A)))
    msgs = [pb.ProcessRequest(header=head),
            pb.ProcessRequest(chunk=img.Chunk(operand=2, data=A.tobytes()))]
    _expect(raw, client, msgs, INVALID, "request[1].chunk.operand", "operand 2 does not exist",
            "0 operand(s), counted from 0")


def test_first_message_without_a_header(raw, client):
    _expect(raw, client, [pb.ProcessRequest(chunk=img.Chunk(data=b"x"))], INVALID,
            "request[0].header")


def test_a_second_header(raw, client):
    head = pb.ProcessHeader(pipeline=[parse_op("gaussian:sigma=1")],
                            input=img.ImageSource(inline=_raw_desc(A)))
    msgs = [pb.ProcessRequest(header=head), pb.ProcessRequest(header=head)]
    _expect(raw, client, msgs, INVALID, "request[1]", "only the first message")


def test_missing_input(raw, client):
    head = pb.ProcessHeader(pipeline=[parse_op("gaussian:sigma=1")])
    _expect(raw, client, [pb.ProcessRequest(header=head)], INVALID, "header.input",
            "expected an image")


def test_dicom_output_from_raw_input(raw, client):
    _expect(raw, client, _messages(_raw_desc(A), [A.tobytes()],
                                   output_format=pb.OUTPUT_FORMAT_DICOM_FILE),
            INVALID, "header.output_format", "DICOM input")


def test_gpu_asked_for_on_a_cluster_without_one(raw, client):
    _expect(raw, client, _messages(_raw_desc(A), [A.tobytes()], device=pb.DEVICE_GPU),
            grpc.StatusCode.FAILED_PRECONDITION, "header.device", "no GPU worker")


def _dicom(blob: bytes, **header):
    desc = img.ImageDescriptor(encoding=img.ENCODING_DICOM, file_sizes=[len(blob)], size=len(blob),
                               crc32=wire.crc32(blob))
    return _messages(desc, [blob], **header)


def test_a_file_that_is_not_dicom(raw, client):
    blob = Path(get_testdata_file("README.txt")).read_bytes()
    _expect(raw, client, _dicom(blob), INVALID, "header.input.inline", "not a DICOM file")


def test_a_truncated_dicom(raw, client):
    blob = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    _expect(raw, client, _dicom(blob[: len(blob) // 2]), INVALID, "header.input.inline")


def test_dicom_without_pixel_data(raw, client):
    blob = Path(get_testdata_file("rtstruct.dcm")).read_bytes()
    _expect(raw, client, _dicom(blob), INVALID, "header.input.inline", "Pixel Data")


def test_failed_jobs_are_recorded_with_their_reason(raw, client, server):
    with pytest.raises(grpc.RpcError):
        raw.process(_messages(_raw_desc(A, crc32=1), [A.tobytes()]))
    import sqlite3

    db = sqlite3.connect(server.catalog.path)
    try:
        rows = db.execute("SELECT state, record FROM jobs ORDER BY created_at DESC LIMIT 1")
        state, record = rows.fetchone()
    finally:
        db.close()
    assert state == "FAILED" and "checksum mismatch" in record and "INVALID_ARGUMENT" in record


class _BytesCaller:
    """Process calls whose request messages are the given bytes, sent as they are."""

    def __init__(self, address: str):
        self.address = address

    def process(self, payloads):
        channel = grpc.insecure_channel(self.address)
        try:
            call = channel.stream_stream("/medcompute.v1.ProcessingService/Process",
                                         request_serializer=lambda b: b,
                                         response_deserializer=pb.ProcessResponse.FromString)
            return list(call(iter(payloads), timeout=60))
        finally:
            channel.close()


@pytest.mark.parametrize("where", [0, 1])
def test_a_message_that_is_not_protobuf(client, server, where):
    head = pb.ProcessHeader(pipeline=[parse_op("gaussian:sigma=1")],
                            input=img.ImageSource(inline=_raw_desc(A)))
    payloads = [pb.ProcessRequest(header=head).SerializeToString(),
                pb.ProcessRequest(chunk=img.Chunk(data=A.tobytes())).SerializeToString()]
    payloads.insert(where, b"\x12\xff\xff\xff\xff\x0f")  # a length far past the end
    _expect(_BytesCaller(server.address), client, payloads, INVALID, f"request[{where}]"
            if where else "request", "could not be parsed" if where == 0 else "not a valid")


def test_a_truncated_blosc_chunk(raw, client):
    payload = next(wire.iter_chunks(A, compression=img.COMPRESSION_BLOSC, itemsize=2))
    desc = _raw_desc(A, compression=img.COMPRESSION_BLOSC)
    _expect(raw, client, _messages(desc, [payload[:34]]), INVALID,
            "header.input.inline.compression", "BLOSC")


def test_a_zstd_bomb(raw, client):
    import zstandard

    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(256 << 20))
    desc = _raw_desc(A, compression=img.COMPRESSION_ZSTD)
    _expect(raw, client, _messages(desc, [bomb]), INVALID, "header.input.inline.compression",
            "more than")


def test_rle_data_that_makes_the_decoder_panic(raw, client):
    blob = Path(get_testdata_file("MR_small_RLE.dcm")).read_bytes()
    _expect(raw, client, _dicom(blob[:6036] + blob[6037:]), INVALID, "header.input.inline",
            "could not be decoded")


def test_dicom_output_of_a_projected_single_slice(raw, client):
    blob = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    _expect(raw, client, _dicom(blob, ops=["mip:axis=0"],
                                output_format=pb.OUTPUT_FORMAT_DICOM_FILE),
            INVALID, "header.output_format", "2 or 3 axes")

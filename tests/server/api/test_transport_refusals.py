"""Every refusal of api/transport.py: image descriptors, the header message of a stream,
and chunks for images a request has not got (or needs none for)."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.proto.v1 import batch_pb2, image_pb2, processing_pb2
from medcompute.server.api.transport import (
    batch_payloads,
    expect_image,
    header_and_chunks,
    image_payloads,
)
from medcompute.server.errors import InvalidArgument, ResourceExhausted
from medcompute.server.storage.spool import ExpectedImage

F = "header.input.inline"
RAW, DICOM = image_pb2.ENCODING_RAW, image_pb2.ENCODING_DICOM
INT16 = image_pb2.DATA_TYPE_INT16


@pytest.mark.parametrize("desc, error, field, words", [
    (image_pb2.ImageDescriptor(encoding=RAW, dtype=INT16, shape=[1, 1, 1, 2, 2]),
     InvalidArgument, "shape", "expected 1 to 4 axes, got 5"),
    (image_pb2.ImageDescriptor(encoding=RAW, dtype=INT16, shape=[2, 3], spacing_mm=[1.0]),
     InvalidArgument, "spacing_mm", "expected 2 values (one per axis), got 1"),
    (image_pb2.ImageDescriptor(encoding=RAW, dtype=INT16, shape=[2, 3],
                               spacing_mm=[1.0, float("nan")]),
     InvalidArgument, "spacing_mm", "every spacing must be finite and > 0 mm, got nan"),
    (image_pb2.ImageDescriptor(encoding=DICOM, file_sizes=[300], spacing_mm=[0.5, 0.0]),
     InvalidArgument, "spacing_mm", "every spacing must be finite and > 0 mm, got 0.0"),
    (image_pb2.ImageDescriptor(encoding=RAW, dtype=INT16, shape=[4, 0]), InvalidArgument,
     "shape", "every axis must be >= 1, got [4, 0] (an empty image)"),
    (image_pb2.ImageDescriptor(encoding=RAW, dtype=INT16, shape=[2, 3], size=13),
     InvalidArgument, "size", "declares 13 bytes but shape [2, 3] of int16 needs 12"),
    (image_pb2.ImageDescriptor(encoding=RAW, dtype=INT16, shape=[2, 3], file_sizes=[12]),
     InvalidArgument, "file_sizes", "only DICOM images have file_sizes"),
    (image_pb2.ImageDescriptor(encoding=DICOM), InvalidArgument, "file_sizes",
     "expected the byte length of each DICOM file, all > 0"),
    (image_pb2.ImageDescriptor(encoding=DICOM, file_sizes=[600, 0]), InvalidArgument,
     "file_sizes", "expected the byte length of each DICOM file, all > 0"),
    (image_pb2.ImageDescriptor(encoding=DICOM, file_sizes=[600, 600]), ResourceExhausted,
     "file_sizes", "the files have 1200 bytes; this server accepts at most 1000"),
    (image_pb2.ImageDescriptor(encoding=DICOM, file_sizes=[300, 300], size=700),
     InvalidArgument, "size", "declares 700 bytes but file_sizes add up to 600"),
])
def test_descriptor_refusals(desc, error, field, words):
    with pytest.raises(error) as caught:
        expect_image(desc, F, max_bytes=1000)
    assert type(caught.value) is error
    assert caught.value.field == f"{F}.{field}"
    assert words in caught.value.message


async def _stream(*messages):
    for message in messages:
        yield message


def _drain(payloads) -> list:
    async def run():
        return [item async for item in payloads]
    return asyncio.run(run())


@pytest.mark.parametrize("messages", [
    [],
    [processing_pb2.ProcessRequest(chunk=image_pb2.Chunk(data=b"xx"))],
])
def test_a_stream_must_start_with_its_header(messages):
    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(header_and_chunks(_stream(*messages)))
    assert caught.value.field == "request[0].header"
    assert "the first message must carry the header" in caught.value.message


def test_only_the_first_message_carries_a_header():
    header = processing_pb2.ProcessHeader()
    stream = _stream(processing_pb2.ProcessRequest(header=header),
                     processing_pb2.ProcessRequest(chunk=image_pb2.Chunk(data=b"ab")),
                     processing_pb2.ProcessRequest(header=header))

    async def run():
        _, chunks = await header_and_chunks(stream)
        return [index async for index, _ in chunks]

    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(run())
    assert caught.value.field == "request[2]"
    assert caught.value.message == "only the first message carries a header; the rest are chunks"


INLINE = ExpectedImage("input.inline", "raw", 4)
STORED = ExpectedImage("operands[0].image_id", "stored", 0, stored="img1")


def test_no_chunks_for_a_stored_operand():
    chunks = _stream((1, image_pb2.Chunk(data=b"ab")),
                     (2, image_pb2.Chunk(operand=0, data=b"cd")))
    with pytest.raises(InvalidArgument) as caught:
        _drain(image_payloads(chunks, [INLINE, STORED]))
    assert caught.value.field == "request[2].chunk.operand"
    assert "operand 0 is a stored image (image_id); send no chunks for it" in caught.value.message


def _batch_chunk(item, data=b"ab", **chunk):
    return batch_pb2.BatchChunk(item=item, chunk=image_pb2.Chunk(data=data, **chunk))


@pytest.mark.parametrize("chunk, field, words", [
    (_batch_chunk(2), "request[1].chunk.item",
     "image 2 does not exist: this batch has 2 image(s), counted from 0"),
    (_batch_chunk(1), "request[1].chunk.item",
     "image 1 is a stored image (image_id); send no chunks for it"),
    (_batch_chunk(0, operand=0), "request[1].chunk.chunk.operand",
     "not used in a batch (the operands are stored images)"),
])
def test_batch_chunk_refusals(chunk, field, words):
    images = [INLINE, ExpectedImage("inputs[1].image_id", "stored", 0, stored="img1")]
    with pytest.raises(InvalidArgument) as caught:
        _drain(batch_payloads(_stream((1, chunk)), images))
    assert caught.value.field == field
    assert words in caught.value.message

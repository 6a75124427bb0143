"""Server side of the chunked transport: validate image descriptors into
ExpectedImages, turn the chunks of a request stream into each image's payloads (which the
domain writes where it chooses, storage/spool.py), and stream a result back.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Iterator

from google.protobuf.message import DecodeError

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2
from medcompute.server.errors import InvalidArgument, ResourceExhausted
from medcompute.server.storage.spool import ExpectedImage

__all__ = ["expect_image", "image_payloads", "batch_payloads", "result_chunks",
           "result_payloads", "header_and_chunks"]

MAX_DIMS = 4


def _spacing(desc, ndim: int | None, field: str) -> tuple[float, ...] | None:
    values = tuple(desc.spacing_mm)
    if not values:
        return None
    if ndim is not None and len(values) != ndim:
        raise InvalidArgument(f"expected {ndim} values (one per axis), got {len(values)}",
                              f"{field}.spacing_mm")
    for v in values:
        if not (math.isfinite(v) and v > 0):
            raise InvalidArgument(f"every spacing must be finite and > 0 mm, got {v}",
                                  f"{field}.spacing_mm")
    return values


def expect_image(desc: image_pb2.ImageDescriptor, field: str, *, max_bytes: int) -> ExpectedImage:
    """Validate an inline image descriptor; InvalidArgument names the field."""
    if desc.compression not in image_pb2.Compression.values():
        raise InvalidArgument(wire.enum_choices(image_pb2.Compression, desc.compression),
                              f"{field}.compression")
    crc = desc.crc32 if desc.HasField("crc32") else None
    if desc.encoding == image_pb2.ENCODING_RAW:
        shape = tuple(int(n) for n in desc.shape)
        if not 1 <= len(shape) <= MAX_DIMS:
            raise InvalidArgument(f"expected 1 to {MAX_DIMS} axes, got {len(shape)}",
                                  f"{field}.shape")
        if any(n == 0 for n in shape):
            raise InvalidArgument(f"every axis must be >= 1, got {list(shape)} (an empty image)",
                                  f"{field}.shape")
        try:
            dtype = wire.dtype_from_proto(desc.dtype, f"{field}.dtype")
        except wire.WireError as exc:
            raise InvalidArgument(exc.message, exc.field) from None
        size = math.prod(shape) * dtype.itemsize
        if size > max_bytes:
            raise ResourceExhausted(f"the image has {size} bytes; this server accepts at most "
                                    f"{max_bytes}", f"{field}.shape")
        if desc.size and desc.size != size:
            raise InvalidArgument(
                f"declares {desc.size} bytes but shape {list(shape)} of {dtype.name} "
                f"needs {size}", f"{field}.size")
        if desc.file_sizes:
            raise InvalidArgument("only DICOM images have file_sizes", f"{field}.file_sizes")
        return ExpectedImage(field, "raw", size, shape, dtype, _spacing(desc, len(shape), field),
                             compression=desc.compression, crc32=crc)
    if desc.encoding == image_pb2.ENCODING_DICOM:
        sizes = tuple(int(n) for n in desc.file_sizes)
        if not sizes or any(n == 0 for n in sizes):
            raise InvalidArgument("expected the byte length of each DICOM file, all > 0",
                                  f"{field}.file_sizes")
        size = sum(sizes)
        if size > max_bytes:
            raise ResourceExhausted(f"the files have {size} bytes; this server accepts at most "
                                    f"{max_bytes}", f"{field}.file_sizes")
        if desc.size and desc.size != size:
            raise InvalidArgument(f"declares {desc.size} bytes but file_sizes add up to {size}",
                                  f"{field}.size")
        return ExpectedImage(field, "dicom", size, spacing=_spacing(desc, None, field),
                             file_sizes=sizes, compression=desc.compression, crc32=crc)
    raise InvalidArgument(wire.enum_choices(image_pb2.Encoding, desc.encoding), f"{field}.encoding")


async def header_and_chunks(request_iterator):
    """Split a request stream of one header message then chunk messages.

    Returns the header and an async iterator of (message index, Chunk) that refuses any
    further header. InvalidArgument when the first message carries no header.
    """
    first = await anext(aiter(request_iterator), None)
    if first is None or first.WhichOneof("msg") != "header":
        raise InvalidArgument("the first message must carry the header", "request[0].header")

    async def chunks():
        index = 0
        async for message in request_iterator:
            index += 1
            if message.WhichOneof("msg") != "chunk":
                raise InvalidArgument("only the first message carries a header; the rest are "
                                      "chunks", f"request[{index}]")
            yield index, message.chunk

    return first.header, chunks()


NOT_PROTOBUF = ("not a valid protobuf encoding of a request message; send messages encoded "
                "as the API's .proto files define them")


async def image_payloads(chunks: AsyncIterator,
                         expected: list[ExpectedImage]) -> AsyncIterator[tuple[int, bytes]]:
    """The chunks of one request's images as (image, payload): ``image`` 0 is the input,
    ``k + 1`` is ``operands[k]``; the payload as it came (compressed or not).

    ``chunks`` yields (message index, Chunk). Raises InvalidArgument for a chunk of an
    unknown or a stored image, or a message that is not a request message.
    """
    index = 0
    try:
        async for index, chunk in chunks:
            # expected[0] is the input, expected[k + 1] is operands[k].
            i = chunk.operand + 1 if chunk.HasField("operand") else 0
            what = f"operand {chunk.operand}" if i else "the input image"
            if i >= len(expected):
                raise InvalidArgument(
                    f"operand {chunk.operand} does not exist: this request has "
                    f"{len(expected) - 1} operand(s), counted from 0 (leave operand unset "
                    "for the input image)", f"request[{index}].chunk.operand")
            if expected[i].stored is not None:
                raise InvalidArgument(f"{what} is a stored image (image_id); send no chunks "
                                      "for it", f"request[{index}].chunk.operand")
            yield i, chunk.data
    except DecodeError:  # raised by gRPC while it reads the stream: not a request message
        raise InvalidArgument(NOT_PROTOBUF, f"request[{index + 1}]") from None


async def batch_payloads(chunks: AsyncIterator, expected: list[ExpectedImage],
                         regions=()) -> AsyncIterator[tuple[int, bytes]]:
    """The chunks of a batch's images as (image, payload), after the checks every batch
    call makes: an image of the batch (``expected[i]`` is image i), not a stored one nor
    one in a shared-memory region (``regions[i]`` set), no operand. ``chunks`` yields
    (message index, BatchChunk)."""
    index = 0
    try:
        async for index, message in chunks:
            i = message.item
            if i >= len(expected):
                raise InvalidArgument(f"image {i} does not exist: this batch has "
                                      f"{len(expected)} image(s), counted from 0",
                                      f"request[{index}].chunk.item")
            if expected[i].stored is not None:
                raise InvalidArgument(f"image {i} is a stored image (image_id); send no "
                                      "chunks for it", f"request[{index}].chunk.item")
            if regions and regions[i] is not None:
                raise InvalidArgument(f"image {i}'s bytes are in input_regions[{i}]; send no "
                                      "chunks for it", f"request[{index}].chunk.item")
            if message.chunk.HasField("operand"):
                raise InvalidArgument("not used in a batch (the operands are stored images)",
                                      f"request[{index}].chunk.chunk.operand")
            yield i, message.chunk.data
    except DecodeError:
        raise InvalidArgument(NOT_PROTOBUF, f"request[{index + 1}]") from None


def result_payloads(result, *, compression: int, itemsize: int) -> Iterator[bytes]:
    """The chunk payloads of a TaskResult: its bytes in memory, or its file."""
    if result.data is not None:
        yield from wire.iter_chunks(result.data, compression=compression, itemsize=itemsize)
    else:
        yield from result_chunks(result.out_path, compression=compression, itemsize=itemsize)


def result_chunks(path: str | os.PathLike, *, compression: int, itemsize: int) -> Iterator[bytes]:
    """The chunk payloads of a result file."""
    with open(path, "rb") as f:
        while piece := f.read(wire.CHUNK_SIZE):
            yield from wire.iter_chunks(piece, compression=compression, itemsize=itemsize)

"""The refusal of api/store.py a Register stream can meet in its chunks: an operand (a
registration carries one image)."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.proto.v1 import image_pb2
from medcompute.server.api.store import registration
from medcompute.server.errors import InvalidArgument


async def _chunks():
    yield 1, image_pb2.Chunk(data=b"\x00" * 8)
    yield 2, image_pb2.Chunk(operand=1, data=b"\x00" * 8)


def test_a_registration_chunk_for_an_operand_is_refused():
    desc = image_pb2.ImageDescriptor(encoding=image_pb2.ENCODING_RAW, shape=[4, 4],
                                     dtype=image_pb2.DATA_TYPE_UINT8)
    expected, payloads = registration(desc, _chunks(), max_bytes=1 << 20)
    assert expected.field == "header.image" and expected.size == 16

    async def drain():
        return [p async for p in payloads]

    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(drain())
    assert caught.value.field == "request[2].chunk.operand"
    assert caught.value.message == ("a registration carries one image and no operands "
                                    "(leave operand unset); got operand 1")

"""A chunk for an operand the request has not got (api/transport.py): refused naming the
message's operand field, with how operands are counted."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from medcompute.proto.v1 import image_pb2
from medcompute.server.api.transport import image_payloads
from medcompute.server.errors import InvalidArgument
from medcompute.server.storage.spool import ExpectedImage

INPUT = ExpectedImage("input.inline", "raw", 8, (2, 2), np.dtype(np.int16))
MASK = ExpectedImage("operands[0].inline", "raw", 8, (2, 2), np.dtype(np.int16))


async def _stream(*chunks):
    for index, chunk in enumerate(chunks, start=1):
        yield index, chunk


@pytest.mark.parametrize("expected, operand, words", [
    ([INPUT, MASK], 1, "operand 1 does not exist: this request has 1 operand(s), counted from "
                       "0 (leave operand unset for the input image)"),
    ([INPUT], 0, "operand 0 does not exist: this request has 0 operand(s), counted from 0 "
                 "(leave operand unset for the input image)"),
])
def test_a_chunk_for_an_operand_the_request_has_not_is_refused(expected, operand, words):
    chunks = _stream(image_pb2.Chunk(data=b"\0" * 8),
                     image_pb2.Chunk(operand=operand, data=b"\0" * 8))
    received = []

    async def run():
        async for item in image_payloads(chunks, expected):
            received.append(item)

    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(run())
    assert received == [(0, b"\0" * 8)]            # the input's chunk went through first
    assert caught.value.field == "request[2].chunk.operand"
    assert caught.value.message == words

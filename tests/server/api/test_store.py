"""The Store servicer's edge: Compression enum values to the store's Coder, and a Register
call's descriptor and chunks to what the store takes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2 as img
from medcompute.server.api.store import registration, stream_coder
from medcompute.server.errors import InvalidArgument
from medcompute.server.store.coding import BLOSC, NONE, RAW, ZSTD
from tests import store_helpers as H


@pytest.mark.parametrize("code, name", [(img.COMPRESSION_UNSPECIFIED, NONE),
                                        (img.COMPRESSION_NONE, NONE),
                                        (img.COMPRESSION_ZSTD, ZSTD),
                                        (img.COMPRESSION_BLOSC, BLOSC)])
def test_a_compression_is_the_store_s_name_and_codes_the_wire_s_chunks(code, name):
    coder = stream_coder(code)
    assert coder.compression == name and coder.code == code
    data = np.arange(5000, dtype=np.int16).tobytes()
    decoder = wire.ChunkDecoder(code, "test")
    assert b"".join(bytes(decoder.decode(p)) for p in coder.chunks(data, itemsize=2)) == data


def test_an_unknown_compression_is_named():
    with pytest.raises(InvalidArgument) as caught:
        stream_coder(9)
    assert caught.value.field == "compression"
    assert "9 (not a value of Compression)" in caught.value.message


def test_a_registration_is_the_expected_image_and_the_chunks_payloads():
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    pieces = H.payloads(array, chunk_size=5)

    async def main(image):
        expected, payloads = registration(H.raw_descriptor(array), H.stream(pieces, image),
                                          max_bytes=1 << 20)
        assert (expected.field, expected.encoding, expected.shape) == ("header.image", RAW,
                                                                       (3, 4))
        return [p async for p in payloads]

    assert asyncio.run(main(0)) == pieces
    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(main(1))
    assert caught.value.field == "request[1].chunk.operand"

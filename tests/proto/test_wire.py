"""Chunking, compression and checksums shared by client and server."""

import numpy as np
import pytest

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2


@pytest.mark.parametrize("compression", [image_pb2.COMPRESSION_NONE, image_pb2.COMPRESSION_ZSTD,
                                         image_pb2.COMPRESSION_BLOSC])
@pytest.mark.parametrize("dtype", ["u1", "<i2", "<f4", "<f8"])
def test_round_trip_over_several_chunks(compression, dtype):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 200, size=(3, 70, 50)).astype(dtype)
    chunks = list(wire.iter_chunks(a, compression=compression, itemsize=a.dtype.itemsize,
                                   chunk_size=4096))
    assert len(chunks) == -(-a.nbytes // 4096)
    dec = wire.ChunkDecoder(compression, "f")
    out = b"".join(bytes(dec.decode(c)) for c in chunks)
    assert out == a.tobytes()
    assert wire.crc32(out) == wire.crc32(a)


def test_crc_continues_across_pieces():
    data = bytes(range(256)) * 10
    assert wire.crc32(data[1000:], wire.crc32(data[:1000])) == wire.crc32(data)


def test_the_checksum_is_zlibs_crc32_whichever_library_computes_it():
    import zlib

    data = np.random.default_rng(3).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    assert wire.crc32(data) == zlib.crc32(data) & 0xFFFFFFFF
    assert wire.crc32(b"123456789") == 0xCBF43926          # the CRC-32 check value
    assert wire.crc32(data[7:], zlib.crc32(data[:7])) == zlib.crc32(data)


@pytest.mark.parametrize("compression", [image_pb2.COMPRESSION_ZSTD, image_pb2.COMPRESSION_BLOSC])
def test_garbage_chunk_is_a_wire_error_naming_the_field(compression):
    dec = wire.ChunkDecoder(compression, "header.input.inline.compression")
    with pytest.raises(wire.WireError) as info:
        dec.decode(b"\x00" * 40)
    assert info.value.field == "header.input.inline.compression"


def test_decompression_bomb_is_refused():
    import zstandard

    bomb = zstandard.ZstdCompressor().compress(bytes(64 << 20))
    assert len(bomb) < 1 << 20
    with pytest.raises(wire.WireError, match="more than"):
        wire.ChunkDecoder(image_pb2.COMPRESSION_ZSTD, "f").decode(bomb)


def test_unknown_compression_is_refused():
    with pytest.raises(wire.WireError, match="COMPRESSION_NONE"):
        wire.ChunkDecoder(99, "f")


def test_dtypes_map_both_ways():
    for code, dt in wire.DTYPES.items():
        assert wire.dtype_to_proto(dt) == code
        assert wire.dtype_to_proto(dt.newbyteorder(">")) == code
    with pytest.raises(ValueError, match="not supported"):
        wire.dtype_to_proto(np.complex64)
    with pytest.raises(wire.WireError):
        wire.dtype_from_proto(0, "header.input.inline.dtype")


def test_a_bomb_that_states_its_size_is_refused_before_it_is_decoded():
    import tracemalloc

    import zstandard

    # A zstd frame states its decoded size; the decoder would allocate all of it.
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(256 << 20))
    assert zstandard.frame_content_size(bomb) == 256 << 20
    tracemalloc.start()
    try:
        with pytest.raises(wire.WireError, match="more than"):
            wire.ChunkDecoder(image_pb2.COMPRESSION_ZSTD, "f").decode(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < wire.MAX_CHUNK_DECODED * 2


@pytest.mark.parametrize("damage", ["truncated", "truncated, header fixed up"])
def test_a_short_blosc_chunk_is_refused_not_read_past_its_end(damage):
    # Its header states the compressed length; a decoder trusting it reads past the end
    # of a shorter chunk (and crashes the process).
    good = next(wire.iter_chunks(np.arange(5000, dtype="<i2"),
                                 compression=image_pb2.COMPRESSION_BLOSC,
                                 itemsize=2))
    decoder = wire.ChunkDecoder(image_pb2.COMPRESSION_BLOSC, "header.input.inline.compression")
    for cut in (16, 34, len(good) // 2, len(good) - 1):
        short = bytearray(good[:cut])
        if damage != "truncated":
            short[12:16] = cut.to_bytes(4, "little")
        with pytest.raises(wire.WireError) as info:
            decoder.decode(bytes(short))
        assert info.value.field == "header.input.inline.compression"

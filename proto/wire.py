"""The wire format every streaming call shares: dtypes, chunking, compression, checksums.

Used by both ends, so the client and the server cannot disagree on it. An image
travels as its decoded bytes cut into chunks of ``CHUNK_SIZE`` bytes; each chunk
is compressed on its own (so a receiver can decode as it goes), and the CRC-32 of
the *decoded* bytes is carried in the image's descriptor.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np

from medcompute.proto.v1 import image_pb2

__all__ = [
    "CHUNK_SIZE",
    "MAX_MESSAGE_BYTES",
    "MAX_CHUNK_DECODED",
    "DTYPES",
    "WireError",
    "dtype_to_proto",
    "dtype_from_proto",
    "crc32",
    "iter_chunks",
    "ChunkDecoder",
    "UNCOMPRESSED",
    "enum_choices",
    "chunk_message",
    "image_chunk",
]

#: Bytes of decoded image data per chunk.
CHUNK_SIZE = 1 << 20
#: No gRPC message is larger than this (channel and server limits are set to it).
MAX_MESSAGE_BYTES = 4 << 20
#: A compressed chunk may not decode to more than this (bounds a decompression bomb).
MAX_CHUNK_DECODED = 4 << 20

DTYPES: dict[int, np.dtype] = {
    image_pb2.DATA_TYPE_UINT8: np.dtype("u1"),
    image_pb2.DATA_TYPE_INT8: np.dtype("i1"),
    image_pb2.DATA_TYPE_UINT16: np.dtype("<u2"),
    image_pb2.DATA_TYPE_INT16: np.dtype("<i2"),
    image_pb2.DATA_TYPE_UINT32: np.dtype("<u4"),
    image_pb2.DATA_TYPE_INT32: np.dtype("<i4"),
    image_pb2.DATA_TYPE_FLOAT32: np.dtype("<f4"),
    image_pb2.DATA_TYPE_FLOAT64: np.dtype("<f8"),
}
_BY_KIND = {(dt.kind, dt.itemsize): code for code, dt in DTYPES.items()}
#: The Compression values that mean "the bytes themselves": COMPRESSION_UNSPECIFIED is
#: documented as treated exactly as COMPRESSION_NONE.
UNCOMPRESSED = frozenset({image_pb2.COMPRESSION_UNSPECIFIED, image_pb2.COMPRESSION_NONE})


def enum_choices(enum, value: int, accepted=None) -> str:
    """``expected one of A, B; got 7 (not a value of Enum)`` for an enum value refused.

    ``enum`` is a generated enum wrapper (``image_pb2.Compression``) or its descriptor;
    ``accepted`` the
    numbers allowed here (default: every value but the zero). The value sent is always
    named, with its enum name where it has one.
    """
    desc = getattr(enum, "DESCRIPTOR", enum)   # a wrapper, or an EnumDescriptor
    numbers = [v.number for v in desc.values if v.number != 0] if accepted is None \
        else list(accepted)
    names = ", ".join(desc.values_by_number[n].name for n in numbers)
    known = desc.values_by_number.get(value)
    got = f"{known.name} ({value})" if known is not None \
        else f"{value} (not a value of {desc.name})"
    return f"expected one of {names}; got {got}"


class WireError(ValueError):
    """Bytes that do not follow the wire format; ``field`` names what was wrong."""

    def __init__(self, message: str, field: str):
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}")

    def __reduce__(self):
        return (type(self), (self.message, self.field))


def image_chunk(index: int, data) -> image_pb2.Chunk:
    """The Chunk of ``data`` for image ``index`` of a request's [input, *operands]:
    index 0 leaves Chunk.operand unset (the input), index k sets operand k - 1."""
    if index:
        return image_pb2.Chunk(data=data, operand=index - 1)
    return image_pb2.Chunk(data=data)


def chunk_message(message_type, data, *, index: int = 0, item: int | None = None):
    """A new ``message_type`` whose ``chunk`` carries ``data``: an image Chunk of image
    ``index`` (as in :func:`image_chunk`), or with ``item`` a BatchChunk of batch image
    ``item``. The fields are set in place: a Chunk built first and handed to the outer
    constructor is copied once more at each level of nesting, which for a 1 MiB chunk
    costs more than the rest of the message's way through the process."""
    message = message_type()
    chunk = message.chunk
    if item is not None:
        chunk.item = item
        chunk = chunk.chunk
    chunk.data = data
    if index:
        chunk.operand = index - 1
    return message


def dtype_to_proto(dtype) -> int:
    """The DataType enum value of a NumPy dtype; ValueError for unsupported ones."""
    dt = np.dtype(dtype)
    try:
        return _BY_KIND[(dt.kind, dt.itemsize)]
    except KeyError:
        names = ", ".join(str(d) for d in DTYPES.values())
        raise ValueError(f"dtype {dt} is not supported; expected one of {names}") from None


def dtype_from_proto(code: int, field: str) -> np.dtype:
    """The little-endian NumPy dtype of a DataType enum value."""
    try:
        return DTYPES[code]
    except KeyError:
        raise WireError(enum_choices(image_pb2.DataType, code, DTYPES), field) from None


try:   # ISA-L's CRC-32 is zlib's, several times faster (PCLMULQDQ / PMULL)
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - isal is a dependency; zlib gives the same values
    _crc32 = zlib.crc32


def crc32(data, value: int = 0) -> int:
    """CRC-32 (ISO-HDLC, zlib's) of ``data``, continuing from ``value``."""
    return _crc32(data, value) & 0xFFFFFFFF


def _zstd():
    import zstandard

    return zstandard


def _blosc2():
    import blosc2

    return blosc2


def iter_chunks(
    data, *, compression: int = image_pb2.COMPRESSION_NONE, itemsize: int = 1,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[bytes]:
    """Cut ``data`` (any buffer) into chunk payloads, each compressed on its own."""
    view = memoryview(data).cast("B")
    if compression == image_pb2.COMPRESSION_ZSTD:
        compressor = _zstd().ZstdCompressor(level=1)
        encode = compressor.compress
    elif compression == image_pb2.COMPRESSION_BLOSC:
        blosc2 = _blosc2()

        def encode(piece):
            return blosc2.compress(piece, typesize=itemsize, codec=blosc2.Codec.ZSTD, clevel=1,
                                   filter=blosc2.Filter.SHUFFLE)
    elif compression in UNCOMPRESSED:
        encode = bytes
    else:
        raise ValueError(f"compression {compression} is not supported")
    for start in range(0, len(view), chunk_size):
        yield encode(view[start:start + chunk_size])


class ChunkDecoder:
    """Decodes the chunks of one image, as they arrive.

    Parameters
    ----------
    compression : int
        The image's Compression enum value.
    field : str
        Where the compression was declared, for error messages.
    """

    def __init__(self, compression: int, field: str):
        self.field = field
        self.compression = compression
        if compression == image_pb2.COMPRESSION_ZSTD:
            self._zstd = _zstd().ZstdDecompressor()
        elif compression == image_pb2.COMPRESSION_BLOSC:
            self._blosc2 = _blosc2()
        elif compression not in UNCOMPRESSED:
            raise WireError(enum_choices(image_pb2.Compression, compression), field)

    def decode(self, payload: bytes):
        """The decoded bytes of one chunk (a buffer; no copy when uncompressed)."""
        if self.compression in UNCOMPRESSED:
            return payload
        try:
            if self.compression == image_pb2.COMPRESSION_ZSTD:
                # max_output_size bounds only frames that do not state their size.
                if _zstd().frame_content_size(payload) > MAX_CHUNK_DECODED:
                    raise WireError(f"a chunk decodes to more than {MAX_CHUNK_DECODED} bytes",
                                    self.field)
                out = self._zstd.decompress(payload, max_output_size=MAX_CHUNK_DECODED)
            else:
                n = self._blosc2_size(payload)
                # decompress2 bounds every read by the payload's length (decompress trusts
                # the header's and reads past a short payload).
                out = self._blosc2.decompress2(payload)
        except WireError:
            raise
        except Exception as exc:  # the codecs raise their own error types
            name = image_pb2.Compression.Name(self.compression)
            raise WireError(f"a chunk is not valid {name} data ({exc})", self.field) from None
        if len(out) > MAX_CHUNK_DECODED:
            raise WireError(f"a chunk decodes to more than {MAX_CHUNK_DECODED} bytes", self.field)
        if self.compression == image_pb2.COMPRESSION_BLOSC and len(out) != n:
            raise WireError("a BLOSC chunk decodes to a different size than it declares",
                            self.field)
        return out

    def _blosc2_size(self, payload: bytes) -> int:
        # The header states the decoded size; check it before decoding (bomb guard).
        if len(payload) < 16:
            raise WireError("a BLOSC chunk is shorter than its header", self.field)
        nbytes = int.from_bytes(payload[4:8], "little")
        if nbytes > MAX_CHUNK_DECODED:
            raise WireError(f"a chunk decodes to more than {MAX_CHUNK_DECODED} bytes", self.field)
        cbytes = int.from_bytes(payload[12:16], "little")
        if cbytes != len(payload):
            raise WireError(f"a BLOSC chunk of {len(payload)} bytes declares {cbytes} in its "
                            "header (truncated or damaged)", self.field)
        return nbytes

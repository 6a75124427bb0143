"""The refusals of an image in flight (storage/spool.py) once its stream ends: bytes
missing, or bytes whose CRC-32 is not the one declared."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from medcompute.server.errors import InvalidArgument
from medcompute.server.storage.spool import ExpectedImage, ImageWriter

DATA = np.arange(64, dtype=np.int16).tobytes()


def _writer(tmp_path, **kw) -> ImageWriter:
    e = ExpectedImage(**(dict(field="header.input.inline", encoding="raw", size=len(DATA),
                              shape=(64,), dtype=np.dtype("int16")) | kw))
    return ImageWriter(e, tmp_path / "in")


def test_a_stream_that_ends_early_is_refused(tmp_path):
    writer = _writer(tmp_path, crc32=zlib.crc32(DATA))
    writer.write(DATA[:100])
    with pytest.raises(InvalidArgument) as info:
        writer.finish()
    assert info.value.field == "header.input.inline.size"
    assert info.value.message == "the stream ended after 100 of the 128 bytes declared"


def test_bytes_that_do_not_match_the_declared_checksum_are_refused(tmp_path):
    writer = _writer(tmp_path, crc32=zlib.crc32(DATA) ^ 1)
    writer.write(DATA)
    with pytest.raises(InvalidArgument) as info:
        writer.finish()
    assert info.value.field == "header.input.inline.crc32"
    assert info.value.message == (f"checksum mismatch: declared {zlib.crc32(DATA) ^ 1:#010x}, "
                                  f"the received bytes give {zlib.crc32(DATA):#010x}")

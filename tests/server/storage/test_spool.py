"""Images in flight (storage/spool.py): each piece checked against what was promised,
to a spool file or to memory."""

import zlib

import numpy as np
import pytest

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2
from medcompute.server.errors import InvalidArgument
from medcompute.server.storage.spool import ExpectedImage, ImageWriter, Spool

DATA = np.arange(300_000, dtype=np.int16).tobytes()


def _expected(**kw):
    base = dict(field="header.input", encoding="raw", size=len(DATA), shape=(300_000,),
                dtype=np.dtype("int16"))
    return ExpectedImage(**(base | kw))


@pytest.mark.parametrize("compression", [image_pb2.COMPRESSION_NONE,
                                         image_pb2.COMPRESSION_ZSTD,
                                         image_pb2.COMPRESSION_BLOSC])
def test_chunks_are_decoded_checked_and_written(tmp_path, compression):
    path = tmp_path / "in"
    writer = ImageWriter(_expected(compression=compression, crc32=zlib.crc32(DATA)), path)
    for payload in wire.iter_chunks(DATA, compression=compression, itemsize=2,
                                    chunk_size=100_000):
        assert not writer.complete
        writer.write(payload)
    assert writer.complete
    writer.finish()
    assert path.read_bytes() == DATA and writer.crc == zlib.crc32(DATA)


def test_kept_in_memory_without_a_path():
    writer = ImageWriter(_expected(), None)
    writer.write(DATA)
    writer.finish()
    assert writer.data == DATA


def test_more_bytes_than_declared_names_the_size_field(tmp_path):
    writer = ImageWriter(_expected(), tmp_path / "in")
    writer.write(DATA)
    with pytest.raises(InvalidArgument) as err:
        writer.write(b"\0")
    writer.close()
    assert err.value.field == "header.input.size"
    assert f"more bytes arrived than the {len(DATA)} declared" in err.value.message


def test_a_stream_that_ends_early_names_the_size_field(tmp_path):
    writer = ImageWriter(_expected(), tmp_path / "in")
    writer.write(DATA[:1000])
    with pytest.raises(InvalidArgument) as err:
        writer.finish()
    assert err.value.field == "header.input.size"
    assert f"ended after 1000 of the {len(DATA)} bytes" in err.value.message


def test_a_checksum_mismatch_names_the_crc_field(tmp_path):
    writer = ImageWriter(_expected(crc32=zlib.crc32(DATA) ^ 1), tmp_path / "in")
    writer.write(DATA)
    with pytest.raises(InvalidArgument) as err:
        writer.finish()
    assert err.value.field == "header.input.crc32" and "checksum mismatch" in err.value.message


def test_an_undecodable_chunk_names_the_compression_field(tmp_path):
    writer = ImageWriter(_expected(compression=image_pb2.COMPRESSION_ZSTD), tmp_path / "in")
    with pytest.raises(InvalidArgument) as err:
        writer.write(b"this is not a zstd frame")
    writer.close()
    assert err.value.field == "header.input.compression"


def test_the_spool_clears_its_own_files_not_other_processes_folders(tmp_path):
    spool = Spool(tmp_path)
    other = Spool(tmp_path, name="front-end-2")
    a, b = spool.path("job1", "in0"), spool.path("job1", "in0")
    assert a != b and a.parent == tmp_path / "spool"
    a.write_bytes(b"left behind")
    theirs = other.path("job2", "in0")
    theirs.write_bytes(b"in flight")
    spool.clear()
    assert not a.exists() and theirs.exists()
    Spool.remove(theirs, None, b)          # missing paths and None are fine
    assert not theirs.exists()

"""Get's chunk streams: DICOM files are cut at their ends."""

import os

from medcompute.proto import wire
from medcompute.server.store.blob_streams import file_chunks


class Plain:
    """A coder that sends each piece as it is (the store's Coder protocol)."""

    compression = "none"

    def chunks(self, data, *, itemsize=1):
        yield bytes(data)


def test_file_chunks_never_cross_a_file_end(tmp_path):
    sizes = [300, wire.CHUNK_SIZE + 5, 0, 2 * wire.CHUNK_SIZE, 7]
    data = os.urandom(sum(sizes))
    path = tmp_path / "blob"
    path.write_bytes(data)
    chunks = list(file_chunks(path, Plain(), sizes))
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= wire.CHUNK_SIZE for c in chunks)
    assert [len(c) for c in chunks] == [300, wire.CHUNK_SIZE, 5, wire.CHUNK_SIZE,
                                        wire.CHUNK_SIZE, 7]


def test_without_file_sizes_the_blob_is_cut_in_wire_chunks(tmp_path):
    data = os.urandom(wire.CHUNK_SIZE + 10)
    (tmp_path / "blob").write_bytes(data)
    chunks = list(file_chunks(tmp_path / "blob", Plain()))
    assert [len(c) for c in chunks] == [wire.CHUNK_SIZE, 10]

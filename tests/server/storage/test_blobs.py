"""Content-addressed blob files (storage/blobs.py): digests, installing, removing, the
voxel format, and clearing what interrupted writers left."""

import hashlib
import os
import socket

import numpy as np
import pytest

from medcompute.server.storage.blobs import (
    FRAME_BYTES,
    STALE_TMP_SECONDS,
    BlobStore,
    BlobWriter,
    TieredBlobStore,
    VoxelWriter,
    file_digest,
    read_voxel_slices,
    read_voxels,
    voxel_chunks,
)


@pytest.mark.parametrize("pipelined", [False, True])
def test_a_written_blob_is_named_by_its_sha256(tmp_path, pipelined):
    store = BlobStore(tmp_path / "blobs")
    data = os.urandom(3 << 20) + b"tail"
    tmp = store.new_tmp()
    with BlobWriter(tmp, pipelined=pipelined) as w:
        for start in range(0, len(data), 1 << 20):
            w.write(data[start:start + (1 << 20)])
        digest, size = w.finish()
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    final = store.install(tmp, digest)
    assert final == tmp_path / "blobs" / digest[:2] / digest
    assert final.read_bytes() == data and not tmp.exists()
    assert file_digest(final) == (digest, size)
    assert list(store.digests()) == [digest]


def test_installing_the_same_content_twice_keeps_one_file(tmp_path):
    store = BlobStore(tmp_path)
    digests = []
    for _ in range(2):
        tmp = store.new_tmp()
        with BlobWriter(tmp) as w:
            w.write(b"same bytes")
            digests.append(w.finish()[0])
        store.install(tmp, digests[-1])
    assert digests[0] == digests[1] and list(store.digests()) == digests[:1]
    assert list(store.tmp.iterdir()) == []


def test_remove_returns_the_size_once(tmp_path):
    store = BlobStore(tmp_path)
    tmp = store.new_tmp()
    with BlobWriter(tmp) as w:
        w.write(b"x" * 100)
        digest, _ = w.finish()
    store.install(tmp, digest)
    assert store.remove(digest) == 100
    assert store.remove(digest) == 0
    assert list(store.digests()) == []


def test_clear_stale_removes_what_dead_writers_left_and_old_files(tmp_path):
    store = BlobStore(tmp_path)
    host = socket.gethostname()
    mine = store.new_tmp()
    mine.write_bytes(b"in progress")
    dead = store.tmp / f"{host}-999999999-{'0' * 32}"     # no such process
    dead.write_bytes(b"interrupted")
    other = store.tmp / f"elsewhere-123-{'1' * 32}"       # another host's: kept a day
    other.write_bytes(b"other host")
    assert store.clear_stale() == 1
    assert mine.exists() and other.exists() and not dead.exists()
    assert store.clear_stale(now=os.path.getmtime(other) + STALE_TMP_SECONDS + 1) == 2
    assert list(store.tmp.iterdir()) == []


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_voxels_round_trip_in_frames(tmp_path, dtype):
    rng = np.random.default_rng(5)
    array = (rng.standard_normal((4, 500, 700)) * 1000).astype(dtype)
    path = tmp_path / "v"
    with VoxelWriter(path, array.shape, array.dtype) as w:
        raw = array.tobytes()
        for start in range(0, len(raw), 123_457):     # pieces that straddle frames
            w.add(raw[start:start + 123_457])
        w.finish()
    assert np.array_equal(read_voxels(path), array)
    chunks = list(voxel_chunks(path))           # decoded one compressed frame at a time
    assert b"".join(chunks) == raw
    assert all(len(c) <= FRAME_BYTES for c in chunks) and len(chunks) > 1


@pytest.mark.parametrize("start,stop", [(0, 9), (0, 1), (3, 4), (2, 7), (8, 9), (5, 5),
                                        (0, 0), (9, 9)])
def test_slices_are_read_from_the_frames_that_hold_them(tmp_path, start, stop):
    rng = np.random.default_rng(6)
    array = rng.integers(-2000, 3000, size=(9, 300, 500)).astype(np.int16)  # frames cross slices
    path = tmp_path / "v"
    with VoxelWriter(path, array.shape, array.dtype) as w:
        w.add(array.tobytes())
        w.finish()
    got = read_voxel_slices(path, start, stop)
    assert got.dtype == array.dtype and np.array_equal(got, array[start:stop])


def test_slices_outside_the_first_axis_or_a_truncated_blob_are_refused(tmp_path):
    array = np.arange(4 * 600 * 600, dtype=np.int32).reshape(4, 600, 600)
    path = tmp_path / "v"
    with VoxelWriter(path, array.shape, array.dtype) as w:
        w.add(array.tobytes())
        w.finish()
    with pytest.raises(ValueError, match="slices 3:5 of a first axis of 4"):
        read_voxel_slices(path, 3, 5)
    data = path.read_bytes()
    (tmp_path / "cut").write_bytes(data[:len(data) - 100])
    with pytest.raises(ValueError, match="truncated"):
        read_voxel_slices(tmp_path / "cut", 0, 4)


def test_a_voxel_writer_refuses_too_many_or_too_few_bytes(tmp_path):
    with VoxelWriter(tmp_path / "a", (4,), np.dtype("int16")) as w:
        with pytest.raises(ValueError, match="more than the 8 bytes"):
            w.add(b"\0" * 9)
    with VoxelWriter(tmp_path / "b", (4,), np.dtype("int16")) as w:
        w.add(b"\0" * 6)
        with pytest.raises(ValueError, match="the array has 8 bytes, 6 were given"):
            w.finish()


def test_a_file_that_is_not_a_voxel_blob_is_refused(tmp_path):
    path = tmp_path / "plain"
    path.write_bytes(b"not voxels at all")
    with pytest.raises(ValueError, match="not a voxel blob"):
        read_voxels(path)


def test_the_tiered_store_finds_a_blob_in_either_folder(tmp_path):
    store = TieredBlobStore(tmp_path / "hot", tmp_path / "cold")
    tmp = store.new_tmp()
    with BlobWriter(tmp) as w:
        w.write(b"cold bytes")
        digest, _ = w.finish()
    cold = tmp_path / "cold" / digest[:2] / digest
    cold.parent.mkdir(parents=True)
    os.replace(tmp, cold)
    assert store.path(digest) == cold and store.tier_of_file(digest) == "cold"
    assert list(store.digests()) == [digest]
    assert store.remove(digest) == len(b"cold bytes") and not cold.exists()

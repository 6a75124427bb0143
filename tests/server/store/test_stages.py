"""The upload pipeline's stages: a thread stage fed from the event loop, and the blob
writer that hashes and writes in a thread of its own."""

import asyncio
import errno
import hashlib

import pytest

from medcompute.server.storage.blobs import BlobWriter, VoxelWriter
from medcompute.server.store.stages import ThreadStage

pytestmark = pytest.mark.timeout(30)


def test_a_stage_runs_every_item_in_order():
    seen = []

    async def main():
        stage = ThreadStage(seen.append, depth=2)
        for k in range(100):
            await stage.feed(k)
        await stage.close()

    asyncio.run(main())
    assert seen == list(range(100))


def test_a_stage_raises_the_first_error_and_drops_what_follows():
    seen = []

    def fn(k):
        if k == 3:
            raise ValueError("item 3 refused")
        seen.append(k)

    async def main():
        stage = ThreadStage(fn, depth=1)
        with pytest.raises(ValueError, match="item 3"):
            for k in range(50):
                await stage.feed(k)
            await stage.close()
        with pytest.raises(ValueError, match="item 3"):
            await stage.close()        # closing again waits and says the same

    asyncio.run(main())
    assert seen == [0, 1, 2]


def test_a_pipelined_blob_equals_a_plain_one_even_when_the_caller_reuses_its_buffer(tmp_path):
    buffer = bytearray(1000)
    expected = hashlib.sha256()
    with BlobWriter(tmp_path / "p", pipelined=True, crc=True) as piped, \
            BlobWriter(tmp_path / "q", crc=True) as plain:
        for k in range(200):
            buffer[:] = bytes([k % 251]) * 1000      # the same buffer, refilled
            piped.write(memoryview(buffer))
            plain.write(bytes(buffer))
            expected.update(buffer)
        assert piped.finish() == plain.finish() == (expected.hexdigest(), 200_000)
        assert piped.crc32 == plain.crc32
    assert (tmp_path / "p").read_bytes() == (tmp_path / "q").read_bytes()


def test_a_pipelined_voxel_blob_equals_a_plain_one(tmp_path):
    import numpy as np

    array = np.random.default_rng(0).integers(0, 4000, (40, 128, 128)).astype(np.uint16)
    raw = array.tobytes()
    out = []
    for name, pipelined in (("a", True), ("b", False)):
        with VoxelWriter(tmp_path / name, array.shape, array.dtype,
                         pipelined=pipelined) as w:
            for at in range(0, len(raw), 300_000):
                w.add(raw[at:at + 300_000])
            out.append(w.finish())
    assert out[0] == out[1]


def test_a_write_error_of_the_thread_is_raised_and_the_file_removed(tmp_path, monkeypatch):
    def full(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(BlobWriter, "_write_piece", lambda self, data: full(data))
    writer = BlobWriter(tmp_path / "full", pipelined=True)
    writer.write(b"x" * 10)
    with pytest.raises(OSError) as info:
        for _ in range(100):
            writer.write(b"y" * 10)
        writer.finish()
    assert info.value.errno == errno.ENOSPC
    writer.discard()
    assert not (tmp_path / "full").exists()

"""Streams of stored blobs for Get: file chunks and voxel frames, read ahead in a thread.

Used by the store (originals, voxels) and by the versions (a version's files).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from medcompute.proto import wire
from medcompute.server.storage import blobs as blobfiles
from medcompute.server.store.coding import BLOSC, Coder

__all__ = ["prefetched", "file_chunks", "voxel_payloads"]

_END = object()


async def prefetched(it: Iterator, depth: int = 4) -> AsyncIterator:
    """Iterate a blocking iterator (reading, decompressing) in a thread that runs up to
    ``depth`` items ahead, so the work overlaps with sending. Close it (``aclosing``)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    room = threading.Semaphore(depth)
    stop = threading.Event()

    def put(item, error=None):
        with contextlib.suppress(RuntimeError):   # the loop closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))

    def produce():
        try:
            for item in it:
                room.acquire()
                if stop.is_set():
                    return
                put(item)
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_END, exc)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    # A thread of its own: a slow reader must not hold one of the loop's executor threads.
    threading.Thread(target=produce, name="store-stream", daemon=True).start()
    try:
        while True:
            item, error = await queue.get()
            if error is not None:
                raise error
            if item is _END:
                return
            room.release()
            yield item
    finally:
        stop.set()
        room.release()


def file_chunks(path: Path, coder: Coder, file_sizes=()) -> Iterator[bytes]:
    """The blob's bytes in chunks. With ``file_sizes`` (the DICOM files stored one after
    another), no chunk crosses a file's end: a client keeps a file that fits one chunk as
    the bytes it received, without assembling it."""
    with open(path, "rb") as f:
        for size in file_sizes:
            while size > 0:
                piece = f.read(min(size, wire.CHUNK_SIZE))
                if not piece:
                    return
                size -= len(piece)
                yield from coder.chunks(piece)
        while piece := f.read(wire.CHUNK_SIZE):
            yield from coder.chunks(piece)


def voxel_payloads(path: Path, coder: Coder, itemsize: int) -> Iterator[bytes]:
    if coder.compression == BLOSC:
        # The stored frames are blosc2 chunks of at most a wire chunk: sent as they are.
        yield from blobfiles.voxel_frames(path)
        return
    for data in blobfiles.voxel_chunks(path):
        yield from coder.chunks(data, itemsize=itemsize)

"""A stage of a pipeline across threads, fed from the event loop.

An upload is received on the event loop, decoded and compressed in one thread, hashed
and written in another (blobs.BlobWriter with ``pipelined=True``): each piece moves on
as soon as its stage is free, so receiving the next chunk, compressing this one and
writing the one before happen at once instead of one after another.
"""

from __future__ import annotations

import asyncio
import queue
import threading

__all__ = ["ThreadStage"]

_END = object()


class ThreadStage:
    """Runs ``fn(item)`` for every item :meth:`feed` gives it, in order, in a thread of its
    own, at most ``depth`` items behind the feeder. The first error ``fn`` raises is
    raised by the next :meth:`feed` or by :meth:`close` (the items after it are dropped).
    Always :meth:`close` it (also after an error: it waits for the thread)."""

    def __init__(self, fn, *, depth: int = 4, name: str = "pipeline"):
        self.fn = fn
        self.error: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._room = asyncio.Semaphore(depth)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._done = self._loop.create_future()
        self._closed = False
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                break
            if self.error is None:
                try:
                    self.fn(item)
                except BaseException as exc:   # handed to the feeder, raised there
                    self.error = exc
            self._call(self._room.release)
        self._call(lambda: self._done.done() or self._done.set_result(None))

    def _call(self, fn) -> None:
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:   # the loop has closed: nobody waits any more
            pass

    async def feed(self, item) -> None:
        if self.error is not None:
            raise self.error
        await self._room.acquire()
        if self.error is not None:
            self._room.release()
            raise self.error
        self._queue.put(item)

    async def close(self) -> None:
        """Wait until every item fed has been through ``fn``; raise its first error."""
        if not self._closed:
            self._closed = True
            self._queue.put(_END)
        await asyncio.shield(self._done)
        if self.error is not None:
            raise self.error

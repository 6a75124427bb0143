"""Slabs of a volume through a device, double-buffered: while slab *k* computes, slab
*k+1* uploads and slab *k-1* downloads.

Two streams take the slabs in turn (slab *k* on stream ``k % 2``); each slab's upload,
kernels and download are queued on its stream in that order, so that the copies of one
slab overlap the kernels of the other, and the host reads the next slab from its file
while the device works. The host waits for a slab's download only once the next slab
has been queued (the oldest slab's stream is the next one reused). Every slab runs the
same kernels on the same values as one slab at a time does (``overlap=False``: one
stream, each slab waited for before the next), so the results are the same bit for bit.

Copies are queued from and into page-locked (pinned) host buffers
(:meth:`~medcompute.kernels.backend.Backend.pinned_empty`), without which CUDA copies
are synchronous. On the CPU the stream API is :class:`HostStream`'s stand-in: uploads
and kernels run at once, a download runs only when its event is waited for, so a loop
that read a slab's result before waiting would read an empty buffer.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["HostEvent", "HostStream", "SlabTimes", "run_slabs"]


class HostStream:
    """The CPU's stand-in for a device stream: work queued on it runs at once, except a
    download, which runs when an event recorded after it is waited for."""

    def __init__(self):
        self._later: deque[Callable[[], None]] = deque()
        self.queued = 0           # deferred work ever queued
        self.done = 0             # ... and run

    def defer(self, work: Callable[[], None]) -> None:
        self._later.append(work)
        self.queued += 1

    def record(self) -> HostEvent:
        return HostEvent(self, self.queued)

    def run_until(self, target: int) -> None:
        while self.done < target:
            self._later.popleft()()
            self.done += 1


class HostEvent:
    """A point on a :class:`HostStream`; ``at``: when the work before it was done."""

    def __init__(self, stream: HostStream, target: int):
        self.stream = stream
        self.target = target
        self.at = time.perf_counter() if stream.done >= target else None

    def synchronize(self) -> None:
        if self.at is None:
            self.stream.run_until(self.target)
            self.at = time.perf_counter()


@dataclass(frozen=True)
class SlabTimes:
    """Device seconds of one slab, from events on its stream: its inputs' upload, its
    kernels, its result's download."""

    upload: float
    kernel: float
    download: float


def run_slabs(backend, count: int, load: Callable[[int], Sequence[np.ndarray]],
              compute: Callable[[list], Any],
              store: Callable[[int, np.ndarray, SlabTimes], None], *,
              overlap: bool = True) -> None:
    """Run ``count`` slabs through ``backend``'s device.

    Parameters
    ----------
    backend : Backend
        Where the kernels run (its stream API: new_stream, on_stream, pinned_empty,
        upload, download, record, wait, elapsed).
    count : int
        Slabs, processed in order 0 .. count-1.
    load : callable
        ``load(k)``: slab *k*'s inputs on the host (the image first).
    compute : callable
        ``compute(device_inputs)``: the slab's result on the device, its kernels queued
        on the current stream.
    store : callable
        ``store(k, host_result, times)``: called in slab order once slab *k*'s result
        is on the host (the buffer is the caller's).
    overlap : bool
        Two streams, double-buffered (default); False: one stream, one slab at a time.
    """
    streams = [backend.new_stream() for _ in range(2 if overlap else 1)]
    pending: deque = deque()

    def finish() -> None:
        k, out, events, _keep = pending.popleft()
        backend.wait(events[3])
        store(k, out, SlabTimes(upload=backend.elapsed(events[0], events[1]),
                                kernel=backend.elapsed(events[1], events[2]),
                                download=backend.elapsed(events[2], events[3])))

    for k in range(count):
        stream = streams[k % len(streams)]
        staged = []
        for array in load(k):
            pinned = backend.pinned_empty(array.shape, array.dtype)
            np.copyto(pinned, array)
            staged.append(pinned)
        start = backend.record(stream)
        device = [backend.upload(pinned, stream) for pinned in staged]
        uploaded = backend.record(stream)
        with backend.on_stream(stream):
            result = compute(device)
        computed = backend.record(stream)
        out = backend.pinned_empty(result.shape, result.dtype)
        backend.download(result, stream, out)
        downloaded = backend.record(stream)
        # The staged inputs and the device arrays live until the slab is finished.
        pending.append((k, out, (start, uploaded, computed, downloaded),
                        (staged, device, result)))
        if len(pending) == len(streams):   # the oldest slab's stream is reused next
            finish()
    while pending:
        finish()

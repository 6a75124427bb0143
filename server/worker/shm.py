"""POSIX shared-memory objects of same-host clients, read and written by name.

A client creates the object (``multiprocessing.shared_memory``, ``shm_open``); the server
checks it (:func:`size`) and a worker maps it (:func:`read`, :func:`write`). They open
the file under ``/dev/shm`` themselves rather than through ``SharedMemory``: Python's
``SharedMemory`` registers every object it opens with its resource tracker, which would
unlink the client's object when a worker process exits.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading
import time

import numpy as np

from medcompute.server.errors import FailedPrecondition

__all__ = ["SHM_DIR", "valid_name", "size", "read", "read_rows", "read_into", "write"]

#: Where Linux keeps POSIX shared-memory objects.
SHM_DIR = "/dev/shm"


def valid_name(name: str) -> bool:
    """A name ``shm_open`` takes (without its leading ``/``)."""
    name = name.lstrip("/")
    return 0 < len(name) <= 255 and "/" not in name and name not in (".", "..") \
        and "\0" not in name


def _path(name: str) -> str:
    return os.path.join(SHM_DIR, name.lstrip("/"))


def size(name: str) -> int | None:
    """The object's size in bytes; None when no object of that name exists here."""
    try:
        st = os.stat(_path(name))
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size


#: Mappings kept open per process, so that the pages of a client's object stay mapped
#: from one call to the next (a new mapping faults in every page it touches again).
_KEEP = 8
#: And at most this share of a Dask worker's memory limit: the pages a worker touched in
#: a kept mapping count in its resident memory, which its nanny watches.
_KEEP_SHARE = 4
_budget_bytes: list = []           # [bytes or None], found at the first use
#: A kept mapping unused this long, or whose object is gone, is closed by the next call
#: or by the sweeper thread: an unlinked object's memory is freed once no mapping holds it.
_IDLE_SECONDS = 30.0
_SWEEP_SECONDS = 5.0


class _Kept:
    def __init__(self, mapping: mmap.mmap, ino: int, size: int, writable: bool):
        self.map, self.ino, self.size, self.writable = mapping, ino, size, writable
        self.users = 0
        self.used = time.monotonic()


_kept: dict[str, _Kept] = {}
_lock = threading.Lock()
_sweeper: threading.Thread | None = None


def _stale(name: str, kept: _Kept, now: float) -> bool:
    try:
        st = os.stat(_path(name))
    except OSError:
        return True
    return st.st_ino != kept.ino or st.st_size != kept.size or \
        now - kept.used > _IDLE_SECONDS


def _budget() -> int | None:
    """The bytes of objects this process keeps mapped: a share of its Dask worker's
    memory limit, or no bound outside a worker (or without a limit)."""
    if not _budget_bytes:
        limit = None
        distributed = sys.modules.get("distributed")
        if distributed is not None:
            try:
                limit = distributed.get_worker().memory_manager.memory_limit
            except (ValueError, AttributeError):     # not in a worker
                limit = None
        _budget_bytes.append(limit // _KEEP_SHARE if limit else None)
    return _budget_bytes[0]


def _drop_stale(now: float) -> None:
    """Close the kept mappings nobody uses whose object is gone, changed or idle (under
    the lock); the oldest beyond ``_KEEP``, or beyond the byte budget, too."""
    for name, kept in list(_kept.items()):
        if kept.users == 0 and _stale(name, kept, now):
            del _kept[name]
            kept.map.close()
    budget = _budget()
    idle = sorted((k.used, n) for n, k in _kept.items() if k.users == 0)
    for _, name in idle:
        held = sum(k.size for k in _kept.values())
        if len(_kept) <= _KEEP and (budget is None or held <= budget):
            break
        _kept.pop(name).map.close()


def _sweep() -> None:
    while True:
        time.sleep(_SWEEP_SECONDS)
        with _lock:
            _drop_stale(time.monotonic())


class _Mapped:
    """The object ``name`` mapped (a kept mapping, writable if asked), released on exit;
    FailedPrecondition at ``field`` when it is gone or holds fewer than ``end`` bytes."""

    def __init__(self, name: str, writable: bool, end: int, field: str):
        self.name, self.writable, self.end, self.field = name, writable, end, field

    def __enter__(self) -> mmap.mmap:
        global _sweeper
        try:
            st = os.stat(_path(self.name))
        except FileNotFoundError:
            raise FailedPrecondition("the region's shared-memory object no longer exists "
                                     "(its client unlinked it)", self.field) from None
        if st.st_size < self.end:
            raise FailedPrecondition(
                f"the region's shared-memory object holds {st.st_size} bytes now, fewer than "
                f"the {self.end} this call needs (its client shrank it)", self.field)
        with _lock:
            now = time.monotonic()
            kept = _kept.get(self.name)
            if kept is None or kept.ino != st.st_ino or kept.size != st.st_size or \
                    (self.writable and not kept.writable):
                kept = _Kept(self._map(), st.st_ino, st.st_size, self.writable)
                budget = _budget()
                if (budget is None or kept.size <= budget) and \
                        (self.name not in _kept or _kept[self.name].users == 0):
                    old = _kept.pop(self.name, None)
                    if old is not None:
                        old.map.close()
                    _kept[self.name] = kept
            kept.users += 1
            kept.used = now
            _drop_stale(now)
            if _sweeper is None:
                _sweeper = threading.Thread(target=_sweep, name="shm-sweeper", daemon=True)
                _sweeper.start()
        self.kept = kept
        return kept.map

    def _map(self) -> mmap.mmap:
        try:
            fd = os.open(_path(self.name), os.O_RDWR if self.writable else os.O_RDONLY)
        except FileNotFoundError:
            raise FailedPrecondition("the region's shared-memory object no longer exists "
                                     "(its client unlinked it)", self.field) from None
        try:
            held = os.fstat(fd).st_size
            if held < self.end:
                raise FailedPrecondition(
                    f"the region's shared-memory object holds {held} bytes now, fewer than "
                    f"the {self.end} this call needs (its client shrank it)", self.field)
            return mmap.mmap(fd, 0, access=mmap.ACCESS_WRITE if self.writable
                             else mmap.ACCESS_READ)
        finally:
            os.close(fd)

    def __exit__(self, *exc) -> None:
        with _lock:
            self.kept.users -= 1
            if _kept.get(self.name) is not self.kept and self.kept.users == 0:
                self.kept.map.close()        # replaced meanwhile: not kept


def read(name: str, offset: int, shape: tuple[int, ...], dtype,
         field: str = "input_region") -> np.ndarray:
    """A copy of the array at ``offset`` of the object (the client may reuse its bytes
    once the call has ended; the copy is what the kernels read)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    with _Mapped(name, False, offset + count * dtype.itemsize, field) as m:
        view = np.frombuffer(m, dtype=dtype, count=count, offset=offset)
        out = view.reshape(shape).copy()
        del view
    return out


def read_rows(name: str, offset: int, shape: tuple[int, ...], dtype, axis: int, lo: int,
              hi: int, field: str = "input_region") -> np.ndarray:
    """A copy of rows ``[lo, hi)`` along ``axis`` of the array at ``offset`` (a slab's part
    of an image in the object), without copying the rest."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    with _Mapped(name, False, offset + count * dtype.itemsize, field) as m:
        view = np.frombuffer(m, dtype=dtype, count=count, offset=offset).reshape(shape)
        index = [slice(None)] * len(shape)
        index[axis] = slice(lo, hi)
        out = view[tuple(index)].copy(order="C")      # a copy: never a view of the map
        del view
    return out


def read_into(name: str, offset: int, out: np.ndarray, field: str = "input_region") -> None:
    """Copy ``out.nbytes`` bytes of the object at ``offset`` into ``out`` (contiguous)."""
    target = out.reshape(-1).view(np.uint8)
    with _Mapped(name, False, offset + target.nbytes, field) as m:
        view = np.frombuffer(m, dtype=np.uint8, count=target.nbytes, offset=offset)
        target[...] = view
        del view


def write(name: str, offset: int, array: np.ndarray, field: str = "output_region") -> None:
    """Copy ``array``'s bytes into the object at ``offset``."""
    data = np.ascontiguousarray(array)
    with _Mapped(name, True, offset + data.nbytes, field) as m:
        target = np.frombuffer(m, dtype=np.uint8, count=data.nbytes, offset=offset)
        target[...] = data.reshape(-1).view(np.uint8)
        del target

"""POSIX shared-memory objects of same-host clients, read and written by name.

A client creates the object (``multiprocessing.shared_memory``, ``shm_open``); the server
checks it (:func:`size`) and a worker maps it (:func:`read`, :func:`write`). They open
the file under ``/dev/shm`` themselves rather than through ``SharedMemory``: Python's
``SharedMemory`` registers every object it opens with its resource tracker, which would
unlink the client's object when a worker process exits.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator

import numpy as np

from medcompute.server.errors import FailedPrecondition

__all__ = ["SHM_DIR", "valid_name", "size", "read", "read_rows", "read_into", "write",
           "writable_part"]

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


class _Mapped:
    """The object ``name`` mapped (read-only or writable), closed on exit; FailedPrecondition
    at ``field`` when it is gone or holds fewer than ``end`` bytes."""

    def __init__(self, name: str, writable: bool, end: int, field: str):
        self.name, self.writable, self.end, self.field = name, writable, end, field

    def __enter__(self) -> mmap.mmap:
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
            self.map = mmap.mmap(fd, 0, access=mmap.ACCESS_WRITE if self.writable
                                 else mmap.ACCESS_READ)
        finally:
            os.close(fd)
        return self.map

    def __exit__(self, *exc) -> None:
        self.map.close()


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


@contextlib.contextmanager
def writable_part(name: str, offset: int, length: int, field: str = "output_region"
                  ) -> Iterator[memoryview]:
    """``length`` bytes of the object at ``offset``, mapped writable, while in the block."""
    with _Mapped(name, True, offset + length, field) as m:
        view = memoryview(m)[offset:offset + length]
        try:
            yield view
        finally:
            view.release()


def write(name: str, offset: int, array: np.ndarray, field: str = "output_region") -> None:
    """Copy ``array``'s bytes into the object at ``offset``."""
    data = np.ascontiguousarray(array)
    with _Mapped(name, True, offset + data.nbytes, field) as m:
        target = np.frombuffer(m, dtype=np.uint8, count=data.nbytes, offset=offset)
        target[...] = data.reshape(-1).view(np.uint8)
        del target

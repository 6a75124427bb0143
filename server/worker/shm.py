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

import numpy as np

__all__ = ["SHM_DIR", "valid_name", "size", "read", "write"]

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
    """The object ``name`` mapped (read-only or writable), closed on exit."""

    def __init__(self, name: str, writable: bool):
        self.name, self.writable = name, writable

    def __enter__(self) -> mmap.mmap:
        fd = os.open(_path(self.name), os.O_RDWR if self.writable else os.O_RDONLY)
        try:
            self.map = mmap.mmap(fd, 0, access=mmap.ACCESS_WRITE if self.writable
                                 else mmap.ACCESS_READ)
        finally:
            os.close(fd)
        return self.map

    def __exit__(self, *exc) -> None:
        self.map.close()


def read(name: str, offset: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A copy of the array at ``offset`` of the object (the client may reuse its bytes
    once the call has ended; the copy is what the kernels read)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    with _Mapped(name, writable=False) as m:
        view = np.frombuffer(m, dtype=dtype, count=count, offset=offset)
        out = view.reshape(shape).copy()
        del view
    return out


def write(name: str, offset: int, array: np.ndarray) -> None:
    """Copy ``array``'s bytes into the object at ``offset``."""
    data = np.ascontiguousarray(array)
    with _Mapped(name, writable=True) as m:
        target = np.frombuffer(m, dtype=np.uint8, count=data.nbytes, offset=offset)
        target[...] = data.reshape(-1).view(np.uint8)
        del target

"""Free space of the data directory: a reserve below which writes are refused, and the
one mapping of storage faults (a full or failing disk) to domain errors.

The API, for every path that writes to the data directory (Register, Submit, Process,
kept results, and any later ingress such as a DICOM receiver):

``reserve.check(*locations, incoming=0)``
    Call it *before* writing. Raises :class:`~medcompute.server.errors.StorageFull`
    (a ``ResourceExhausted``: RESOURCE_EXHAUSTED) when a location's free space, less
    ``incoming`` bytes about to be written, is below the reserve; the message names the
    location, its free and its reserved space. Reads, deletes, purges and key
    administration never call it, so an operator can always make room.
``reserve.free_bytes(location)`` / ``reserve.reserved_bytes(location)``
    What health and the ``medcompute_storage_free_bytes{location=...}`` gauge report.
``storage_fault(exc)``
    A ``StorageFull`` (ENOSPC, EDQUOT, SQLite's "database or disk is full") or a
    ``StorageFailure`` (EIO, SQLite's "disk I/O error") for an error the disk raised
    anyway (another process filled it), else None. ``status.status_of`` and the job
    failure path use it, so such an error is never answered INTERNAL.

The locations are named, not given as paths: ``catalog`` (the data directory: SQLite
catalog, audit, keys), ``blobs``, ``spool`` and ``jobs`` (its sub-folders, which an
operator may mount elsewhere). One :class:`FreeSpaceReserve` per server is built from
its configuration (``--min-free``: MiB, or a percentage of each filesystem's size);
``ImageStore.space`` and ``ProcessingService.space`` hold it. A new ingress that keeps
images in the store calls, before it writes anything::

    store.space.check("blobs", "catalog", incoming=declared_bytes)   # StorageFull if not

and lets any OSError/sqlite3 error it meets propagate (or passes it through
``storage_fault``) so that it is answered RESOURCE_EXHAUSTED/UNAVAILABLE, not INTERNAL.
"""

from __future__ import annotations

import errno
import math
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medcompute.server.errors import MedcomputeError, StorageFailure, StorageFull

__all__ = ["FreeSpaceReserve", "MinFree", "parse_min_free", "storage_fault", "LOCATIONS",
           "DEFAULT_MIN_FREE"]

#: Named storage locations, relative to the data directory.
LOCATIONS = {"catalog": ".", "blobs": "blobs", "spool": "spool", "jobs": "jobs"}
#: ``--min-free`` when none is given.
DEFAULT_MIN_FREE = "1024"
_MIB = 1 << 20
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_IO_ERRNOS = {errno.EIO, errno.EROFS}


@dataclass(frozen=True)
class MinFree:
    """A reserve: a number of bytes, or a percentage of each filesystem's size."""

    bytes: int = 0
    percent: float = 0.0

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent else f"{self.bytes / _MIB:g} MiB"


def parse_min_free(text: str) -> MinFree:
    """``"512"`` (MiB), ``"0.5"``, ``"5%"``; ValueError naming what was expected."""
    value = text.strip()
    percent = value.endswith("%")
    number = value[:-1].strip() if percent else value
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"expected MiB (e.g. 512) or a percentage (e.g. 5%), got {text!r}"
                         ) from None
    if not math.isfinite(amount) or amount < 0 or (percent and amount >= 100):
        raise ValueError(f"expected MiB >= 0 or a percentage from 0 to under 100, got {text!r}")
    return MinFree(percent=amount) if percent else MinFree(bytes=int(amount * _MIB))


def _mb(n: int) -> str:
    return f"{n / _MIB:.1f} MB"


class FreeSpaceReserve:
    """The free-space reserve of one data directory (see the module's docstring).

    Parameters
    ----------
    data_dir : path
        The data directory; its locations are :data:`LOCATIONS`.
    min_free : MinFree
        The reserve each location keeps free.
    statvfs : callable, optional
        ``os.statvfs``; a test may pass another.
    """

    def __init__(self, data_dir, min_free: MinFree = MinFree(), *,
                 statvfs: Callable[[str], os.statvfs_result] = os.statvfs):
        self.data_dir = Path(data_dir)
        self.min_free = min_free
        self._statvfs = statvfs

    @classmethod
    def from_config(cls, config) -> FreeSpaceReserve:
        return cls(config.data_dir, MinFree(config.min_free_bytes, config.min_free_percent))

    def path(self, location: str) -> Path:
        try:
            return self.data_dir / LOCATIONS[location]
        except KeyError:
            raise ValueError(f"unknown storage location {location!r}; expected one of "
                             f"{', '.join(LOCATIONS)}") from None

    def _stat(self, location: str):
        path = self.path(location)
        while not path.exists() and path != path.parent:
            path = path.parent        # a folder not made yet lives on its parent's filesystem
        return self._statvfs(str(path))

    def free_bytes(self, location: str) -> int:
        """Bytes an unprivileged writer may still write at ``location``."""
        st = self._stat(location)
        return st.f_bavail * st.f_frsize

    def reserved_bytes(self, location: str) -> int:
        """Bytes ``location`` keeps free (the reserve, in bytes of its filesystem)."""
        if not self.min_free.percent:
            return self.min_free.bytes
        st = self._stat(location)
        return int(st.f_blocks * st.f_frsize * self.min_free.percent / 100)

    def below(self) -> list[str]:
        """The locations whose free space is under the reserve now."""
        return [name for name in LOCATIONS
                if self.free_bytes(name) < self.reserved_bytes(name)]

    def status(self) -> dict[str, tuple[int, int]]:
        """{location: (free bytes, reserved bytes)}."""
        return {name: (self.free_bytes(name), self.reserved_bytes(name)) for name in LOCATIONS}

    def check(self, *locations: str, incoming: int = 0) -> None:
        """StorageFull (RESOURCE_EXHAUSTED) unless every location keeps its reserve after
        ``incoming`` more bytes."""
        for name in locations:
            free, reserved = self.free_bytes(name), self.reserved_bytes(name)
            if free - incoming >= reserved:
                continue
            upload = f" and this call brings {_mb(incoming)}" if incoming else ""
            raise StorageFull(
                f"the server's storage is nearly full: its {name} location has {_mb(free)} "
                f"({free} bytes) free{upload}, and {_mb(reserved)} ({reserved} bytes) are "
                f"reserved (--min-free {self.min_free}); new writes are refused until space is "
                "freed (delete images, purge expired ones); reads, fetches and deletes still "
                "work")


def storage_fault(exc: BaseException) -> MedcomputeError | None:
    """The domain error of a full or failing disk met while writing; None for others."""
    if isinstance(exc, (StorageFull, StorageFailure)):
        return exc
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in _FULL_ERRNOS:
            return StorageFull("the server's storage is full (no space left on its disk); "
                               "the call was not completed and nothing of it was kept; retry "
                               "once space is freed (delete images, purge expired ones)")
        if exc.errno in _IO_ERRNOS:
            return StorageFailure(f"the server's storage failed ({errno.errorcode.get(exc.errno)}"
                                  "); the call was not completed and nothing of it was kept; "
                                  "retry later")
        return None
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if "database or disk is full" in text:
            return StorageFull("the server's catalog could not be written: its disk is full; "
                               "the call was not completed; retry once space is freed (delete "
                               "images, purge expired ones)")
        if "disk i/o error" in text:
            return StorageFailure("the server's catalog could not be written (disk I/O "
                                  "error); the call was not completed; retry later")
    return None

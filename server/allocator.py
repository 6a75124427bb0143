"""The server process's C allocator: large buffers are kept for reuse.

Every chunk the server receives or sends is a buffer of up to a MiB (the wire chunk), and
each of them is built several times on its way (gRPC's byte buffers, the protobuf
message, its serialisation, the Python bytes). glibc's malloc maps a large allocation on
pages of its own and unmaps them on free (its threshold starts at 128 KiB and grows only to
the largest block freed so far), and it returns the heap's free top to the system once that
exceeds twice the threshold: each such buffer then faults in all its pages again, which on
a small virtual machine costs more than the copies themselves (building and serialising a
1 MiB chunk message measured 1.7 ms with fresh pages, 0.1 ms with reused ones).

:func:`keep_large_buffers` raises the mmap threshold to 16 MiB and the trim threshold to
128 MiB, so buffers up to a few MiB come from the heap and their pages are reused: the
process keeps up to 128 MiB of freed memory for that. Larger blocks (volumes) still get
pages of their own. Only ``medcompute serve`` calls it, for its own process; the Dask
workers keep the allocator settings Dask gives them. An operator who sets
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` keeps their own settings.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_large_buffers"]

log = logging.getLogger(__name__)

#: Allocations up to this size come from the heap (glibc M_MMAP_THRESHOLD).
MMAP_THRESHOLD = 16 << 20
#: Free memory at the heap's top kept rather than returned (glibc M_TRIM_THRESHOLD).
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_large_buffers() -> bool:
    """Set this process's malloc thresholds (glibc on Linux); True if they were set.
    False, with nothing changed, elsewhere or where the operator set them."""
    if not sys.platform.startswith("linux"):
        return False
    if any(name in os.environ for name in _OPERATOR_SETTINGS):
        log.debug("allocator: keeping the operator's malloc settings")
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):       # no C library with mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt answers 1 when it took the setting; musl's stub answers 0.
    done = (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    if done:
        log.debug("allocator: blocks up to %d MiB from the heap, %d MiB of free memory kept",
                  MMAP_THRESHOLD >> 20, TRIM_THRESHOLD >> 20)
    return done

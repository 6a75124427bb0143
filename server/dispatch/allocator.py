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
pages of their own. ``medcompute serve`` calls it for its own process.

The workers of the embedded Dask cluster get the same through their environment
(:func:`worker_settings`, read by each nanny as it starts its worker), with smaller
thresholds: 4 MiB, which covers a slice and its float32 result, and 32 MiB kept, instead
of the 64 KiB trim threshold Dask sets so that a worker's memory reads true. A worker's
memory limit is usually GiBs; 32 MiB of it is what the reuse costs. Workers of an external
cluster (``--scheduler``) are not touched. An operator who sets ``MALLOC_MMAP_THRESHOLD_``
or ``MALLOC_TRIM_THRESHOLD_`` keeps their own settings, in the server and in its workers.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "WORKER_MMAP_THRESHOLD",
           "WORKER_TRIM_THRESHOLD", "keep_large_buffers", "worker_settings"]

log = logging.getLogger(__name__)

#: Allocations up to this size come from the heap (glibc M_MMAP_THRESHOLD).
MMAP_THRESHOLD = 16 << 20
#: Free memory at the heap's top kept rather than returned (glibc M_TRIM_THRESHOLD).
TRIM_THRESHOLD = 128 << 20
#: The same for the embedded cluster's workers.
WORKER_MMAP_THRESHOLD = 4 << 20
WORKER_TRIM_THRESHOLD = 32 << 20
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


#: Whether the operator set their own, read once at import: a Dask nanny writes its
#: workers' settings into the environment of the process it runs in, and the server's
#: other processes (``serve --processes``) inherit that environment. The answer is passed
#: on to them in ``MEDCOMPUTE_MALLOC_BY_OPERATOR``.
_INHERITED = "MEDCOMPUTE_MALLOC_BY_OPERATOR"
_OPERATOR = (os.environ[_INHERITED] == "1" if _INHERITED in os.environ
             else any(name in os.environ for name in _OPERATOR_SETTINGS))
os.environ[_INHERITED] = "1" if _OPERATOR else "0"


def worker_settings() -> dict:
    """The Dask configuration that starts the embedded cluster's workers with the workers'
    thresholds (none where the operator set their own)."""
    if _OPERATOR:
        return {}
    environ = "distributed.nanny.pre-spawn-environ."
    return {environ + "MALLOC_MMAP_THRESHOLD_": WORKER_MMAP_THRESHOLD,
            environ + "MALLOC_TRIM_THRESHOLD_": WORKER_TRIM_THRESHOLD}


def keep_large_buffers() -> bool:
    """Set this process's malloc thresholds (glibc on Linux); True if they were set.
    False, with nothing changed, elsewhere or where the operator set them."""
    if not sys.platform.startswith("linux"):
        return False
    if _OPERATOR:
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

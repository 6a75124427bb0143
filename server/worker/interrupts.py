"""A Dask worker preload of the embedded cluster: the worker processes ignore SIGINT.

Ctrl-C in the terminal of `medcompute serve` (or `make run`) sends SIGINT to the whole
foreground process group: the server and every worker process it started. Left alone,
each worker's event loop is interrupted in the middle of whatever it was doing and
prints a KeyboardInterrupt traceback, and the server's Dask client then sees its
connections closed under it (CommClosedError). The server alone acts on Ctrl-C: it stops
accepting calls and closes the cluster, whose nannies close their workers in order.
Workers of an external cluster (`--scheduler`) keep their own handling.
"""

from __future__ import annotations

import signal

__all__ = ["PRELOAD", "dask_setup"]

PRELOAD = "medcompute.server.worker.interrupts"


def dask_setup(worker=None) -> None:
    """The preload hook: SIGINT is ignored from here on in this worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

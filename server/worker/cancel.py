"""Stopping a cancelled job that is inside a kernel, which Python cannot interrupt.

A job checks between operations whether it was cancelled (tasks.py). One still inside a
kernel :data:`CANCEL_GRACE` seconds after its cancellation has its worker process
restarted by the worker's Dask nanny, so that the calls queued behind it do not wait for
a result nobody wants. A direct call's cancellation reaches the worker through the
runner actor (:func:`stop_later`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

__all__ = ["CANCEL_GRACE", "RESTART_EXIT_CODE", "RUNNING", "running", "stop_later",
           "stop_abandoned"]

log = logging.getLogger(__name__)

#: Seconds a cancelled job may stay inside a kernel before its worker is restarted.
CANCEL_GRACE = 2.0
#: Jobs running in this process now.
RUNNING: set[str] = set()


def _nanny() -> str | None:
    """The address of this worker's nanny; None without one (or outside a worker)."""
    try:
        from distributed import get_worker

        return get_worker().nanny
    except ValueError:           # not a Dask worker (a test calling the runner directly)
        return None


def stop_abandoned(job_ids: list[str], nanny: str | None) -> None:
    """Restart this worker process when a cancelled job is still running: its nanny
    starts a fresh one (the jobs of this process that still had callers are sent again
    by the server, as when a worker dies). Without a nanny nothing would restart it, so
    the job is left to finish."""
    still = [j for j in job_ids if j in RUNNING]
    if not still:
        return
    if not nanny:
        log.warning("cancelled job %s is still running; without a nanny this worker cannot "
                    "be restarted, so it runs to its end", still[0])
        return
    log.warning("cancelled job %s is still running %g s later: restarting this worker",
                still[0], CANCEL_GRACE)
    logging.shutdown()
    os._exit(RESTART_EXIT_CODE)


#: The exit status of a worker restarted to stop an abandoned kernel.
RESTART_EXIT_CODE = 75

@contextlib.contextmanager
def running(job_id: str):
    """``job_id`` runs in this thread for the duration."""
    RUNNING.add(job_id)
    try:
        yield
    finally:
        RUNNING.discard(job_id)


def stop_later(job_ids: list[str]) -> None:
    """On the worker's event loop, for jobs just cancelled: those still running
    :data:`CANCEL_GRACE` seconds from now stop with their worker."""
    still = [j for j in job_ids if j in RUNNING]
    if still:
        asyncio.get_running_loop().call_later(CANCEL_GRACE, stop_abandoned, still, _nanny())

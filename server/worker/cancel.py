"""Stopping a cancelled job that is inside a kernel, which Python cannot interrupt.

A job checks between operations whether it was cancelled (tasks.py). One still inside a
kernel :data:`CANCEL_GRACE` seconds after its cancellation has its worker process
restarted by the worker's Dask nanny, so that the calls queued behind it do not wait for
a result nobody wants. A cancellation reaches the worker two ways: a direct call's
through the runner actor (:func:`stop_later`), a Dask task's as its future's state, which
a watcher thread reads (:func:`running` starts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time

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


async def restart_broken(reason: str, dask_worker=None) -> None:
    """Restart this worker process, whose GPU context is broken for good (a sticky CUDA
    error fails every later call of the process): its nanny starts a fresh one, as
    after a crash. Run by the dispatcher (``Client.run``) once the failing job's error
    reached it (which hands it ``dask_worker``). Without a nanny it can only say so."""
    nanny = dask_worker.nanny if dask_worker is not None else _nanny()
    if not nanny:
        log.error("%s; without a nanny this worker cannot be restarted", reason)
        return
    log.warning("%s: restarting this worker", reason)
    logging.shutdown()
    os._exit(RESTART_EXIT_CODE)

#: Jobs running as Dask tasks in this process, with their tasks' keys: a task's future is
#: cancelled by the server, not through the runner, so a watcher looks (every second).
_TASK_KEYS: dict[str, str] = {}
_watcher_lock = threading.Lock()
_watcher: threading.Thread | None = None


def _task_started(job_id: str) -> None:
    """Watch the Dask task that runs ``job_id`` in this thread (not an actor call)."""
    global _watcher
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        if getattr(thread_state, "actor", False):
            return
        key, worker = thread_state.key, get_worker()
    except (ValueError, AttributeError):  # not running as a Dask task
        return
    _TASK_KEYS[job_id] = key
    with _watcher_lock:
        if _watcher is None:
            _watcher = threading.Thread(target=_watch_tasks, args=(worker,), daemon=True,
                                        name="medcompute-cancel-watch")
            _watcher.start()


def _watch_tasks(worker) -> None:
    """Restart the worker (on its event loop, :func:`stop_abandoned`) when a job's task
    was cancelled and the job is still running :data:`CANCEL_GRACE` seconds later."""
    cancelled_at: dict[str, float] = {}
    while True:
        time.sleep(1.0)
        now = time.monotonic()
        for job_id, key in list(_TASK_KEYS.items()):
            ts = worker.state.tasks.get(key)
            if ts is not None and ts.state not in ("cancelled", "released", "forgotten"):
                cancelled_at.pop(job_id, None)
            elif now - cancelled_at.setdefault(job_id, now) >= CANCEL_GRACE:
                cancelled_at[job_id] = math.inf          # said once
                worker.loop.add_callback(stop_abandoned, [job_id], worker.nanny)
        for job_id in [j for j in cancelled_at if j not in _TASK_KEYS]:
            del cancelled_at[job_id]


@contextlib.contextmanager
def running(job_id: str):
    """``job_id`` runs in this thread for the duration (watched when it is a Dask task)."""
    RUNNING.add(job_id)
    _task_started(job_id)
    try:
        yield
    finally:
        RUNNING.discard(job_id)
        _TASK_KEYS.pop(job_id, None)


def stop_later(job_ids: list[str]) -> None:
    """On the worker's event loop, for jobs just cancelled: those still running
    :data:`CANCEL_GRACE` seconds from now stop with their worker."""
    still = [j for j in job_ids if j in RUNNING]
    if still:
        asyncio.get_running_loop().call_later(CANCEL_GRACE, stop_abandoned, still, _nanny())

"""GPU work whose worker process died: noticed at the first loss, so that the dispatcher
runs the job again on CPU workers.

Dask itself retries a task whose worker died, on a worker with the same resources: for
a GPU task that is the GPU worker again once its nanny has restarted it, and a job that
kills its GPU worker (a crash in the driver, the host memory of its staging buffers, a
kill) would kill it ``allowed-failures`` + 1 times before ending as ``KilledWorker``. The
scheduler announces every worker it removes (its ``remove-worker`` event on the ``all``
topic, with the keys that were processing there); :class:`WorkerLosses` hears them and
ends the wait of the GPU tasks concerned at once with :class:`WorkerLost`. A removal the
worker announced itself (``expected``: retired, closed) is Dask's to reschedule, not a
loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

__all__ = ["WorkerLosses", "WorkerLost", "LOSS_TOPIC"]

log = logging.getLogger(__name__)

#: The scheduler's topic for cluster-wide events, ``remove-worker`` among them.
LOSS_TOPIC = "all"


class WorkerLost(Exception):
    """The worker process running (or holding) a watched task died."""

    def __init__(self, worker: str):
        self.worker = worker
        super().__init__(f"the worker {worker or '(unknown)'} died while it held the task")


class WorkerLosses:
    """Watches tasks for the unexpected removal of the worker that holds them.

    :meth:`on_event` is the handler of the scheduler's :data:`LOSS_TOPIC` events;
    :meth:`watch` awaits a task's result, or raises :class:`WorkerLost` as soon as a
    removal names one of its keys among the worker's processing tasks."""

    def __init__(self):
        self._watched: dict[str, asyncio.Future] = {}
        #: Removals heard (watched or not), for the logs and the tests.
        self.heard = 0

    def on_event(self, event) -> None:
        _, message = event
        if not isinstance(message, dict) or message.get("action") != "remove-worker":
            return
        self.heard += 1
        if message.get("expected"):
            return
        worker = str(message.get("worker", ""))
        for key in message.get("processing-tasks") or ():
            lost = self._watched.get(key)
            if lost is not None and not lost.done():
                log.warning("worker %s died while it held task %s", worker, key)
                lost.set_result(worker)

    async def watch(self, keys, work):
        """``await work`` (a coroutine awaiting the tasks ``keys``); :class:`WorkerLost`
        as soon as the worker holding one of them is lost, ``work`` then cancelled (which
        cancels its tasks)."""
        lost = asyncio.get_running_loop().create_future()
        keys = [str(k) for k in keys]
        for key in keys:
            self._watched[key] = lost
        running = asyncio.ensure_future(work)
        try:
            await asyncio.wait({running, lost}, return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                return running.result()
            raise WorkerLost(lost.result())
        finally:
            for key in keys:
                if self._watched.get(key) is lost:
                    del self._watched[key]
            if not running.done():
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await running

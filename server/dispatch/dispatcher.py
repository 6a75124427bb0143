"""The one owner of the ``distributed.Client``: where, how and what-if for every task.

- **Where**: a GPU worker (``resources={"GPU": 1}``) for ``device=gpu``, or for
  ``device=auto`` when one exists and the job fits its memory; otherwise CPU workers.
- **How**: a whole image per task; many small images batched into one task while
  the workers are busy; a large volume split into slabs with a halo (slabs.py).
- **What if**: a GPU failure, or the loss of the GPU worker running the job
  (losses.py), re-runs the job on CPU and says why; a cancelled call cancels its
  futures; a task that keeps killing CPU workers ends with a clear error.

Embedded: a cluster of worker *processes* on loopback (cluster.py). External:
``--scheduler tcp://HOST:PORT`` joins a running cluster. No job runs in the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from dataclasses import replace

import dask

from medcompute.server.config import ServerConfig
from medcompute.server.dispatch.losses import LOSS_TOPIC, WorkerLosses, WorkerLost
from medcompute.server.dispatch.placement import (
    WorkerView,
    gpu_unsuited,
    job_need,
    place,
    require_gpu,
    route,
)
from medcompute.server.dispatch.small_jobs import CALLERS_GONE, SmallJobs
from medcompute.server.dispatch.split import Execution, job_key, run_split
from medcompute.server.errors import Cancelled, Internal, Unavailable
from medcompute.server.storage.space import storage_fault
from medcompute.server.worker.cancel import restart_broken
from medcompute.server.worker.gpu_meter import free_memory
from medcompute.server.worker.kernel_cache import state as kernel_state
from medcompute.server.worker.tasks import (
    EVENT_TOPIC,
    GpuFailure,
    StackResult,
    StackSpec,
    TaskSpec,
    WorkerRunner,
    job_ids,
    run_batch,
    run_task,
    warm_up,
    warm_up_plugin,
)

__all__ = ["Dispatcher", "Execution", "WorkerView"]

log = logging.getLogger(__name__)

VIEW_TTL = 1.0


class Dispatcher:
    """Submits jobs to a Dask cluster and awaits them.

    Parameters
    ----------
    config : ServerConfig
        ``scheduler`` (external cluster) or the embedded cluster's shape, and the
        split and batch thresholds.
    """

    def __init__(self, config: ServerConfig):
        self.config = config
        self.cluster = None
        self.client = None
        self._view: WorkerView | None = None
        self._view_at = 0.0
        self._listeners: list = []
        #: job id -> ``hook(done, total)``, called as each slab of a split job finishes.
        self.progress_hooks: dict = {}
        self._batchers = {kind: SmallJobs(self, kind, config.batch_max_items)
                          for kind in ("cpu", "gpu")}
        self._runners: dict[str, tuple] = {}        # CPU worker address -> (actor, future)
        self._runner_load: dict[str, int] = {}
        #: When each runner was last chosen (a count): among equally busy runners the one
        #: chosen longest ago goes next, so that few large calls (stacks) still spread.
        self._runner_turn: dict[str, int] = {}
        self._turns = 0
        #: GPU tasks whose worker died: re-run on CPU at the first loss (losses.py).
        self.losses = WorkerLosses()

    # -- life-cycle --------------------------------------------------------------
    async def start(self) -> None:
        from distributed import Client

        if self.config.scheduler:
            log.info("joining the Dask cluster at %s", self.config.scheduler)
            self.client = await Client(self.config.scheduler, asynchronous=True,
                                       direct_to_workers=True)
        else:
            from medcompute.server.dispatch.cluster import start_embedded

            self.cluster = await start_embedded(
                cpu_workers=self.config.workers, gpu_workers=self.config.gpu_workers,
                fake_gpu_workers=self.config.fake_gpu_workers,
                fake_gpu_memory=self.config.fake_gpu_memory,
                fake_gpu_control=self.config.fake_gpu_control,
                memory_limit=self.config.worker_memory,
                kernel_cache=str(self.config.data_dir / "kernel-cache" / "cupy"))
            self.client = await Client(self.cluster, asynchronous=True, direct_to_workers=True)
        self.client.subscribe_topic(EVENT_TOPIC, self._on_event)
        self.client.subscribe_topic(LOSS_TOPIC, self.losses.on_event)
        await self.client.wait_for_workers(1)
        await self.client.run(warm_up)
        await self.client.register_plugin(warm_up_plugin())

    async def close(self) -> None:
        if self.client is not None:
            # Off the scheduler's topics first: the scheduler announces this client's own
            # removal on "all", and would write it to the closing client (a CRITICAL record
            # with a traceback in the log).
            for topic in (EVENT_TOPIC, LOSS_TOPIC):
                with contextlib.suppress(ValueError):
                    self.client.unsubscribe_topic(topic)
            await self.client.close()
        if self.cluster is not None:
            await self.cluster.close()

    @property
    def scheduler_address(self) -> str:
        return self.client.scheduler.address if self.client else ""

    # -- what the cluster looks like ------------------------------------------------
    def _on_event(self, event) -> None:
        _, message = event
        self._tell(message)

    def _sent(self, job_ids: list[str], address: str) -> None:
        """Tell the listeners that these jobs were sent to the worker at ``address`` (its
        runner runs them in order as soon as it is free)."""
        message = {"job": job_ids[0], "event": "sent", "worker": address, "at": time.time()}
        if len(job_ids) > 1:
            message["jobs"] = list(job_ids)
        self._tell(message)

    def _tell(self, message: dict) -> None:
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:  # a listener must not fail the jobs or the event stream
                log.exception("a job event listener failed")

    def add_listener(self, listener) -> None:
        """Call ``listener(message)`` for every job-start event: ``started`` from a worker,
        or ``sent`` (to ``worker``) by a direct call; ``job``, and ``jobs`` when several
        start together."""
        self._listeners.append(listener)

    def remove_listener(self, listener) -> None:
        self._listeners.remove(listener)

    async def _identity(self, timeout: float = 5.0) -> dict:
        if self.client is None or self.client.status not in ("running", "connecting"):
            await self._reconnect()
        try:
            return await asyncio.wait_for(self.client.scheduler.identity(), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise Unavailable(f"the Dask scheduler at {self.scheduler_address} cannot be "
                              f"reached ({type(exc).__name__})") from None

    async def _reconnect(self) -> None:
        """A client that gave up on a lost scheduler is replaced (external clusters)."""
        from distributed import Client

        if not self.config.scheduler:
            raise Unavailable("the embedded Dask cluster is not running")
        try:
            client = await asyncio.wait_for(
                Client(self.config.scheduler, asynchronous=True, direct_to_workers=True), 5)
        except (OSError, asyncio.TimeoutError) as exc:
            raise Unavailable(f"the Dask scheduler at {self.config.scheduler} cannot be "
                              f"reached ({type(exc).__name__})") from None
        old, self.client = self.client, client
        client.subscribe_topic(EVENT_TOPIC, self._on_event)
        client.subscribe_topic(LOSS_TOPIC, self.losses.on_event)
        if old is not None:
            await old.close()
        log.info("reconnected to the Dask scheduler at %s", self.config.scheduler)

    async def view(self) -> WorkerView:
        """Workers by kind (cached for a second)."""
        now = time.monotonic()
        if self._view is not None and now - self._view_at < VIEW_TTL:
            return self._view
        workers = (await self._identity()).get("workers", {})
        gpu = tuple(a for a, w in workers.items() if w.get("resources", {}).get("GPU", 0) > 0)
        cpu = tuple(a for a in workers if a not in gpu)
        # Free memory: asked once of a new GPU worker, then as each of its jobs left it
        # (TaskResult.device_free), so that placement never waits on a dying worker.
        known = self._view.gpu_memory if self._view else {}
        gpu_memory = {a: known[a] for a in gpu if a in known}
        missing = [a for a in gpu if a not in known]
        if missing:
            try:
                answers = await asyncio.wait_for(self.client.run(
                    free_memory, workers=missing, on_error="return"), 5)
            except asyncio.TimeoutError:
                answers = {}
            gpu_memory.update({a: m for a, m in answers.items() if isinstance(m, int)})
        self._view = WorkerView(cpu, gpu, {a: w.get("memory_limit") or 0
                                           for a, w in workers.items()}, gpu_memory)
        self._view_at = now
        return self._view

    async def cpu_workers(self) -> int:
        """The workers small CPU tasks go to (as :meth:`slots`, from a fresh view); 1 when
        the scheduler cannot be reached (the task then fails as any would)."""
        try:
            view = await self.view()
        except Unavailable:
            return 1
        return max(1, len(view.cpu or view.gpu))

    async def worker_kinds(self) -> tuple[int, int]:
        """(CPU workers, GPU workers) alive now; (0, 0) when the scheduler cannot be
        reached. Uncached, and leaves the placement's view alone."""
        try:
            workers = (await self._identity()).get("workers", {})
        except Unavailable:
            return 0, 0
        gpu = sum(1 for w in workers.values() if w.get("resources", {}).get("GPU", 0) > 0)
        return len(workers) - gpu, gpu

    async def worker_count(self) -> int:
        """Workers alive (0 when the scheduler cannot be reached)."""
        try:
            return len((await self._identity()).get("workers", {}))
        except Unavailable:
            return 0

    async def gpu_kernels(self) -> dict:
        """Each GPU worker's kernel warm-up (address -> kernel_cache.state()); {} without
        GPU workers."""
        view = await self.view()
        if not view.gpu:
            return {}
        return await self.client.run(kernel_state, workers=list(view.gpu))

    def slots(self, kind: str) -> int:
        view = self._view or WorkerView()
        return len(view.gpu if kind == "gpu" else (view.cpu or view.gpu))

    # -- running ----------------------------------------------------------------
    async def send_batch(self, kind: str, specs: list, cancel: list) -> list:
        """Run small jobs (and stacks) together: by a direct call to a CPU worker's runner where one
        answers, else as one task. ``cancel`` receives the coroutine function that
        cancels the batch once it is sent."""
        if kind == "cpu" and self.config.direct_calls:
            runner = await self._runner()
            if runner is not None:
                address, actor = runner
                ids = [j for s in specs for j in job_ids(s)]
                cancel[:] = [lambda: actor.cancel(ids)]
                self._runner_load[address] = self._runner_load.get(address, 0) + 1
                # Said here, where the worker is chosen: an event from the worker would
                # cross the scheduler and cost more than a small job.
                self._sent(ids, address)
                try:
                    return await actor.run_batch(specs, False)
                except Internal:          # the jobs' own failure, not the call's
                    raise
                except OSError as exc:
                    if storage_fault(exc) is not None:   # the worker's disk, not the call
                        raise
                    log.info("direct call to %s failed (%s); sending the jobs as a task",
                             address, type(exc).__name__)
                    self._runner_lost(address)
                except Exception as exc:  # the worker (and its runner) went away
                    log.info("direct call to %s failed (%s); sending the jobs as a task",
                             address, type(exc).__name__)
                    self._runner_lost(address)
                finally:
                    self._runner_load[address] -= 1
        if cancel[-1:] == [CALLERS_GONE]:
            # Cancelled while on a worker that went away (restarted to stop its kernel).
            raise Cancelled("every caller of these jobs went away")
        future = self.submit(run_batch, specs, kind=kind, key=f"batch-{uuid.uuid4().hex}")
        cancel[:] = [lambda: self.client.cancel([future], force=True)]
        if kind == "gpu":
            [results] = await self._gather([future], kind)
            return results
        return await future

    def _runner_lost(self, address: str) -> None:
        """The runner at ``address`` failed a call (its worker went away, or is leaving):
        forgotten, and the workers asked again by the next call, so that it does not start
        a runner on the old address and wait for one that cannot start there."""
        self._runners.pop(address, None)
        self._view = None

    async def _runner(self):
        """(address, actor) of the least busy CPU worker's runner (of equally busy ones, the
        one chosen longest ago), started on first use; None when there is no CPU worker or
        the runner cannot be started."""
        view = self._view or await self.view()
        for address in [a for a in self._runners if a not in view.cpu]:
            del self._runners[address]              # the worker has gone
        if not view.cpu:
            return None
        address = min(view.cpu, key=lambda a: (self._runner_load.get(a, 0),
                                               self._runner_turn.get(a, -1)))
        self._turns += 1
        self._runner_turn[address] = self._turns
        entry = self._runners.get(address)
        if entry is None:
            future = self.client.submit(WorkerRunner, actor=True, workers=[address],
                                        allow_other_workers=False, pure=False,
                                        key=f"runner-{uuid.uuid4().hex}")
            async def started():
                return await future
            try:
                actor = await asyncio.wait_for(started(), 10)
            except Exception as exc:
                log.info("no runner on %s (%s)", address, type(exc).__name__)
                return None
            # The future keeps the actor alive on its worker.
            entry = self._runners[address] = (actor, future)
        return address, entry[0]

    def submit(self, fn, *args, kind: str, key: str):
        view = self._view or WorkerView()
        if kind == "gpu":
            return self.client.submit(fn, *args, key=key, pure=False, resources={"GPU": 1})
        if view.cpu and view.gpu:
            # Prefer CPU workers; a GPU worker may still take CPU work (as NumPy) if they go.
            return self.client.submit(fn, *args, key=key, pure=False, workers=list(view.cpu),
                                      allow_other_workers=True)
        return self.client.submit(fn, *args, key=key, pure=False)

    def translate(self, exc: BaseException, kind: str = "cpu") -> BaseException:
        """Dask's failures as domain errors (the task's own errors pass through); on a
        GPU (``kind``), a task that lost its worker is a :class:`GpuFailure`: the job
        runs again on CPU."""
        from distributed.scheduler import KilledWorker

        if isinstance(exc, KilledWorker | WorkerLost) and kind == "gpu":
            worker = getattr(exc, "worker", None) or getattr(exc, "last_worker", None)
            return _lost(getattr(worker, "address", worker) or "")
        if isinstance(exc, KilledWorker):
            allowed = dask.config.get("distributed.scheduler.allowed-failures")
            return Internal(
                f"the job's task was lost together with the worker process running it, "
                f"{allowed + 1} times (the cluster allows {allowed} failures): it may crash "
                "or exhaust the memory of the workers; it was stopped and is not billed")
        fault = storage_fault(exc)
        if fault is not None:             # the disk a worker wrote to is full or failing
            return fault
        if isinstance(exc, (OSError, ConnectionError)) and not isinstance(exc, FileNotFoundError):
            return Unavailable(f"the Dask cluster could not be reached ({type(exc).__name__})")
        return exc

    async def _gather(self, futures: list, kind: str, progress=None):
        """:meth:`_await` the futures; on a GPU, a :class:`GpuFailure` as soon as the
        worker holding one of them dies (losses.py), the futures then cancelled."""
        if kind != "gpu":
            return await self._await(futures, progress)
        try:
            return await self.losses.watch([f.key for f in futures],
                                           self._await(futures, progress, kind))
        except WorkerLost as exc:
            self._view = None                       # that worker is gone
            raise self.translate(exc, kind) from None

    async def _await(self, futures: list, progress=None, kind: str = "cpu"):
        waits = futures
        if progress is not None:
            done = 0

            async def counted(future):
                nonlocal done
                result = await future
                done += 1
                progress(done, len(futures))
                return result
            waits = [counted(f) for f in futures]
        try:
            return await asyncio.gather(*waits)
        except asyncio.CancelledError:
            await asyncio.shield(self.client.cancel(futures, force=True))
            raise
        except BaseException as exc:
            await asyncio.shield(self.client.cancel(futures, force=True))
            raise self.translate(exc, kind) from None

    async def install_plugin(self, plugin, name: str) -> None:
        """Register a worker plug-in: Dask runs its ``setup`` on every worker now and on
        every worker that joins later (the software packages, worker/packages.py)."""
        if self.client is None:
            raise Unavailable("the Dask cluster is not started")
        await self.client.register_plugin(plugin, name=name)

    async def call(self, fn, *args, **kwargs):
        """Run a small task ``fn(*args, **kwargs)`` on a CPU worker and return its result
        (the image store's decoding, previews, kept results); cancelling cancels it."""
        if self.client is None:
            raise Unavailable("the Dask cluster is not started")
        future = self.submit(functools.partial(fn, *args, **kwargs), kind="cpu",
                             key=f"{fn.__name__}-{uuid.uuid4().hex}")
        [result] = await self._await([future])
        return result

    async def check_gpu(self, *, allow_fallback: bool) -> None:
        """FAILED_PRECONDITION when a GPU is required and the cluster has none."""
        require_gpu(await self.view(), allow_fallback=allow_fallback)

    async def run(self, spec: TaskSpec, *, device: str = "auto", allow_fallback: bool = False,
                  voxels: int = 0, out_shape: tuple[int, ...] | None = None,
                  out_dtype: str = "float32") -> Execution:
        """Run one job where it fits; on a GPU failure, again on CPU."""
        if self.client is None:
            raise Unavailable("the Dask cluster is not started")
        view = await self.view()
        unsuited = gpu_unsuited(spec.ops) if device != "cpu" and view.gpu else ""
        need = job_need(spec)
        kind, reason = place(view, device, allow_fallback=allow_fallback, voxels=voxels,
                             unsuited=unsuited, need=need)
        if unsuited:
            log.info("job %s: %s", spec.job_id, unsuited)
        try:
            execution = await self._run_kind(kind, spec, voxels, out_shape, out_dtype)
        except GpuFailure as exc:
            if kind != "gpu":
                raise
            log.warning("job %s: GPU failed (%s); re-running on CPU", spec.job_id, exc.reason)
            reason = f"GPU failed: {exc.reason}"
            async with self._restarting(exc):
                execution = await self._run_kind("cpu", replace(spec, device="cpu"), voxels,
                                                  out_shape, out_dtype)
        execution.fallback_reason = reason
        execution.placement = unsuited
        return execution

    async def run_stack(self, spec: StackSpec, *, device: str = "auto",
                        allow_fallback: bool = False, voxels: int = 0) -> tuple[StackResult, str]:
        """Run a stack (images of one shape, one pipeline) in one worker call, placed as
        one job of ``voxels``; on a GPU failure, again on CPU. (its result, the fallback
        reason or "")."""
        if self.client is None:
            raise Unavailable("the Dask cluster is not started")
        view = await self.view()
        unsuited = gpu_unsuited(spec.ops) if device != "cpu" and view.gpu else ""
        need = job_need(spec)       # the device holds one image of the stack at a time
        kind, reason = place(view, device, allow_fallback=allow_fallback, voxels=voxels,
                             unsuited=unsuited, need=need)
        try:
            result = await self._batchers[kind].run(replace(spec, device=kind))
        except GpuFailure as exc:
            if kind != "gpu":
                raise
            log.warning("stack of job %s: GPU failed (%s); re-running on CPU", spec.job_id,
                        exc.reason)
            async with self._restarting(exc):
                result = await self._batchers["cpu"].run(replace(spec, device="cpu"))
            reason = f"GPU failed: {exc.reason}"
        self._learn_free_memory([result])
        return replace(result, placement=unsuited), reason

    @contextlib.asynccontextmanager
    async def _restarting(self, failure: GpuFailure):
        """While the job runs again on CPU: restart the GPU worker whose device context the
        failure broke (a sticky CUDA error fails every later call of that process), so
        that placement does not keep sending jobs to it. The worker process leaves and its
        nanny starts a new one, as after a crash; nothing here waits for it."""
        if failure.restart and failure.worker:
            log.warning("GPU worker %s: its device context is broken; restarting it",
                        failure.worker)
            try:
                await self.client.run(restart_broken, "its device context is broken",
                                      workers=[failure.worker], wait=False)
            except Exception as exc:  # already gone: the scheduler replaces it
                log.warning("restarting GPU worker %s failed (%s)", failure.worker, exc)
            self._view = None
        yield

    async def _run_kind(self, kind, spec, voxels, out_shape, out_dtype) -> Execution:
        spec = replace(spec, device=kind)
        view = self._view or WorkerView()
        free = [m for a, m in view.gpu_memory.items() if a in view.gpu and m]
        hosts = [m for a, m in view.memory_limit.items() if a in view.gpu and m]
        how = route(kind, voxels, splittable=out_shape is not None,
                    split_bytes=self.config.split_bytes, batch_bytes=self.config.batch_bytes,
                    device_bytes=min(free) if free else None,
                    host_bytes=min(hosts) if hosts else None, need=job_need(spec))
        if how == "split":
            split = await run_split(self, spec, voxels, out_shape, out_dtype)
            if split is not None:
                return split
            how = route(kind, voxels, splittable=False, split_bytes=self.config.split_bytes,
                        batch_bytes=self.config.batch_bytes)
        if how == "batch":
            result = await self._batchers[kind].run(spec)
        else:
            [result] = await self._gather([self.submit(run_task, spec, kind=kind,
                                                       key=job_key(spec))], kind)
        self._learn_free_memory([result])
        return Execution(result, workers=(result.worker,))

    def _learn_free_memory(self, results) -> None:
        """Each GPU worker's free memory as its last job left it."""
        if self._view is None:
            return
        for r in results:
            if getattr(r, "device_free", None) is not None and r.worker in self._view.gpu:
                self._view.gpu_memory[r.worker] = r.device_free


def _lost(worker: str) -> GpuFailure:
    """The failure of a GPU task whose worker process died (killed, out of host memory,
    a crash in the driver): the job runs again on CPU; the dead worker's nanny starts a
    new one."""
    return GpuFailure(f"the GPU worker {worker or '(unknown)'} was lost while it ran the job "
                      "(its process died: killed, out of host memory, or crashed)",
                      worker=worker)

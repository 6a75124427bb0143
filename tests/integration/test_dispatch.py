"""Dispatch on a real cluster: 2 CPU worker processes and 1 worker that declares GPU=1
but runs the FakeGPU test backend (NumPy underneath, told to fail through a control file)."""

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import scipy.ndimage as ndi

from medcompute.client import Client, ServiceError
from medcompute.server.config import ServerConfig
from medcompute.server.worker.fakegpu import DEVICE_NAME

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

FAKE_MEMORY = 32 << 20   # the FakeGPU's "device memory": jobs needing more go to CPU on auto


def _scipy_gaussian(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """The oracle: SciPy's Gaussian, as the service documents its own (nearest, truncate 4)."""
    return ndi.gaussian_filter(image.astype(np.float32), sigma, mode="nearest")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, server_thread):
    data = tmp_path_factory.mktemp("dispatch")
    control = data / "fake-gpu.json"
    control.write_text(json.dumps({"fail": None}))
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=2, gpu_workers=0,
                          fake_gpu_workers=1, fake_gpu_memory=FAKE_MEMORY,
                          fake_gpu_control=str(control), split_bytes=256 << 10)
    with server_thread(config) as server:
        server.control = control
        yield server


def _control(cluster, control: dict) -> None:
    """Replace the FakeGPU's control file at once: a worker never reads half of it."""
    staged = cluster.control.with_suffix(".new")
    staged.write_text(json.dumps(control))
    os.replace(staged, cluster.control)


@pytest.fixture
def fake_gpu(cluster):
    """Set the FakeGPU's behaviour for one test; it works again afterwards."""
    def set_failure(mode):
        _control(cluster, {"fail": mode})
    yield set_failure
    set_failure(None)


@pytest.fixture
def c(cluster):
    with Client(cluster.address, timeout=120) as client:
        yield client


def _vol(shape=(8, 32, 32), seed=0):
    return np.random.default_rng(seed).normal(100, 20, shape).astype(np.float32)


def test_auto_uses_the_gpu_worker_and_meters_gpu_time(c):
    vol = _vol()
    r = c.process(vol, ["gaussian:sigma=1"])
    assert r.header.backend == "fake-gpu" and r.header.device == DEVICE_NAME
    assert not r.header.fallback.happened
    usage = r.header.usage
    assert usage.HasField("gpu_seconds") and usage.gpu_seconds > 0
    assert usage.device == DEVICE_NAME
    assert not usage.HasField("energy_joules")  # no NVML behind a fake device: absent
    np.testing.assert_allclose(r.array, _scipy_gaussian(vol), rtol=1e-5, atol=1e-5)


def test_cpu_never_touches_the_gpu_worker(c, cluster):
    view = cluster.call(cluster.running.dispatcher.view())
    r = c.process(_vol(), ["gaussian:sigma=1"], device="cpu")
    assert r.header.backend == "numpy" and r.header.worker in view.cpu
    assert not r.header.usage.HasField("gpu_seconds")


def test_auto_sends_a_job_too_big_for_the_gpu_to_cpu(c):
    big = _vol((40, 256, 256))  # 2.5 Mi voxels: 40 MiB estimated working memory
    assert big.size * 16 > FAKE_MEMORY
    r = c.process(big, ["mean:size=3"])
    assert r.header.backend == "numpy" and not r.header.fallback.happened


@pytest.mark.parametrize("mode, words", [("oom", "FakeGPUOutOfMemory"),
                                         ("driver", "FakeGPUDriverError")])
def test_gpu_failure_falls_back_to_cpu_visibly(c, fake_gpu, mode, words):
    vol = _vol()
    cpu = c.process(vol, ["gaussian:sigma=2", "edge"], device="cpu")
    fake_gpu(mode)
    r = c.process(vol, ["gaussian:sigma=2", "edge"], device="gpu")
    assert r.header.fallback.happened and words in r.header.fallback.reason
    assert r.header.backend == "numpy" and r.header.usage.fallback
    np.testing.assert_array_equal(r.array, cpu.array)  # the same as a CPU-only run


def test_a_stack_whose_gpu_fails_runs_again_on_cpu_for_every_image(c, fake_gpu):
    images = [_vol((4, 16, 16), seed=k) for k in range(6)]
    cpu = [c.process(image, ["gaussian:sigma=1"], device="cpu") for image in images]
    fake_gpu("oom")
    items = {item.index: item for item in c.process_many(images, ["gaussian:sigma=1"],
                                                          device="gpu")}
    for k, single in enumerate(cpu):
        r = items[k].result
        assert r.header.fallback.happened and "FakeGPUOutOfMemory" in r.header.fallback.reason
        assert r.header.usage.fallback and r.header.backend == "numpy"
        assert r.array.tobytes() == single.array.tobytes()


def test_gpu_required_on_a_cluster_without_one_can_fall_back(client):
    r = client.process(_vol((2, 8, 8)), ["gaussian:sigma=1"], device="gpu", allow_fallback=True)
    assert r.header.fallback.happened and "no GPU worker" in r.header.fallback.reason
    with pytest.raises(ServiceError) as info:
        client.process(_vol((2, 8, 8)), ["gaussian:sigma=1"], device="gpu")
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION


# -- large volumes: slabs with a halo equal whole-volume processing -------------------

SPLIT_CASES = [
    ["gaussian:sigma=1.5"], ["gaussian:sigma=[2,1,1],mode=reflect"], ["mean:size=5"],
    ["median:size=3"], ["laplacian"], ["laplacian:sigma=1"], ["gradient:axis=0"],
    ["gradient:axis=2,order=2"], ["edge:operator=sobel"], ["edge:operator=prewitt"],
    ["edge:operator=scharr,mode=mirror"], ["bandpass:low_cutoff=2,high_cutoff=6"],
    ["mip:axis=0"], ["project:kind=mean,axis=1"], ["project:kind=sum,axis=0,thickness=4,step=2"],
    ["minip:axis=2"], ["gaussian:sigma=1", "mip:axis=0", "edge"],
    ["subtract:mask_frame=3"], ["gaussian:sigma=1,mode=constant,cval=5", "mean:size=3"],
]


def _whole(vol, texts, operands=()):
    """The same pipeline, whole volume, in this process with the same kernels."""
    from medcompute.client.ops import parse_op
    from medcompute.server.jobs.operations import Geometry, resolve_pipeline
    from medcompute.server.worker.tasks import run_pipeline

    ops, _ = resolve_pipeline([parse_op(t) for t in texts], Geometry(vol.shape),
                              [Geometry(o.shape) for o in operands])
    return run_pipeline(vol, list(operands), ops)


@pytest.mark.parametrize("texts", SPLIT_CASES, ids=lambda t: "+".join(t))
def test_a_split_volume_equals_whole_volume_processing(c, texts):
    vol = _vol((48, 40, 36), seed=3)  # 270 KiB float32 > split_bytes: split on CPU
    r = c.process(vol, texts, device="cpu")
    assert r.header.slabs > 1, "the volume was not split"
    np.testing.assert_allclose(r.array, _whole(vol, texts), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("texts, operand_shape", [
    (["subtract:weight=0.5"], (48, 40, 36)), (["subtract"], (40, 36)), (["add"], (48, 40, 36)),
    (["mip:axis=0", "subtract"], (40, 36)),
])
def test_subtraction_splits_with_its_operand(c, texts, operand_shape):
    vol = _vol((48, 40, 36), seed=4)
    other = _vol(operand_shape, seed=5)
    r = c.process(vol, texts, operands=[other], device="cpu")
    assert r.header.slabs > 1
    np.testing.assert_allclose(r.array, _whole(vol, texts, [other]), rtol=1e-5, atol=1e-4)


def test_butterworth_reads_the_whole_image_and_is_not_split(c):
    vol = _vol((48, 40, 36), seed=6)
    texts = ["butterworth:low_cutoff=3,high_cutoff=12"]
    r = c.process(vol, texts, device="cpu")
    assert r.header.slabs == 1
    np.testing.assert_allclose(r.array, _whole(vol, texts), rtol=1e-5, atol=1e-4)


def test_slabs_run_on_several_workers_and_bill_once(c, cluster):
    r = c.process(_vol((64, 64, 64)), ["gaussian:sigma=2"], device="cpu")
    assert r.header.slabs >= 2 and len(r.header.workers) == 2
    stored = cluster.call(cluster.catalog.usage_for(r.job_id))
    assert len(stored) == 1 and stored[0]["compute_seconds"] == pytest.approx(
        r.header.usage.compute_seconds)


# -- many small images ------------------------------------------------------------

@pytest.fixture
def task_batches(cluster):
    """Small jobs as Dask tasks (no direct calls to the workers' runners) for one test."""
    config = cluster.running.dispatcher.config
    config.direct_calls = False
    yield
    config.direct_calls = True


def test_concurrent_small_images_are_batched_with_separate_results(c, cluster, task_batches):
    batcher = cluster.running.dispatcher._batchers["cpu"]
    images = [_vol((64, 64), seed=i) for i in range(14)]   # 16 in progress per subscriber
    # Both CPU workers held by work that would last minutes, so that the small jobs queue
    # behind them; once all of them wait, the long work is cancelled and the queue leaves.
    long = [c.submit(_vol((24, 64, 64), seed=s), ENDLESS, device="cpu") for s in (1, 2)]
    deadline = time.monotonic() + 60
    while batcher.in_flight < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    before = batcher.tasks
    with ThreadPoolExecutor(len(images)) as pool:
        calls = [pool.submit(c.process, im, ["gaussian:sigma=1"], device="cpu")
                 for im in images]
        # Every call admitted (the guard counts the synchronous calls in progress): with
        # both workers held, each of them waits for a worker.
        guard = cluster.running.guard
        while guard.counters.jobs < len(images):
            assert time.monotonic() < deadline + 60, f"{guard.counters.jobs} calls admitted"
            time.sleep(0.01)
        for job in long:
            c.cancel(job.job_id)
        results = [f.result(120) for f in calls]
    tasks = batcher.tasks - before
    assert tasks < len(images) / 2, f"{tasks} Dask tasks for {len(images)} images"
    for im, r in zip(images, results):
        np.testing.assert_allclose(r.array, _scipy_gaussian(im), rtol=1e-5, atol=1e-5)
    ids = {r.job_id for r in results}
    assert len(ids) == len(images)
    for r in results:
        [usage] = cluster.call(cluster.catalog.usage_for(r.job_id))
        assert usage["voxels"] == 64 * 64 and usage["compute_seconds"] > 0


def test_small_cpu_jobs_are_direct_calls_to_every_workers_runner(c, cluster):
    dispatcher = cluster.running.dispatcher
    images = [_vol((64, 64), seed=i) for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda im: c.process(im, ["mean:size=3"], device="cpu"),
                                images))
    for im, r in zip(images, results):
        np.testing.assert_allclose(r.array, ndi.uniform_filter(im.astype(np.float32), 3,
                                   mode="nearest"), rtol=1e-5, atol=1e-5)
    # A runner (a Dask actor) on each CPU worker took jobs, and each job was billed once.
    cpu_workers = set(cluster.call(dispatcher.view()).cpu)
    assert set(dispatcher._runners) == cpu_workers
    assert {r.header.worker for r in results} == cpu_workers
    for r in results:
        assert len(cluster.call(cluster.catalog.usage_for(r.job_id))) == 1


# -- cancellation, deadlines and lost workers ------------------------------------------

SLOW = ["median:size=5"] * 40   # a few seconds on one worker


class Started:
    """Waits for the cluster's start event of the next job (no sleeping)."""

    def __init__(self, server):
        self.server = server
        self.event = threading.Event()
        self.message = None

    def __call__(self, message):
        if self.message is None:
            self.message = message
            self.event.set()

    def __enter__(self):
        self.server.running.dispatcher.add_listener(self)
        return self

    def __exit__(self, *exc):
        self.server.running.dispatcher.remove_listener(self)


#: Minutes of work on one worker if it were never stopped (a median of 24x96x96 takes about
#: a second): a test that waits for the workers to be idle with a bound far below that
#: fails only if the cancellation did not stop the work.
ENDLESS = ["median:size=5"] * 600


def _running_jobs(cluster) -> set[str]:
    """The jobs the worker processes run now (each worker's ``cancel.RUNNING``)."""
    def running_here():
        from medcompute.server.worker import cancel
        return sorted(cancel.RUNNING)

    async def ask():
        return await cluster.running.dispatcher.client.run(running_here)

    return {job for jobs in cluster.call(ask()).values() for job in jobs}


def _wait_workers_idle(cluster, bound: float = 120.0) -> None:
    deadline = time.monotonic() + bound
    while _running_jobs(cluster):
        assert time.monotonic() < deadline, "a cancelled job still runs on a worker"
        time.sleep(0.1)


def test_a_passed_deadline_cancels_the_work_on_the_worker(c, cluster):
    vol = _vol((24, 96, 96))
    with Client(cluster.address, timeout=1.5) as hasty, pytest.raises(ServiceError) as info:
        hasty.process(vol, ENDLESS, device="cpu")
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    # The work stops on the worker, minutes before the pipeline would have ended.
    _wait_workers_idle(cluster)
    jobs = cluster.call(cluster.catalog.unfinished_jobs())
    assert jobs == []


def test_a_cancelled_call_cancels_the_work(cluster, c):
    from medcompute.client.calls import _descriptor
    from medcompute.client.io import LocalImage
    from medcompute.client.ops import parse_op
    from medcompute.proto.v1 import image_pb2, processing_pb2, processing_pb2_grpc

    vol = _vol((24, 96, 96))
    header = processing_pb2.ProcessHeader(
        pipeline=[parse_op(t) for t in ENDLESS], device=processing_pb2.DEVICE_CPU,
        input=image_pb2.ImageSource(inline=_descriptor(LocalImage(array=vol), 0)))
    messages = [processing_pb2.ProcessRequest(header=header),
                processing_pb2.ProcessRequest(chunk=image_pb2.Chunk(data=vol.tobytes()))]
    with grpc.insecure_channel(cluster.address) as channel, Started(cluster) as started:
        call = processing_pb2_grpc.ProcessingServiceStub(channel).Process(iter(messages))
        assert started.event.wait(60)
        deadline = time.monotonic() + 60
        while started.message["job"] not in _running_jobs(cluster):   # it runs on a worker
            assert time.monotonic() < deadline
            time.sleep(0.05)
        call.cancel()
    _wait_workers_idle(cluster)
    job = cluster.call(cluster.catalog.get_job(started.message["job"]))
    assert job.state.value == "CANCELLED"


def test_a_killed_worker_does_not_lose_the_job_or_bill_it_twice(c, cluster):
    vol = _vol((24, 64, 64))
    ops = ["median:size=5"] * 12

    async def pids():
        return await cluster.running.dispatcher.client.run(os.getpid)

    worker_pids = cluster.call(pids())
    expected = _whole(vol, ops)
    with Started(cluster) as started, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(c.process, vol, ops, device="cpu")
        assert started.event.wait(60)
        os.kill(worker_pids[started.message["worker"]], signal.SIGKILL)
        r = pending.result(timeout=180)
    np.testing.assert_allclose(r.array, expected, rtol=1e-6)
    assert r.header.worker != started.message["worker"]
    assert len(cluster.call(cluster.catalog.usage_for(r.job_id))) == 1


def _wait_for_the_gpu_worker(cluster, c):
    """The GPU worker's nanny started a new process; it serves on the GPU again."""
    async def wait_workers():
        await cluster.running.dispatcher.client.wait_for_workers(3, timeout=60)
    cluster.call(wait_workers(), timeout=90)
    deadline = time.monotonic() + 60      # a generous bound: placement sees the new worker
    while time.monotonic() < deadline:
        view = cluster.call(cluster.running.dispatcher.view())
        # A worker a later job broke may be restarted once more: wait until a job lands.
        if view.gpu and all(view.gpu_memory.get(a) for a in view.gpu) and \
                c.process(_vol((2, 8, 8)), ["gaussian:sigma=1"]).header.backend == "fake-gpu":
            return
        time.sleep(0.2)
    raise AssertionError("the GPU worker did not serve again within 60 s")


def _usage_record(cluster, job_id: str) -> dict:
    [record] = cluster.call(cluster.catalog.usage_for(job_id))     # billed once
    return record


@pytest.mark.parametrize("mode, shape", [
    ("crash", (8, 32, 32)),                    # at the upload, in a batch of small jobs
    ("crash_in_kernel", (17, 256, 256)),       # in the first kernel, a task of its own
])
def test_a_gpu_worker_that_dies_under_a_job_means_a_cpu_rerun_billed_once(
        c, cluster, fake_gpu, mode, shape):
    vol = _vol(shape, seed=3)
    fake_gpu(mode)
    r = c.process(vol, ["gaussian:sigma=1"], device="gpu")
    fake_gpu(None)
    assert r.header.backend == "numpy" and r.header.fallback.happened
    assert "was lost while it ran the job" in r.header.fallback.reason
    np.testing.assert_allclose(r.array, _scipy_gaussian(vol), rtol=1e-5, atol=1e-4)
    assert r.header.usage.fallback and r.header.usage.fallback_reason == r.header.fallback.reason
    record = _usage_record(cluster, r.job_id)
    assert record["fallback"] and record["fallback_reason"] == r.header.fallback.reason
    assert record["backend"] == "numpy" and record["state"] == "SUCCEEDED"
    assert "gpu_seconds" not in record and "transfer_seconds" not in record
    _wait_for_the_gpu_worker(cluster, c)


class Killer:
    """Kills (SIGKILL) every worker process a job starts on, as a job that exhausts the
    memory of every worker would: a test thread maps each announced worker to its pid."""

    def __init__(self, server):
        self.server = server
        self.addresses: list[str] = []
        self.wake = threading.Condition()
        self.stopped = False
        self.kills = 0

    def __call__(self, message):             # on the server's loop: never blocks
        with self.wake:
            self.addresses.append(message.get("worker", ""))
            self.wake.notify()

    def _kill(self):
        async def pid(address):
            return await self.server.running.dispatcher.client.run(
                os.getpid, workers=[address], on_error="return")
        while True:
            with self.wake:
                self.wake.wait_for(lambda: self.addresses or self.stopped)
                if self.stopped:
                    return
                address = self.addresses.pop(0)
            try:
                pids = self.server.call(pid(address), timeout=30)
            except Exception:                       # gone already
                continue
            for value in pids.values():
                if isinstance(value, int):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(value, signal.SIGKILL)
                        self.kills += 1

    def __enter__(self):
        self.thread = threading.Thread(target=self._kill, daemon=True)
        self.thread.start()
        self.server.running.dispatcher.add_listener(self)
        return self

    def __exit__(self, *exc):
        self.server.running.dispatcher.remove_listener(self)
        with self.wake:
            self.stopped = True
            self.wake.notify()
        self.thread.join(60)


def test_a_job_that_keeps_killing_workers_fails_clearly_and_is_not_billed(c, cluster, fake_gpu):
    # Its GPU worker dies at the upload; the CPU re-run kills every worker it starts on.
    fake_gpu("crash")
    with Killer(cluster) as killer, pytest.raises(ServiceError) as info:
        c.process(_vol((8, 64, 64)), ENDLESS, device="gpu")
    assert killer.kills >= 2
    assert info.value.code == grpc.StatusCode.INTERNAL
    assert "lost together with the worker process" in info.value.details
    assert "not billed" in info.value.details
    import sqlite3

    with sqlite3.connect(cluster.catalog.path) as db:
        record = json.loads(db.execute(
            "SELECT record FROM jobs ORDER BY created_at DESC LIMIT 1").fetchone()[0])
    assert record["state"] == "FAILED" and record["platform_fault"] is True
    fake_gpu(None)
    # The restarted workers serve again.
    _wait_for_the_gpu_worker(cluster, c)


# -- compiled kernels, failures after upload, broken device contexts --------------------

def _gpu_worker_state(cluster, fn, timeout=None):
    """``fn`` run on each GPU worker, by address; ``timeout``: seconds to wait for their
    answers (asyncio.TimeoutError past it, as when asking a worker that is leaving, whose
    connection would otherwise be waited for up to Dask's 30 s connect timeout)."""
    async def on_gpu():
        view = await cluster.running.dispatcher.view()
        return await asyncio.wait_for(
            cluster.running.dispatcher.client.run(fn, workers=list(view.gpu)), timeout)
    return cluster.call(on_gpu())


def test_the_gpu_worker_compiled_the_common_settings_at_start(cluster):
    from medcompute.server.worker import kernel_cache

    deadline = time.monotonic() + 60          # a generous bound on a warm-up on the fake
    while True:
        [state] = _gpu_worker_state(cluster, kernel_cache.state).values()
        if state["state"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert state["state"] == "done" and state["compiled"] == 2 * len(kernel_cache.COMMON)


def test_compile_time_is_reported_apart_and_not_billed_as_gpu_seconds(c, cluster, fake_gpu):
    delay = 1.0
    _control(cluster, {"fail": None, "compile_delay": delay})
    vol = _vol()
    r = c.process(vol, ["gaussian:sigma=1,mode=constant,cval=11"], device="gpu")
    usage = r.header.usage
    assert r.header.backend == "fake-gpu" and not r.header.fallback.happened
    assert usage.compile_seconds >= delay              # a new kernel configuration
    assert usage.gpu_seconds < delay                   # billed: the kernels alone
    assert usage.HasField("transfer_seconds")
    again = c.process(vol, ["gaussian:sigma=1,mode=constant,cval=11"], device="gpu")
    assert again.header.usage.compile_seconds == 0.0
    [record] = cluster.call(cluster.catalog.usage_for(r.job_id))
    assert record["compile_seconds"] >= delay and record["gpu_seconds"] < delay
    cpu = c.process(vol, ["gaussian:sigma=1"], device="cpu").header.usage
    assert not cpu.HasField("compile_seconds") and not cpu.HasField("transfer_seconds")


def test_a_gpu_that_fails_after_the_upload_falls_back_to_cpu(c, fake_gpu):
    vol = _vol()
    fake_gpu("after_upload")
    r = c.process(vol, ["gaussian:sigma=2"], device="gpu")
    assert r.header.fallback.happened and "kernel launch failed" in r.header.fallback.reason
    assert r.header.backend == "numpy"


def test_a_broken_device_context_restarts_the_gpu_worker(c, cluster, fake_gpu):
    before = _gpu_worker_state(cluster, os.getpid)
    vol = _vol()
    fake_gpu("sticky")
    r = c.process(vol, ["gaussian:sigma=2"], device="gpu")
    assert r.header.fallback.happened and r.header.backend == "numpy"
    assert "FakeGPUContextError" in r.header.fallback.reason
    assert "restarted" in r.header.fallback.reason
    np.testing.assert_allclose(r.array, _scipy_gaussian(vol, 2.0), rtol=1e-5, atol=1e-4)
    record = _usage_record(cluster, r.job_id)
    assert record["fallback"] and record["fallback_reason"] == r.header.fallback.reason
    assert "gpu_seconds" not in record and record["backend"] == "numpy"
    fake_gpu(None)
    # The context stays broken in that process: only a new process serves on the GPU again.
    deadline = time.monotonic() + 120             # a generous bound on a worker restart
    while time.monotonic() < deadline:
        try:
            after = _gpu_worker_state(cluster, os.getpid, timeout=5)
        except Exception:                          # the old worker is leaving
            after = {}
        if after and set(after.values()).isdisjoint(before.values()):
            break
        time.sleep(0.2)
    assert after and set(after.values()).isdisjoint(before.values())
    r = c.process(vol, ["gaussian:sigma=2"], device="gpu")
    assert r.header.backend == "fake-gpu" and not r.header.fallback.happened


def test_every_job_on_a_poisoned_gpu_worker_runs_again_on_cpu_billed_once(c, cluster,
                                                                         fake_gpu):
    # Jobs of their own (over the batch size): the first breaks the context and has the
    # worker restarted; those it held meanwhile are lost with it, those after it fail
    # on the broken context (or on a fresh worker, which the control breaks again).
    vols = [_vol((17, 256, 256), seed=20 + k) for k in range(3)]
    fake_gpu("sticky")
    try:
        with ThreadPoolExecutor(len(vols)) as pool:
            results = list(pool.map(
                lambda v: c.process(v, ["gaussian:sigma=1"], device="gpu"), vols))
    finally:
        fake_gpu(None)
    try:
        for vol, r in zip(vols, results):
            reason = r.header.fallback.reason
            assert r.header.backend == "numpy" and r.header.fallback.happened
            assert "FakeGPUContextError" in reason or "was lost while it ran the job" in reason
            np.testing.assert_allclose(r.array, _scipy_gaussian(vol), rtol=1e-5, atol=1e-4)
            record = _usage_record(cluster, r.job_id)
            assert record["fallback_reason"] == reason and "gpu_seconds" not in record
    finally:
        _wait_for_the_gpu_worker(cluster, c)      # the next tests need it, whatever failed


def test_a_volume_larger_than_the_gpus_memory_runs_on_the_gpu_in_slabs(c, cluster):
    from medcompute.server.worker import fakegpu

    [before] = _gpu_worker_state(cluster, fakegpu.stream_events).values()
    vol = _vol((36, 512, 512), seed=9)            # 36 MiB of float32 > the fake's 32 MiB
    assert vol.nbytes > FAKE_MEMORY
    r = c.process(vol, ["gaussian:sigma=1"], device="gpu")
    assert r.header.backend == "fake-gpu" and not r.header.fallback.happened
    np.testing.assert_allclose(r.array, _whole(vol, ["gaussian:sigma=1"]), rtol=1e-5,
                               atol=1e-4)
    # The slabs ran double-buffered in one task on the one GPU worker (gpu_slabs.py).
    assert r.header.slabs > 1 and list(r.header.workers) == [r.header.worker]
    assert r.header.usage.HasField("gpu_seconds") and r.header.usage.HasField("transfer_seconds")
    [after] = _gpu_worker_state(cluster, fakegpu.stream_events).values()
    done = [e for e in after[len(before):] if e[0] == "downloaded"]
    assert len(done) == r.header.slabs


def test_a_large_median_asked_for_the_gpu_is_placed_on_cpu_and_says_why(c):
    vol = _vol((8, 16, 16))
    r = c.process(vol, ["median:size=7"], device="gpu")
    assert r.header.backend == "numpy" and not r.header.fallback.happened
    assert "median of 343 voxels" in r.header.placement and not r.header.usage.fallback
    small = c.process(vol, ["median:size=3"], device="gpu")
    assert small.header.backend == "fake-gpu" and small.header.placement == ""


def test_placement_learns_the_gpus_free_memory_from_its_jobs(c, cluster):
    # Asked once of a new GPU worker, then told by each job: never waiting on the worker.
    dispatcher = cluster.running.dispatcher
    [gpu] = cluster.call(dispatcher.view()).gpu
    cluster.call(dispatcher.view()).gpu_memory[gpu] = FAKE_MEMORY // 2
    r = c.process(_vol(), ["gaussian:sigma=1"], device="gpu")
    assert r.header.backend == "fake-gpu"
    assert cluster.call(dispatcher.view()).gpu_memory[gpu] == FAKE_MEMORY

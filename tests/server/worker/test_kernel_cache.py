"""GPU kernels compiled outside the clock: per pipeline before its timed run, the common
settings at a worker's start; on the FakeGPU, whose first use of a kernel configuration
sleeps ``compile_delay`` as CuPy's compile takes seconds."""


import numpy as np
import pytest

from medcompute.client.ops import parse_op
from medcompute.server.jobs.operations import Geometry, resolve_pipeline
from medcompute.server.worker import fakegpu, kernel_cache, tasks
from tests.gpu_helpers import fake_device

DELAY = 0.5   # the fake's compile time; a kernel on an 8x16x16 volume takes far less


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A fake device in this process, restarted (nothing compiled, context working)."""
    with fake_device(monkeypatch, tmp_path, compile_delay=DELAY) as set_control:
        yield set_control


def _spec(vol, texts, device="gpu"):
    ops, _ = resolve_pipeline([parse_op(t) for t in texts], Geometry(vol.shape), [])
    data = tasks.InputSpec("", "raw", vol.shape, vol.dtype.str, data=vol.tobytes())
    return tasks.TaskSpec(job_id="j", inputs=(data,), ops=tuple(ops), out_path="",
                          result_in_memory=True, device=device)


VOL = np.random.default_rng(0).normal(100, 20, (8, 16, 16)).astype(np.float32)


def test_a_new_setting_compiles_outside_the_gpu_seconds_and_only_once(fake):
    spec = _spec(VOL, ["gaussian:sigma=1,mode=constant,cval=7", "mean:size=3"])
    first = tasks.run_task(spec, announce=False)
    assert first.compile_seconds >= DELAY           # two configurations, each slept once
    assert first.gpu_seconds < DELAY                # ... and none of it in the kernels' time
    assert first.transfer_seconds is not None and first.transfer_seconds >= 0
    again = tasks.run_task(spec, announce=False)
    assert again.compile_seconds == 0.0 and again.gpu_seconds < DELAY
    cpu = tasks.run_task(_spec(VOL, ["gaussian:sigma=1,mode=constant,cval=7", "mean:size=3"],
                               device="cpu"), announce=False)
    assert cpu.compile_seconds is None and cpu.transfer_seconds is None
    np.testing.assert_allclose(first.data, cpu.data, rtol=1e-6)


def test_a_pipeline_its_corner_cannot_stand_in_for_compiles_in_its_run(fake):
    # A projection 10 slices thick cannot run on an 8-voxel corner: the compile is not
    # separated and says so (None), the job still runs.
    vol = np.ones((12, 16, 16), np.float32)
    r = tasks.run_task(_spec(vol, ["mip:axis=0,thickness=10"]), announce=False)
    assert r.compile_seconds is None and r.gpu_seconds is not None
    assert r.shape == (1, 16, 16)               # one slab of 10 slices


def test_warm_up_compiles_the_common_settings_so_the_first_job_finds_them(fake, monkeypatch):
    monkeypatch.setattr(kernel_cache, "_state", {"state": "not started", "compiled": 0,
                                                 "seconds": 0.0, "error": ""})
    fake(fail=None, compile_delay=0.01)
    tasks.warm_up()
    state = kernel_cache.warm_up(None, wait=True)       # already started: waits for it
    assert state["state"] == "done" and state["compiled"] == 2 * len(kernel_cache.COMMON)
    compiled = fakegpu.compiled()
    assert compiled > 0
    fake(fail=None, compile_delay=DELAY)
    tasks.run_task(_spec(VOL, ["gaussian:sigma=1"]), announce=False)
    assert fakegpu.compiled() == compiled               # nothing new compiled


def test_a_warm_up_that_cannot_compile_says_so(fake, monkeypatch):
    # As on a GPU without NVRTC: the first compile fails; health reads the state.
    monkeypatch.setattr(kernel_cache, "_state", {"state": "not started", "compiled": 0,
                                                 "seconds": 0.0, "error": ""})
    fake(fail="after_upload", fail_warm_up=True)
    state = kernel_cache.warm_up(fakegpu.fake_gpu_backend(), wait=True)
    assert state["state"] == "failed" and "FakeGPUDriverError" in state["error"]


@pytest.mark.parametrize("mode, restart", [("after_upload", False), ("sticky", True)])
def test_a_device_failure_after_upload_is_a_gpu_failure(fake, mode, restart):
    fake(fail=mode)
    with pytest.raises(tasks.GpuFailure) as info:
        tasks.run_task(_spec(VOL, ["gaussian:sigma=1"]), announce=False)
    assert info.value.restart is restart
    fake(fail=None)
    if restart:   # sticky: the process stays broken although the device "works" again
        with pytest.raises(tasks.GpuFailure, match="FakeGPUContextError"):
            tasks.run_task(_spec(VOL, ["gaussian:sigma=1"]), announce=False)
    else:
        assert tasks.run_task(_spec(VOL, ["gaussian:sigma=1"]), announce=False).gpu_seconds


def test_a_volume_larger_than_the_fake_device_is_out_of_memory(fake, monkeypatch):
    monkeypatch.setenv(fakegpu.MEMORY_ENV, str(VOL.nbytes - 1))
    with pytest.raises(tasks.GpuFailure, match="FakeGPUOutOfMemory"):
        tasks.run_task(_spec(VOL, ["gaussian:sigma=1"]), announce=False)


def test_a_value_error_inside_the_device_code_is_the_callers_not_a_gpu_failure(fake):
    from medcompute.server.errors import InvalidArgument

    spec = _spec(VOL, ["gaussian:sigma=1"])
    bad = type(spec.ops[0])("gaussian", "gaussian", ((1.0, 1.0),), {})   # 2 sigmas, 3 axes
    with pytest.raises(InvalidArgument):
        tasks.run_task(tasks.TaskSpec(**{**spec.__dict__, "ops": (bad,)}), announce=False)


def test_a_stack_compiles_before_its_first_image_and_meters_each_image_apart(fake):
    vols = [VOL + k for k in range(3)]
    ops, _ = resolve_pipeline([parse_op("mean:size=5,mode=constant,cval=3")],
                              Geometry(VOL.shape), [])
    stack = np.stack(vols)
    spec = tasks.StackSpec(job_ids=("a", "b", "c"), operands=(), ops=tuple(ops), device="gpu",
                           stack=tasks.InputSpec("", "raw", stack.shape, stack.dtype.str,
                                                 data=stack.tobytes()))
    r = tasks.run_stack(spec, announce=False)
    assert r.gpu and r.compile_seconds >= DELAY
    assert all(k < DELAY for k in r.kernel_seconds) and len(r.transfer_seconds) == 3
    assert tasks.run_stack(spec, announce=False).compile_seconds == 0.0


def test_a_failure_set_for_jobs_leaves_the_warm_up_of_a_restarted_worker_alone(fake, monkeypatch):
    monkeypatch.setattr(kernel_cache, "_state", {"state": "not started", "compiled": 0,
                                                 "seconds": 0.0, "error": ""})
    fake(fail="sticky")
    state = kernel_cache.warm_up(fakegpu.fake_gpu_backend(), wait=True)
    assert state["state"] == "done"
    with pytest.raises(tasks.GpuFailure, match="FakeGPUContextError"):
        tasks.run_task(_spec(VOL, ["gaussian:sigma=1"]), announce=False)

"""Placement decisions without a cluster: worker kind, slab count, batch/task/split."""

import pytest

from medcompute.server.dispatch.placement import (
    BYTES_PER_VOXEL,
    WorkerView,
    place,
    route,
    slab_count,
)
from medcompute.server.errors import FailedPrecondition

GIB = 1 << 30
CPU_ONLY = WorkerView(cpu=("tcp://c1", "tcp://c2"), memory_limit={"tcp://c1": 4 * GIB,
                                                                  "tcp://c2": 4 * GIB})
WITH_GPU = WorkerView(cpu=("tcp://c1",), gpu=("tcp://g1",),
                      memory_limit={"tcp://c1": 4 * GIB, "tcp://g1": 8 * GIB},
                      gpu_memory={"tcp://g1": 1 * GIB})


@pytest.mark.parametrize("view", [CPU_ONLY, WITH_GPU])
def test_cpu_asked_is_cpu_everywhere(view):
    assert place(view, "cpu", allow_fallback=False, voxels=10) == ("cpu", "")


def test_auto_takes_the_gpu_when_the_job_fits_its_memory():
    fits = GIB // BYTES_PER_VOXEL
    assert place(WITH_GPU, "auto", allow_fallback=False, voxels=fits) == ("gpu", "")
    assert place(WITH_GPU, "auto", allow_fallback=False, voxels=fits + 1) == ("cpu", "")


def test_auto_without_a_gpu_is_cpu_without_a_fallback_reason():
    assert place(CPU_ONLY, "auto", allow_fallback=False, voxels=10) == ("cpu", "")


def test_gpu_asked_is_the_gpu_even_when_the_job_is_large():
    # An explicit device=gpu is not second-guessed by the memory estimate.
    assert place(WITH_GPU, "gpu", allow_fallback=False, voxels=10 * GIB) == ("gpu", "")


def test_gpu_asked_without_a_gpu_falls_back_only_when_allowed():
    assert place(CPU_ONLY, "gpu", allow_fallback=True, voxels=10) == (
        "cpu", "no GPU worker in the cluster")
    with pytest.raises(FailedPrecondition) as err:
        place(CPU_ONLY, "gpu", allow_fallback=False, voxels=10)
    assert err.value.field == "header.device"
    assert "no GPU worker" in err.value.message


def test_slabs_are_at_least_one_per_cpu_worker():
    assert slab_count(CPU_ONLY, 1000, split_bytes=1 << 40) == 2
    assert slab_count(WorkerView(), 1000, split_bytes=1 << 40) == 1
    # Only GPU workers: one slab per GPU worker.
    assert slab_count(WorkerView(gpu=("a", "b", "c")), 1000, split_bytes=1 << 40) == 3


def test_slabs_keep_each_under_half_the_smallest_workers_memory():
    view = WorkerView(cpu=("a", "b"), memory_limit={"a": 4 * GIB, "b": 1 * GIB})
    voxels = 3 * GIB // BYTES_PER_VOXEL          # 3 GiB of working memory
    assert slab_count(view, voxels, split_bytes=1 << 40) == 6  # 3 GiB / 0.5 GiB


def test_slabs_keep_each_under_the_split_size():
    voxels = 100 << 20                           # 400 MiB of float32
    assert slab_count(CPU_ONLY, voxels, split_bytes=64 << 20) == 7


def test_route_by_size_and_kind():
    kw = {"split_bytes": 64 << 20, "batch_bytes": 4 << 20}
    assert route("cpu", 1 << 20, splittable=True, **kw) == "batch"      # 4 MiB: batched
    assert route("cpu", (1 << 20) + 1, splittable=True, **kw) == "task"
    assert route("cpu", (16 << 20) + 1, splittable=True, **kw) == "split"
    assert route("cpu", (16 << 20) + 1, splittable=False, **kw) == "task"
    assert route("gpu", (16 << 20) + 1, splittable=True, **kw) == "task"  # GPU jobs whole


def test_a_gpu_job_larger_than_the_gpus_free_memory_is_split_for_the_gpu():
    kw = {"split_bytes": 64 << 20, "batch_bytes": 4 << 20}
    fits = GIB // 2 // BYTES_PER_VOXEL            # half the free memory: one piece
    assert route("gpu", fits, splittable=True, device_bytes=GIB, **kw) == "task"
    assert route("gpu", fits + 1, splittable=True, device_bytes=GIB, **kw) == "split"
    assert route("gpu", fits + 1, splittable=False, device_bytes=GIB, **kw) == "task"
    # Slabs for the GPU: each under half its free memory, whatever the CPU workers have.
    assert slab_count(WITH_GPU, 3 * GIB // BYTES_PER_VOXEL, split_bytes=1 << 40,
                      kind="gpu") == 6
    assert slab_count(WITH_GPU, 10, split_bytes=1 << 40, kind="gpu") == 1


def test_a_median_above_a_small_window_is_placed_on_cpu_not_fallen_back():
    from medcompute.server.dispatch.placement import MEDIAN_GPU_WINDOW, gpu_unsuited
    from medcompute.server.jobs.operations import ResolvedOp

    small = ResolvedOp("median", "median", ((5, 5, 5),))
    large = ResolvedOp("median", "median", ((7, 7, 7),))
    assert 5 ** 3 <= MEDIAN_GPU_WINDOW < 7 ** 3
    assert gpu_unsuited([small]) == ""
    why = gpu_unsuited([ResolvedOp("gaussian", "gaussian", ((1.0,),)), large])
    assert "pipeline[1] is a median of 343 voxels" in why and "placed on CPU" in why
    for device in ("auto", "gpu"):
        assert place(WITH_GPU, device, allow_fallback=False, voxels=10, unsuited=why) == (
            "cpu", "")                                  # no fallback reason: a placement
    assert place(WITH_GPU, "auto", allow_fallback=False, voxels=10) == ("gpu", "")


def test_a_gpu_job_is_split_so_that_each_slab_fits_the_gpu_workers_host_memory():
    # The GPU worker holds the input, CuPy's pinned staging copy and the result.
    from medcompute.server.dispatch.placement import GPU_HOST_BYTES_PER_VOXEL

    kw = {"split_bytes": 64 << 20, "batch_bytes": 4 << 20}
    fits = GIB // 2 // GPU_HOST_BYTES_PER_VOXEL
    big_gpu = {"device_bytes": 1 << 40}
    assert route("gpu", fits, splittable=True, host_bytes=GIB, **big_gpu, **kw) == "task"
    assert route("gpu", fits + 1, splittable=True, host_bytes=GIB, **big_gpu, **kw) == "split"
    view = WorkerView(gpu=("g",), memory_limit={"g": GIB}, gpu_memory={"g": 1 << 40})
    assert slab_count(view, 3 * fits, split_bytes=1 << 40, kind="gpu") == 3


def test_the_device_need_is_the_inputs_and_the_largest_operations_working_memory():
    from medcompute import kernels
    from medcompute.server.dispatch.placement import device_need, job_need
    from medcompute.server.jobs.operations import ResolvedOp
    from medcompute.server.worker.specs import InputSpec, StackSpec, TaskSpec

    shape = (16, 64, 64)
    voxels = 16 * 64 * 64
    mean = ResolvedOp("mean", "mean", ((3, 3, 3),), {"mode": "nearest", "cval": 0.0})
    median = ResolvedOp("median", "median", ((5, 5, 5),), {"mode": "nearest", "cval": 0.0})
    peak = max(kernels.working_memory("mean", shape, (3, 3, 3)),
               kernels.working_memory("median", shape, (5, 5, 5)))
    assert device_need([mean, median], shape, input_itemsize=2) == voxels * 2 + peak
    assert device_need([mean], shape, operands=1) == voxels * 8 + \
        kernels.working_memory("mean", shape, (3, 3, 3))
    raw = InputSpec("in.raw", "raw", shape, "<i2")
    assert job_need(TaskSpec("j", (raw,), (mean,), "out")) == device_need([mean], shape,
                                                                          input_itemsize=2)
    dicom = InputSpec("in.dcm", "dicom", (), "")
    assert job_need(TaskSpec("j", (dicom,), (mean,), "out")) is None     # 16 B a voxel then
    stack = StackSpec(("a", "b"), InputSpec("", "raw", (2, *shape), "<i2"), (), (mean,))
    assert job_need(stack) == device_need([mean], shape, input_itemsize=2)   # one image
    # Placement takes the need over the flat estimate where it is given.
    view = WorkerView(gpu=("g",), gpu_memory={"g": voxels * 10})
    assert place(view, "auto", allow_fallback=False, voxels=voxels) == ("cpu", "")
    assert place(view, "auto", allow_fallback=False, voxels=voxels,
                 need=voxels * 9) == ("gpu", "")

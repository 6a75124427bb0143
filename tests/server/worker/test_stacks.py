"""A stack (images of one shape, one pipeline, one array) gives each image the result it
would have alone, bit for bit, for every operation and every dtype; a failing image fails
alone."""

import numpy as np
import pytest

from medcompute import kernels
from medcompute.client.ops import parse_op
from medcompute.proto import wire
from medcompute.server.jobs.operations import Geometry, resolve_pipeline
from medcompute.server.worker import tasks

#: Every operation of the catalogue, with its variants that take another code path.
PIPELINES = {
    "gaussian": ["gaussian:sigma=1.5"],
    "gaussian-anisotropic": ["gaussian:sigma=[0.5,2,1]"],
    "mean": ["mean:size=3"],
    "median": ["median:size=3"],
    "laplacian": ["laplacian"],
    "gradient": ["gradient"],
    "edge-sobel": ["edge:operator=sobel"],
    "edge-scharr": ["edge:operator=scharr"],
    "bandpass-dog": ["bandpass:low_cutoff=1,high_cutoff=4"],
    "bandpass-butterworth": ["bandpass:low_cutoff=1,high_cutoff=4,method=butterworth"],
    "project-max": ["project:kind=max,axis=0"],
    "project-mean-slab": ["project:kind=mean,axis=1,thickness=3"],
    "subtract": ["subtract:operand=0,weight=0.5"],
    "add": ["add:operand=0"],
    "chain": ["gaussian:sigma=1", "edge:operator=prewitt", "mean:size=2"],
}
DTYPES = [dt.str for dt in wire.DTYPES.values()]
SHAPE = (3, 17, 12)
N = 4


def _images(dtype: str, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return [(rng.standard_normal(SHAPE) * 1000).astype(dt) for _ in range(N)]
    info = np.iinfo(dt)
    return [rng.integers(info.min, info.max, size=SHAPE, endpoint=True, dtype=dt)
            for _ in range(N)]


def _ops(pipeline):
    ops, _ = resolve_pipeline([parse_op(t) for t in pipeline], Geometry(SHAPE, None),
                              [Geometry(SHAPE, None)])
    return tuple(ops)


def _raw(array: np.ndarray, field="header.input.inline") -> tasks.InputSpec:
    return tasks.InputSpec("", "raw", array.shape, array.dtype.str, field=field,
                           data=np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _alone(image, operand, ops, **dtypes):
    spec = tasks.TaskSpec(job_id="alone", inputs=(_raw(image), _raw(operand)), ops=ops,
                          out_path="", result_in_memory=True, **dtypes)
    return tasks.run_task(spec, announce=False)


def _stack(images, operand, ops, ids=None, **dtypes):
    ids = ids or tuple(f"job{k}" for k in range(len(images)))
    spec = tasks.StackSpec(job_ids=ids, stack=_raw(np.stack(images)),
                           operands=(_raw(operand),), ops=ops, **dtypes)
    return tasks.run_stack(spec, announce=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_a_stack_equals_its_images_one_by_one_bit_for_bit(name, dtype):
    images = _images(dtype)
    operand = _images(dtype, seed=1)[0]
    ops = _ops(PIPELINES[name])
    for dtypes in ({}, {"compute_dtype": "float64", "output_dtype": dtype}):
        stacked = _stack(images, operand, ops, **dtypes)
        assert stacked.errors == [None] * N
        for k, image in enumerate(images):
            alone = _alone(image, operand, ops, **dtypes)
            out = stacked.out[k]
            assert out.dtype == alone.data.dtype and out.shape == alone.data.shape
            assert out.tobytes() == alone.data.tobytes(), (name, dtype, dtypes, k)
            assert stacked.crc32[k] == alone.crc32


def test_an_image_that_fails_in_a_stack_fails_alone(monkeypatch):
    images = _images("<i2")
    images[2][...] = 7                       # the image this kernel refuses
    gaussian = kernels.gaussian

    def picky(x, *args, **kwargs):
        if bool((x == 7).all()):
            raise ValueError("sigma: refused for this image")
        return gaussian(x, *args, **kwargs)

    monkeypatch.setattr(kernels, "gaussian", picky)
    ops = _ops(["gaussian:sigma=1"])
    operand = images[0]
    stacked = _stack(images, operand, ops)
    error = stacked.errors[2]
    assert error.field == "header.pipeline[0].gaussian" and "refused" in error.message
    for k in (0, 1, 3):
        assert stacked.errors[k] is None
        assert stacked.out[k].tobytes() == _alone(images[k], operand, ops).data.tobytes()
    assert stacked.out[2] is None            # a failed image has no result


def test_a_cancelled_job_of_a_stack_ends_alone_the_others_run():
    images = _images("<u2")
    ids = ("s0", "s1-cancelled", "s2")
    tasks._CANCELLED_JOBS["s1-cancelled"] = None
    try:
        stacked = _stack(images[:3], images[3], _ops(["mean:size=3"]), ids=ids)
    finally:
        tasks._CANCELLED_JOBS.pop("s1-cancelled", None)
    assert isinstance(stacked.errors[1], tasks.TaskCancelled)
    assert stacked.errors[0] is None and stacked.errors[2] is None


def test_run_batch_runs_stacks_and_jobs_together():
    images = _images("u1")
    ops = _ops(["laplacian"])
    job = tasks.TaskSpec(job_id="alone", inputs=(_raw(images[0]), _raw(images[1])), ops=ops,
                         out_path="", result_in_memory=True)
    stack = tasks.StackSpec(job_ids=("a", "b"), stack=_raw(np.stack(images[:2])),
                            operands=(_raw(images[1]),), ops=ops)
    alone, stacked = tasks.run_batch([job, stack], announce=False)
    assert isinstance(alone, tasks.TaskResult) and isinstance(stacked, tasks.StackResult)
    assert stacked.out[0].tobytes() == alone.data.tobytes()
    assert tasks.job_ids(stack) == ["a", "b"] and tasks.job_ids(job) == ["alone"]


def _gpu_specs(images, operand, ops):
    alone = [tasks.TaskSpec(job_id=f"a{k}", inputs=(_raw(image), _raw(operand)), ops=ops,
                            out_path="", result_in_memory=True, device="gpu")
             for k, image in enumerate(images)]
    stack = tasks.StackSpec(job_ids=tuple(f"s{k}" for k in range(len(images))),
                            stack=_raw(np.stack(images)), operands=(_raw(operand),), ops=ops,
                            device="gpu")
    return alone, stack


@pytest.mark.parametrize("name", ["gaussian", "median", "bandpass-butterworth", "subtract"])
def test_a_stack_on_a_fake_gpu_equals_its_images_one_by_one(monkeypatch, tmp_path, name):
    import json

    from medcompute.server.worker import fakegpu

    control = tmp_path / "control.json"
    control.write_text(json.dumps({"fail": None}))
    monkeypatch.setenv("MEDCOMPUTE_GPU_BACKEND", "fake")
    monkeypatch.setenv(fakegpu.CONTROL_ENV, str(control))
    images = _images("<f4")
    alone, stack = _gpu_specs(images, _images("<f4", seed=1)[0], _ops(PIPELINES[name]))
    stacked = tasks.run_stack(stack, announce=False)
    assert stacked.gpu and stacked.backend == "fake-gpu"
    for k, spec in enumerate(alone):
        assert stacked.out[k].tobytes() == tasks.run_task(spec, announce=False).data.tobytes()
    control.write_text(json.dumps({"fail": "oom"}))
    with pytest.raises(tasks.GpuFailure, match="FakeGPUOutOfMemory"):
        tasks.run_stack(stack, announce=False)     # the dispatcher runs it again on CPU


def _cupy_device() -> bool:
    from medcompute.server.dispatch.cluster import detect_gpus

    return bool(detect_gpus())


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_a_stack_on_the_gpu_equals_its_images_one_by_one(name):
    if not _cupy_device():
        pytest.skip("no GPU that NVML reports and CuPy can use")
    images = _images("<i2")
    alone, stack = _gpu_specs(images, _images("<i2", seed=1)[0], _ops(PIPELINES[name]))
    stacked = tasks.run_stack(stack, announce=False)
    assert stacked.backend == "cupy"
    for k, spec in enumerate(alone):
        assert stacked.out[k].tobytes() == tasks.run_task(spec, announce=False).data.tobytes()

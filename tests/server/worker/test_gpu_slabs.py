"""A GPU job's slabs in one task, double-buffered (worker/gpu_slabs.py), on the FakeGPU
in this process: the same result bit for bit as one slab at a time, the order in which
the fake saw the copies queued and done, metering per slab, and the fake's failures."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from medcompute.client.ops import parse_op
from medcompute.server.jobs.operations import Geometry, resolve_pipeline
from medcompute.server.worker import fakegpu, gpu_slabs, tasks
from medcompute.server.worker.slabs import plan_split
from tests.gpu_helpers import fake_device

VOL = np.random.default_rng(4).normal(100, 20, (80, 16, 16)).astype(np.float32)
OPS = ["gaussian:sigma=1", "mean:size=3"]


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A fake device in this process, restarted (nothing compiled, no stream work)."""
    with fake_device(monkeypatch, tmp_path) as set_control:
        yield set_control


def _job(tmp_path, name: str, slabs: int = 5):
    """(spec, regions): VOL spooled raw, its result a raw file, cut in ``slabs`` slabs."""
    ops, _ = resolve_pipeline([parse_op(t) for t in OPS], Geometry(VOL.shape), [])
    source = tmp_path / f"{name}.in"
    VOL.tofile(source)
    out = tmp_path / f"{name}.out"
    out.write_bytes(b"\0" * VOL.nbytes)
    spec = tasks.TaskSpec(
        job_id=name, inputs=(tasks.InputSpec(str(source), "raw", VOL.shape, VOL.dtype.str),),
        ops=tuple(ops), out_path=str(out), device="gpu", out_shape=VOL.shape)
    plan = plan_split(spec.ops, VOL.shape, slabs)
    assert plan is not None and len(plan.regions) == slabs
    return spec, plan.regions


def _result(spec) -> np.ndarray:
    return np.fromfile(spec.out_path, np.float32).reshape(VOL.shape)


def test_overlapped_gpu_slabs_equal_one_slab_at_a_time_bit_for_bit(fake, tmp_path):
    spec, regions = _job(tmp_path, "overlap")
    parts = gpu_slabs.run_slabs(spec, regions)
    overlapped = fakegpu.stream_events()
    fakegpu.restart()
    alone, _ = _job(tmp_path, "alone")
    gpu_slabs.run_slabs(alone, regions, overlap=False)
    sequential = fakegpu.stream_events()
    assert _result(spec).tobytes() == _result(alone).tobytes()
    whole = ndi.uniform_filter(ndi.gaussian_filter(VOL, 1.0, mode="nearest"), 3,
                               mode="nearest")
    np.testing.assert_allclose(_result(spec), whole, rtol=1e-5, atol=1e-4)
    # Double-buffered: slab k+1's upload is queued before slab k's download is done.
    for k in range(len(regions) - 1):
        assert overlapped.index(("upload", k + 1)) < overlapped.index(("downloaded", k))
        assert sequential.index(("downloaded", k)) < sequential.index(("upload", k + 1))
    assert [e for e in overlapped if e[0] == "downloaded"] == \
        [("downloaded", k) for k in range(len(regions))]
    assert len(parts) == len(regions) and all(p.backend == "fake-gpu" for p in parts)
    assert [p.shape[0] for p in parts] == [r.stop - r.start for r in regions]
    assert all(p.gpu_seconds >= 0 and p.transfer_seconds >= 0 for p in parts)
    assert parts[0].compile_seconds is not None and parts[1].compile_seconds is None
    assert parts[-1].device_free == 1 << 30 and parts[0].device_free is None


def test_slabs_are_shared_among_the_gpu_workers_in_runs():
    assert gpu_slabs.slab_groups(tuple(range(5)), 2) == [(0, 1), (2, 3, 4)]
    assert gpu_slabs.slab_groups(tuple(range(2)), 4) == [(0,), (1,)]
    assert gpu_slabs.slab_groups(tuple(range(3)), 0) == [(0, 1, 2)]


@pytest.mark.parametrize("mode, words", [("after_upload", "kernel launch failed"),
                                         ("oom", "FakeGPUOutOfMemory")])
def test_a_device_failure_in_the_loop_is_a_gpu_failure(fake, tmp_path, mode, words):
    spec, regions = _job(tmp_path, mode)
    fake(fail=mode)
    with pytest.raises(tasks.GpuFailure) as info:
        gpu_slabs.run_slabs(spec, regions)
    assert words in info.value.reason and not info.value.restart
